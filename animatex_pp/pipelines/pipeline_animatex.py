"""`AnimateXPipeline`: Animate-X++ character animation on diffusers' Wan2.1 image-to-video pipeline.

The pipeline subclasses `diffusers.WanImageToVideoPipeline` and reuses, unchanged, its prompt encoding (umT5, padded
to `max_sequence_length`), its CLIP image encoding (penultimate states), its image preprocessing, its properties and
its LoRA loading. What it writes by hand, and why:

- the I2V condition (mask + VAE latent of the reference as frame 0): Wan's `prepare_latents` draws the noise and
  encodes the condition for the whole video at once and handles Wan2.2 modes; long videos need the noise for the
  whole video but the condition for one window only (every window is conditioned on the reference image, as
  UniAnimate-DiT's long-video pipeline does);
- the pose inputs: rendering a `PoseSequence`, the IPI's keypoints and the CLIP embeddings of the driving frames
  (the `motion_encoder`), and the reference pose;
- the denoising loop, which runs the transformer per window (`animatex_pp.pipelines.windowing`) and passes the pose
  streams; classifier-free guidance as the official code does it: the negative pass gets the negative prompt and no
  explicit pose video, and keeps the IPI, the reference pose and the image conditions;
- the decode, which trims the frames added to fill the IPI's fixed window.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import PIL.Image
import torch
from diffusers import AutoencoderKLWan, WanImageToVideoPipeline
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.pipelines.pipeline_utils import DiffusionPipeline
from diffusers.pipelines.wan.pipeline_output import WanPipelineOutput
from diffusers.pipelines.wan.pipeline_wan_i2v import retrieve_latents
from diffusers.utils import logging
from diffusers.utils.torch_utils import get_module_execution_device, randn_tensor
from diffusers.video_processor import VideoProcessor
from transformers import CLIPVisionModel, CLIPVisionModelWithProjection, UMT5EncoderModel
from transformers.image_processing_utils import BaseImageProcessor

from animatex_pp.io.files import give_umask_permissions
from animatex_pp.io.preview import FLOAT_RANGE_TOLERANCE, as_uint8_image
from animatex_pp.models.transformer import AnimateXTransformer3DModel, PoseConditions
from animatex_pp.pipelines.conditioning import clip_pixel_values, pad_frames, prepare_pose
from animatex_pp.pipelines.geometry import PipelineGeometry, VaeFactors
from animatex_pp.pipelines.parallel import check_window_tokens, context_parallel_degree
from animatex_pp.pipelines.windowing import (
    WINDOW_STRATEGIES,
    FramePlan,
    blend_weights,
    carried_frames,
    plan_frames,
)
from animatex_pp.pose.sequence import PART_SHAPES, PoseSequence

logger = logging.get_logger(__name__)

MODES = ("animation", "ti2v")
OUTPUT_TYPES = ("np", "pil", "pt", "latent")
# diffusers' Wan attention splits the cross-attention context as [image tokens; the last 512 tokens = text].
WAN_TEXT_TOKENS = 512
# The negative prompt of the official Animate-X++ inference script (Wan's own, in Chinese).
OFFICIAL_NEGATIVE_PROMPT = (
    "细节模糊不清，字幕，作品，画作，画面，静止，最差质量，低质量，JPEG压缩残留，丑陋的，残缺的，多余的手指，画得不好的手部，"
    "画得不好的脸部，畸形的，毁容的，形态畸形的肢体，手指融合，杂乱的背景，三条腿，背景人很多，倒着走"
)


@dataclasses.dataclass
class PoseInputs:
    """The pose streams' inputs for the whole video, kept compact; `encode_window_poses` takes one window's part."""

    pose_frames: np.ndarray | None  # uint8 (F, H, W, 3) at the generation size: the explicit pose video
    keypoints: torch.Tensor | None  # (F, 18, 2) for the IPI
    driving_embeds: torch.Tensor | None  # (F, D_clip) for the IPI
    reference_pose: torch.Tensor | None  # (B, 3, H, W) in [0, 1]


@dataclasses.dataclass
class DenoisingJob:
    """What every window's transformer call of one `__call__` shares."""

    plan: FramePlan
    condition: torch.Tensor  # (B, 4 + 16, F_w, h, w): the I2V condition of one window
    pose_inputs: PoseInputs
    image_embeds: torch.Tensor | None
    batch_size: int
    tensors: dict[str, torch.Tensor | None]  # prompt_embeds and negative_prompt_embeds (a callback may replace them)
    callback: Callable | None
    callback_tensor_inputs: list[str]


class AnimateXPipeline(WanImageToVideoPipeline):
    r"""
    Animate any character from one reference image and a driving pose sequence (Animate-X++), or animate it from a
    prompt alone (`mode="ti2v"`, which is Wan2.1 image-to-video).

    Args:
        tokenizer ([`T5Tokenizer`]): umT5 tokenizer.
        text_encoder ([`UMT5EncoderModel`]): umT5-XXL encoder.
        vae ([`AutoencoderKLWan`]): Wan2.1 VAE (keep it in float32).
        scheduler: a flow-matching scheduler (`UniPCMultistepScheduler` with flow sigmas or
            `FlowMatchEulerDiscreteScheduler`); the official sampler uses shift 5.
        transformer ([`AnimateXTransformer3DModel`]): the DiT with the pose streams.
        image_processor ([`CLIPImageProcessor`], *optional*): preprocessing for `image_encoder`.
        image_encoder ([`CLIPVisionModel`], *optional*): Wan's CLIP; its penultimate states condition the DiT.
        motion_encoder ([`CLIPVisionModelWithProjection`], *optional*): the CLIP whose pooled, projected embedding
            of each driving frame feeds the implicit pose indicator (OpenCLIP ViT-H/14 for the released weights).
            Without it the implicit pose indicator is skipped.
    """

    model_cpu_offload_seq = "text_encoder->image_encoder->motion_encoder->transformer->vae"
    _optional_components = ["image_encoder", "image_processor", "motion_encoder"]
    _callback_tensor_inputs = ["latents", "prompt_embeds", "negative_prompt_embeds"]

    def __init__(
        self,
        tokenizer,
        text_encoder: UMT5EncoderModel,
        vae: AutoencoderKLWan,
        scheduler,
        transformer: AnimateXTransformer3DModel,
        image_processor: BaseImageProcessor | None = None,
        image_encoder: CLIPVisionModel | None = None,
        motion_encoder: CLIPVisionModelWithProjection | None = None,
    ):
        # Wan's __init__ registers Wan2.2 options (transformer_2, boundary_ratio, expand_timesteps) that this
        # pipeline does not have, so register the components directly.
        DiffusionPipeline.__init__(self)
        self.register_modules(
            tokenizer=tokenizer,
            text_encoder=text_encoder,
            vae=vae,
            scheduler=scheduler,
            transformer=transformer,
            image_processor=image_processor,
            image_encoder=image_encoder,
            motion_encoder=motion_encoder,
        )
        self.vae_factors = VaeFactors.of(getattr(self, "vae", None))
        # diffusers' names for them, which Wan's inherited methods read.
        self.vae_scale_factor_temporal = self.vae_factors.temporal
        self.vae_scale_factor_spatial = self.vae_factors.spatial
        self.video_processor = VideoProcessor(vae_scale_factor=self.vae_scale_factor_spatial)

    def save_pretrained(self, save_directory, *args, **kwargs) -> None:
        """diffusers' `save_pretrained`; the files get the user's umask permissions (safetensors makes them 0o600)."""
        super().save_pretrained(save_directory, *args, **kwargs)
        give_umask_permissions(save_directory)

    # ------------------------------------------------------------------ checks

    @property
    def geometry(self) -> PipelineGeometry:
        """The size multiple, frame packing and IPI window this pipeline's configs fix."""
        return PipelineGeometry.from_configs(self.vae.config, self.transformer.config, self.motion_encoder is not None)

    @property
    def size_multiple(self) -> int:
        """Height and width must be multiples of this: the VAE's spatial factor times the patch size."""
        return self.geometry.size_multiple

    def _has_stream(self, name: str) -> bool:
        return getattr(self.transformer, name, None) is not None

    def check_inputs(
        self,
        image,
        pose,
        prompt,
        negative_prompt,
        driving_video,
        reference_pose,
        mode,
        height,
        width,
        num_inference_steps,
        guidance_scale,
        output_type,
        max_sequence_length,
        window_strategy,
        retarget_pose,
        keep_missing_parts,
        callback_on_step_end_tensor_inputs,
    ) -> None:
        """Raise a `ValueError` that says what to do for every bad argument, before any model runs."""
        if image is None:
            raise ValueError("`image` (the reference image) is required: a PIL image, uint8 (H, W, 3) or (3, H, W).")
        if not isinstance(image, (PIL.Image.Image, np.ndarray, torch.Tensor)):
            raise ValueError(
                f"`image` must be a PIL image, a uint8 array (H, W, 3) or a float tensor (3, H, W), got {type(image)}."
            )
        if mode not in MODES:
            raise ValueError(f"`mode` must be one of {MODES}, got {mode!r}.")
        if mode == "animation":
            if pose is None:
                raise ValueError(
                    "mode='animation' needs a `pose`: a PoseSequence or a rendered pose video; for text-driven motion "
                    "without a pose use mode='ti2v'."
                )
            if not (self._has_stream("pose_video_encoder") or self._has_stream("implicit_pose_indicator")):
                raise ValueError(
                    "This transformer has no pose stream (use_pose_video and use_ipi are False): use mode='ti2v'."
                )
            if reference_pose is not None and not self._has_stream("reference_pose_encoder"):
                raise ValueError(
                    "This transformer has no reference-pose stream (use_reference_pose=False): drop `reference_pose`."
                )
        else:
            given = [name for name, value in [("pose", pose), ("driving_video", driving_video)] if value is not None]
            if reference_pose is not None:
                given.append("reference_pose")
            if given:
                raise ValueError(
                    f"mode='ti2v' animates from the prompt alone and takes no {', '.join(given)}: drop them or use "
                    "mode='animation'."
                )
        for name, value in [("pose", pose), ("driving_video", driving_video)]:
            if value is not None and not isinstance(value, (PoseSequence, np.ndarray, torch.Tensor, list, tuple)):
                raise ValueError(
                    f"`{name}` must be a PoseSequence (pose only), a uint8 array (F, H, W, 3), a list of PIL images "
                    f"or a float tensor (3, F, H, W) in [0, 1], got {type(value)}."
                )
        if isinstance(driving_video, PoseSequence):
            raise ValueError("`driving_video` holds frames for the IPI's CLIP features; pass the keypoints as `pose`.")
        for name, value in [("pose", pose), ("driving_video", driving_video)]:
            if isinstance(value, np.ndarray) and (value.dtype != np.uint8 or value.ndim != 4 or value.shape[-1] != 3):
                raise ValueError(
                    f"`{name}` must be (F, H, W, 3) uint8 frames as an array, got {value.dtype} {value.shape}: "
                    "convert floats in [0, 1] with (x * 255).round().astype(np.uint8)."
                )
            if isinstance(value, torch.Tensor) and (
                not value.is_floating_point() or value.ndim != 4 or len(value) != 3
            ):
                raise ValueError(
                    f"`{name}` must be (3, F, H, W) floats in [0, 1] as a tensor, got {value.dtype} "
                    f"{tuple(value.shape)}."
                )
        if reference_pose is not None and not isinstance(
            reference_pose, (PoseSequence, PIL.Image.Image, np.ndarray, torch.Tensor)
        ):
            raise ValueError(
                "`reference_pose` must be a PoseSequence (its first frame is rendered) or an image of the reference "
                f"skeleton, got {type(reference_pose)}."
            )
        if retarget_pose and not (isinstance(pose, PoseSequence) and isinstance(reference_pose, PoseSequence)):
            raise ValueError(
                "`retarget_pose=True` needs `pose` and `reference_pose` as PoseSequence keypoints (rendered videos "
                "cannot be retargeted)."
            )
        if keep_missing_parts and not retarget_pose:
            raise ValueError("`keep_missing_parts=True` is a retargeting option: pass `retarget_pose=True` too.")
        for name, value in [("pose", pose), ("reference_pose", reference_pose)]:
            if isinstance(value, PoseSequence):
                self._check_keypoints(value, name)
        for name, value in [("pose", pose), ("driving_video", driving_video)]:
            for frame in value if isinstance(value, (list, tuple)) else [value]:
                self._check_pixel_range(frame, name)

        multiple = self.size_multiple
        for name, value in [("height", height), ("width", width)]:
            if not isinstance(value, int) or value <= 0 or value % multiple != 0:
                suggestion = max(multiple, round(value / multiple) * multiple) if isinstance(value, int) else 480
                raise ValueError(
                    f"`{name}`={value!r} must be a positive multiple of {multiple} (the VAE's spatial compression "
                    f"times the patch size), e.g. {suggestion}."
                )
        if not isinstance(num_inference_steps, int) or num_inference_steps < 1:
            raise ValueError(f"`num_inference_steps` must be a positive int, got {num_inference_steps!r}.")
        # Written so that NaN fails it too; infinity would turn every latent into NaN at the first step.
        if not isinstance(guidance_scale, (int, float)) or not 0 <= guidance_scale < math.inf:
            raise ValueError(
                f"`guidance_scale` must be a finite number >= 0 (1 disables guidance), got {guidance_scale!r}."
            )
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"`output_type` must be one of {OUTPUT_TYPES}, got {output_type!r}.")
        if window_strategy not in WINDOW_STRATEGIES:
            raise ValueError(f"`window_strategy` must be one of {WINDOW_STRATEGIES}, got {window_strategy!r}.")

        if isinstance(prompt, list):
            if not prompt or not all(isinstance(text, str) for text in prompt):
                raise ValueError("`prompt` must be a string or a non-empty list of strings.")
        elif not isinstance(prompt, str):
            raise ValueError(f"`prompt` must be a string or a list of strings, got {type(prompt)}.")
        if negative_prompt is not None:
            negatives = [negative_prompt] if isinstance(negative_prompt, str) else negative_prompt
            batch_size = len(prompt) if isinstance(prompt, list) else 1
            if not isinstance(negatives, list) or not all(isinstance(text, str) for text in negatives):
                raise ValueError("`negative_prompt` must be a string or a list of strings.")
            if isinstance(negative_prompt, list) and len(negatives) != batch_size:
                raise ValueError(
                    f"`negative_prompt` has {len(negatives)} entries but `prompt` has {batch_size}: give one per "
                    "prompt or a single string."
                )
        if self.transformer.config.added_kv_proj_dim is not None and max_sequence_length != WAN_TEXT_TOKENS:
            raise ValueError(
                f"`max_sequence_length` must be {WAN_TEXT_TOKENS} for an image-conditioned Wan transformer: its "
                f"attention takes the last {WAN_TEXT_TOKENS} context tokens as text. Leave it at the default."
            )
        has_image_encoder = self.image_encoder is not None and self.image_processor is not None
        if self.transformer.config.image_dim is not None and not has_image_encoder:
            raise ValueError(
                "This transformer takes CLIP image embeddings but the pipeline has no `image_encoder`/"
                "`image_processor`: load them (e.g. from the Wan2.1 I2V model directory)."
            )
        if callback_on_step_end_tensor_inputs is not None:
            unknown = [name for name in callback_on_step_end_tensor_inputs if name not in self._callback_tensor_inputs]
            if unknown:
                raise ValueError(
                    f"`callback_on_step_end_tensor_inputs` may name {self._callback_tensor_inputs}, got {unknown}."
                )
        self._warn_if_cut(prompt, "prompt", max_sequence_length)
        self._warn_if_cut(negative_prompt, "negative prompt", max_sequence_length)

    def _warn_if_cut(self, texts, what: str, max_sequence_length: int) -> None:
        """Wan's prompt encoding silently truncates at `max_sequence_length` tokens: say so before it happens."""
        if texts is None or self.tokenizer is None:
            return
        for text in [texts] if isinstance(texts, str) else texts:
            count = len(self.tokenizer(text).input_ids)
            if count > max_sequence_length:
                logger.warning(
                    f"The {what} is {count} tokens long but the text encoder reads {max_sequence_length}: its last "
                    f"{count - max_sequence_length} tokens are cut. Shorten it to keep all of it."
                )

    @staticmethod
    def _check_keypoints(pose: PoseSequence, name: str) -> None:
        """A PoseSequence checks its keypoints when made, but its arrays can be changed after: check them again."""
        for part in PART_SHAPES:
            points, conf = getattr(pose, part), getattr(pose, f"{part}_conf")
            if points is None:
                continue
            finite = np.isfinite(points).all(axis=tuple(range(1, points.ndim))) & np.isfinite(conf).all(
                axis=tuple(range(1, conf.ndim))
            )
            if not finite.all():
                frame = int(np.flatnonzero(~finite)[0])
                raise ValueError(
                    f"`{name}` holds NaN or inf {part} keypoints (first in frame {frame}): mark a missing point with "
                    "confidence 0 instead."
                )

    @staticmethod
    def _check_pixel_range(frames, name: str) -> None:
        """Float pixels must be in [0, 1] (as `as_uint8_video` takes them); checked here, before any encoder runs,
        because the frames are converted only when the pose inputs are prepared."""
        if isinstance(frames, torch.Tensor) and frames.is_floating_point() and frames.numel():
            low, high = (float(value) for value in torch.aminmax(frames.detach()))
        elif isinstance(frames, np.ndarray) and np.issubdtype(frames.dtype, np.floating) and frames.size:
            low, high = float(frames.min()), float(frames.max())
        else:
            return
        # Written so that NaN fails it too.
        if not (low >= -FLOAT_RANGE_TOLERANCE and high <= 1.0 + FLOAT_RANGE_TOLERANCE):
            raise ValueError(
                f"`{name}` holds float pixels from {low:g} to {high:g}, but floats must be in [0, 1]: divide "
                "uint8-range values (0..255) by 255, map [-1, 1] values with (x + 1) / 2."
            )

    @staticmethod
    def _video_length(video, name: str) -> int:
        """The frame count of a pose or driving video, after checking its layout (cheap: no conversion)."""
        if isinstance(video, torch.Tensor) and (video.ndim != 4 or video.shape[0] != 3):
            raise ValueError(f"`{name}` as a tensor must be (3, F, H, W) in [0, 1], got shape {tuple(video.shape)}.")
        if isinstance(video, np.ndarray) and (video.ndim != 4 or video.shape[-1] != 3):
            raise ValueError(f"`{name}` as an array must be (F, H, W, 3), got shape {video.shape}.")
        length = video.shape[1] if isinstance(video, torch.Tensor) else len(video)
        if length == 0:
            raise ValueError(f"`{name}` has no frames: give at least one.")
        return length

    def _uses_ipi(self, mode: str, pose) -> bool:
        """The IPI runs when the model has one, the pose carries keypoints and a motion encoder gives CLIP features."""
        if mode != "animation" or not self._has_stream("implicit_pose_indicator"):
            return False
        if not isinstance(pose, PoseSequence):
            logger.warning("The pose is a rendered video without keypoints: the implicit pose indicator is skipped.")
            return False
        if self.motion_encoder is None:
            logger.warning("The pipeline has no `motion_encoder`: the implicit pose indicator is skipped.")
            return False
        return True

    # ------------------------------------------------------------------ conditions

    @staticmethod
    def _reference_image(image) -> PIL.Image.Image:
        """The reference as an RGB PIL image, the input Wan's image processors take."""
        # Through the library's converter for PIL images too: 16-bit levels scaled and alpha composited, not clipped.
        return PIL.Image.fromarray(as_uint8_image(image))

    @torch.no_grad()
    def encode_driving_frames(self, frames: np.ndarray, chunk: int = 16) -> torch.Tensor:
        """Pooled, projected CLIP embeddings (F, D_clip) of uint8 frames (F, H, W, 3), for the IPI.

        The frames are preprocessed as the official code does (`clip_pixel_values`) and go through the encoder
        `chunk` at a time.
        """
        size = self.motion_encoder.config.image_size
        device = get_module_execution_device(self.motion_encoder)
        embeds = []
        for start in range(0, len(frames), chunk):
            pixel_values = clip_pixel_values(frames[start : start + chunk], size, device)
            embeds.append(self.motion_encoder(pixel_values=pixel_values.to(self.motion_encoder.dtype)).image_embeds)
        return torch.cat(embeds).float()

    def prepare_pose_inputs(
        self,
        pose,
        driving_video,
        reference_pose,
        plan: FramePlan,
        height: int,
        width: int,
        batch_size: int,
        keypoint_conf_threshold: float,
        retarget_pose: bool,
        keep_missing_parts: bool,
        device: torch.device,
    ) -> PoseInputs:
        """The pose streams' inputs (`animatex_pp.pipelines.conditioning.prepare_pose`), with the driving frames' CLIP
        features, for `plan.generation_frames` frames; the pose video stays uint8 until a window needs it.

        When fewer frames are asked for than the IPI's window holds, the inputs' own later frames fill the window
        as far as they go (the extra output frames are dropped); only then is the last frame repeated.
        """
        length = plan.generation_frames
        prepared = prepare_pose(
            pose,
            reference_pose,
            length,
            height,
            width,
            driving_video=driving_video,
            use_ipi=plan.use_ipi,
            keypoint_conf_threshold=keypoint_conf_threshold,
            retarget_pose=retarget_pose,
            keep_missing_parts=keep_missing_parts,
        )
        driving_embeds = keypoints = reference = None
        if prepared.driving_frames is not None:
            driving_embeds = pad_frames(self.encode_driving_frames(prepared.driving_frames).to(device), length)
            keypoints = torch.from_numpy(prepared.keypoints).to(device)
        if prepared.reference_pose is not None:
            # (H, W, 3) -> (B, 3, H, W) in [0, 1]
            reference = torch.from_numpy(prepared.reference_pose).to(device).permute(2, 0, 1).float() / 255.0
            reference = reference.unsqueeze(0).expand(batch_size, -1, -1, -1)
        return PoseInputs(
            pose_frames=prepared.pose_frames if self._has_stream("pose_video_encoder") else None,
            keypoints=keypoints,
            driving_embeds=driving_embeds,
            reference_pose=reference,
        )

    def encode_window_poses(self, job: DenoisingJob, index: int, device: torch.device) -> PoseConditions:
        """Encode window `index`'s pose inputs with the transformer's stream encoders (once for both CFG passes).

        The window's pose video is made from the uint8 frames only now, so memory does not grow with length.
        """
        pose_inputs, batch_size, dtype = job.pose_inputs, job.batch_size, self.transformer.dtype
        frames = job.plan.windows[index].pixel_slice(self.vae_factors.temporal)
        inputs: dict[str, torch.Tensor | None] = {"reference_pose": None, "pose_video": None}
        if pose_inputs.reference_pose is not None:
            inputs["reference_pose"] = pose_inputs.reference_pose.to(device, dtype)
        if pose_inputs.pose_frames is not None:
            # (F_w, H, W, 3) uint8 -> (B, 3, F_w, H, W) in [0, 1]
            video = torch.tensor(pose_inputs.pose_frames[frames], device=device).permute(3, 0, 1, 2)
            inputs["pose_video"] = (video.to(dtype) / 255.0).unsqueeze(0).expand(batch_size, -1, -1, -1, -1)
        if pose_inputs.keypoints is not None:
            # (F_w, 18, 2) -> (B, F_w, 18, 2); (F_w, D) -> (B, F_w, D)
            inputs["pose_keypoints"] = pose_inputs.keypoints[frames].to(device).expand(batch_size, -1, -1, -1)
            inputs["driving_image_embeds"] = pose_inputs.driving_embeds[frames].to(device).expand(batch_size, -1, -1)
        return self.transformer.encode_pose_conditions(**inputs, batch_size=batch_size)

    def prepare_condition(
        self, image: torch.Tensor, batch_size: int, num_frames: int, dtype: torch.dtype, device: torch.device
    ) -> torch.Tensor:
        """Wan2.1's I2V condition for `num_frames` frames: (B, 4 + 16, F_lat, H / 8, W / 8).

        The reference image (1, 3, H, W) in [-1, 1] is frame 0 and the other frames are zeros; their VAE latent
        (normalised) follows a 4-channel mask that marks the first latent frame as given.
        """
        _, _, height, width = image.shape
        # (1, 3, H, W) -> (1, 3, F, H, W)
        video = torch.cat([image.unsqueeze(2), image.new_zeros(1, 3, num_frames - 1, height, width)], dim=2)
        video = video.to(device=get_module_execution_device(self.vae), dtype=self.vae.dtype)
        latent = retrieve_latents(self.vae.encode(video), sample_mode="argmax").to(device=device, dtype=dtype)
        latent = self.normalize_latents(latent)

        _, _, num_latent_frames, latent_height, latent_width = latent.shape
        # One mask channel per pixel frame a latent frame packs, as Wan lays the mask out.
        mask = latent.new_zeros(1, self.vae_factors.temporal, num_latent_frames, latent_height, latent_width)
        mask[:, :, 0] = 1
        # (1, 4 + 16, F_lat, h, w) -> (B, 4 + 16, F_lat, h, w)
        return torch.cat([mask, latent], dim=1).expand(batch_size, -1, -1, -1, -1)

    def _latent_statistics(self, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z_dim = self.vae.config.z_dim
        mean = torch.tensor(self.vae.config.latents_mean).view(1, z_dim, 1, 1, 1).to(latents.device, latents.dtype)
        std = torch.tensor(self.vae.config.latents_std).view(1, z_dim, 1, 1, 1).to(latents.device, latents.dtype)
        return mean, std

    def normalize_latents(self, latents: torch.Tensor) -> torch.Tensor:
        mean, std = self._latent_statistics(latents)
        return (latents - mean) / std

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents (B, 16, F_lat, h, w) -> video (B, 3, F, H, W) in [-1, 1]."""
        latents = latents.to(device=get_module_execution_device(self.vae), dtype=self.vae.dtype)
        mean, std = self._latent_statistics(latents)
        return self.vae.decode(latents * std + mean, return_dict=False)[0]

    # ------------------------------------------------------------------ denoising

    def _predict(
        self, job: DenoisingJob, latents: torch.Tensor, t: torch.Tensor, index: int, poses: PoseConditions
    ) -> torch.Tensor:
        """The guided velocity for window `index` (the official CFG: the negative pass drops the pose video)."""
        dtype = self.transformer.dtype
        latent_model_input = torch.cat([latents, job.condition], dim=1).to(dtype)
        timestep = t.expand(latents.shape[0])
        # A cache context per window and branch, so cache hooks (FirstBlockCache) compare like with like.
        with self.transformer.cache_context(f"cond_{index}"):
            noise_pred = self.transformer(
                hidden_states=latent_model_input,
                timestep=timestep,
                encoder_hidden_states=job.tensors["prompt_embeds"],
                encoder_hidden_states_image=job.image_embeds,
                pose_conditions=poses,
                attention_kwargs=self.attention_kwargs,
                return_dict=False,
            )[0]
        if self.do_classifier_free_guidance:
            with self.transformer.cache_context(f"uncond_{index}"):
                noise_uncond = self.transformer(
                    hidden_states=latent_model_input,
                    timestep=timestep,
                    encoder_hidden_states=job.tensors["negative_prompt_embeds"],
                    encoder_hidden_states_image=job.image_embeds,
                    pose_conditions=dataclasses.replace(poses, pose_tokens=None),
                    attention_kwargs=self.attention_kwargs,
                    return_dict=False,
                )[0]
            noise_pred = noise_uncond + self.guidance_scale * (noise_pred - noise_uncond)
        return noise_pred.float()

    def _run_callback(self, job: DenoisingJob, step: int, t: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        """diffusers' `callback_on_step_end` protocol: the callback may replace any tensor it was given."""
        if job.callback is None:
            return latents
        tensors = {**job.tensors, "latents": latents}
        outputs = job.callback(self, step, t, {name: tensors[name] for name in job.callback_tensor_inputs})
        for name in ("prompt_embeds", "negative_prompt_embeds"):
            job.tensors[name] = outputs.get(name, job.tensors[name])
        return outputs.get("latents", latents)

    def _denoise_blended(self, job: DenoisingJob, latents: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """All windows denoised together: per step, blend the windows' velocities, then step the whole video.

        One window's pose encodings are kept for the whole call; with several windows they are re-encoded at each
        step instead of kept, since a window's explicit pose tokens are as large as its DiT tokens.
        """
        windows = job.plan.windows
        # (F_w,) -> (1, 1, F_w, 1, 1): one weight per latent frame, on the latents' device once, not at every step
        weights = [
            weight.to(latents.device).view(1, 1, -1, 1, 1)
            for weight in blend_weights(windows, job.plan.num_latent_frames)
        ]
        kept_poses = self.encode_window_poses(job, 0, latents.device) if len(windows) == 1 else None
        with self.progress_bar(total=len(timesteps)) as progress_bar:
            for i, t in enumerate(timesteps):
                if self.interrupt:
                    continue
                self._current_timestep = t
                noise_pred = torch.zeros_like(latents)
                for index, window in enumerate(windows):
                    poses = (
                        kept_poses if kept_poses is not None else self.encode_window_poses(job, index, latents.device)
                    )
                    window_pred = self._predict(job, latents[:, :, window.start : window.stop], t, index, poses)
                    noise_pred[:, :, window.start : window.stop] += weights[index] * window_pred
                latents = self.scheduler.step(noise_pred, t, latents, return_dict=False)[0]
                latents = self._run_callback(job, i, t, latents)
                progress_bar.update()
        return latents

    def _denoise_carried(self, job: DenoisingJob, latents: torch.Tensor, num_inference_steps: int) -> torch.Tensor:
        """Windows one after another; each window's frames made by earlier windows are carried over.

        At every step the carried frames are set to the finished latents re-noised to the step's noise level with
        their own initial noise, x_t = (1 - sigma) x_0 + sigma * noise (flow matching), so the new frames are
        denoised in agreement with them; at the end they are exactly the finished latents.
        """
        windows = job.plan.windows
        # Write into a copy: the initial noise (possibly the caller's `latents`) is read again by later windows.
        initial_noise, latents = latents, latents.clone()
        with self.progress_bar(total=num_inference_steps * len(windows)) as progress_bar:
            for index, window in enumerate(windows):
                # Each window is a fresh sampling run (multistep schedulers keep per-run history).
                self.scheduler.set_timesteps(num_inference_steps, device=latents.device)
                # Schedulers keep their sigmas on the CPU: one copy per window, not a blocking copy at every step.
                sigmas = self.scheduler.sigmas.to(latents.device)
                carried = carried_frames(windows, index)
                known = latents[:, :, window.start : window.start + carried].clone()
                noise = initial_noise[:, :, window.start : window.start + carried]
                window_latents = initial_noise[:, :, window.start : window.stop].clone()
                poses = self.encode_window_poses(job, index, latents.device)
                for i, t in enumerate(self.scheduler.timesteps):
                    if self.interrupt:
                        continue
                    self._current_timestep = t
                    window_latents[:, :, :carried] = (1 - sigmas[i]) * known + sigmas[i] * noise
                    window_pred = self._predict(job, window_latents, t, index, poses)
                    window_latents = self.scheduler.step(window_pred, t, window_latents, return_dict=False)[0]
                    window_latents = self._run_callback(job, i, t, window_latents)
                    progress_bar.update()
                window_latents[:, :, :carried] = known
                latents[:, :, window.start : window.stop] = window_latents
        return latents

    # ------------------------------------------------------------------ call

    @torch.no_grad()
    def __call__(
        self,
        image,
        pose=None,
        prompt: str | list[str] = "",
        negative_prompt: str | list[str] | None = None,
        driving_video=None,
        reference_pose=None,
        mode: str = "animation",
        height: int = 832,
        width: int = 480,
        num_frames: int | None = None,
        num_inference_steps: int = 50,
        guidance_scale: float = 3.0,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "np",
        return_dict: bool = True,
        attention_kwargs: dict[str, Any] | None = None,
        callback_on_step_end: Callable[[DiffusionPipeline, int, int, dict], dict] | PipelineCallback | None = None,
        callback_on_step_end_tensor_inputs: list[str] = ["latents"],  # noqa: B006 (diffusers' signature)
        max_sequence_length: int = WAN_TEXT_TOKENS,
        window_frames: int | None = None,
        window_overlap: int | None = None,
        window_strategy: str = "blend",
        keypoint_conf_threshold: float = 0.3,
        retarget_pose: bool = False,
        keep_missing_parts: bool = False,
    ) -> WanPipelineOutput | tuple:
        r"""
        Animate `image` with `pose` (`mode="animation"`) or from `prompt` alone (`mode="ti2v"`).

        Args:
            image: the reference character: a PIL image, a uint8 array (H, W, 3) or a float tensor (3, H, W) in
                [0, 1]. It is resized (not cropped) to `height` x `width`.
            pose: the driving pose. A `PoseSequence` (rendered at the generation size for the explicit pose stream;
                its keypoints feed the implicit pose indicator) or an already rendered pose video: a uint8 array
                (F, H, W, 3), a list of PIL images or a float tensor (3, F, H, W) in [0, 1] (explicit stream only).
            prompt: the text; in animation it describes the scene (e.g. a moving background).
            negative_prompt: the negative text for guidance (default empty; the official script uses
                `OFFICIAL_NEGATIVE_PROMPT`).
            driving_video: the driving frames (same formats as a pose video) whose CLIP features feed the implicit
                pose indicator; without it the rendered pose frames are used.
            reference_pose: the reference image's skeleton: a `PoseSequence` (first frame rendered) or an image.
                Without it the reference-pose stream is skipped.
            mode: "animation" (pose-driven) or "ti2v" (text-image-to-video: no pose, the prompt drives motion).
            height, width: output size, multiples of 16 (official 832 x 480).
            num_frames: output frames, 4k+1 (others are rounded up with a warning). Default: the pose's length
                rounded down to 4k+1 in animation, 81 in ti2v. Longer than one window -> overlapping windows.
            num_inference_steps: denoising steps (official 50).
            guidance_scale: classifier-free guidance scale (official 3); 1 disables the negative pass.
            generator: `torch.Generator`(s) for deterministic noise.
            latents: initial noise (B, 16, F_lat, H / 8, W / 8) for the frames actually generated (at least one IPI
                window).
            output_type: "np" (B, F, H, W, 3) floats in [0, 1], "pil" (lists of images), "pt" (B, F, 3, H, W) or
                "latent" (the denoised latents).
            return_dict: return a `WanPipelineOutput` (`.frames`) rather than a tuple.
            attention_kwargs: passed to the attention processors (e.g. a LoRA `scale`).
            callback_on_step_end: called after each step as diffusers does, `(pipe, step, timestep, tensors)`;
                with `window_strategy="carry"` it is called per window step with that window's latents.
            callback_on_step_end_tensor_inputs: names from `_callback_tensor_inputs` given to the callback.
            max_sequence_length: umT5 tokens (512 for the I2V transformers: their attention assumes it).
            window_frames: frames per window for long videos (4k+1). Default: the IPI's `ipi_num_frames` when it
                runs (it takes no other length), else 81.
            window_overlap: pixel frames shared by neighbouring windows, a multiple of 4. Default: 4 of every 21
                latent frames, as the official long-video pipeline.
            window_strategy: "blend" (windows denoised together, seams blended) or "carry" (windows one after
                another, each continuing the frames already made); see `animatex_pp.pipelines.windowing`.
            keypoint_conf_threshold: keypoints under this detector confidence are marked missing for the IPI.
            retarget_pose: retarget `pose` to `reference_pose`'s body proportions first (both PoseSequences). Parts
                the reference skeleton lacks (a mermaid's legs, an armless character's arms) are dropped from the
                retargeted poses, with a warning naming them, so the pose streams show the character's own body plan.
            keep_missing_parts: with `retarget_pose`, keep the parts the reference lacks instead (sized by their
                mirror bone or the global scale; see `animatex_pp.pose.retarget`).

        Returns:
            `WanPipelineOutput` with `frames`, or `(frames,)`.
        """
        if isinstance(callback_on_step_end, (PipelineCallback, MultiPipelineCallbacks)):
            callback_on_step_end_tensor_inputs = callback_on_step_end.tensor_inputs

        # 1. Check inputs and plan the frames, before any model runs
        self.check_inputs(
            image,
            pose,
            prompt,
            negative_prompt,
            driving_video,
            reference_pose,
            mode,
            height,
            width,
            num_inference_steps,
            guidance_scale,
            output_type,
            max_sequence_length,
            window_strategy,
            retarget_pose,
            keep_missing_parts,
            callback_on_step_end_tensor_inputs,
        )
        if mode == "animation" and reference_pose is None and self._has_stream("reference_pose_encoder"):
            logger.warning(
                "No `reference_pose`: the reference-pose stream is skipped, although the official inference always "
                "gives it. Pass the reference image's skeleton, e.g. reference_pose=animatex_pp.pose.extract(image)."
            )
        reference_image = self._reference_image(image)
        if reference_pose is not None and not isinstance(reference_pose, PoseSequence):
            as_uint8_image(reference_pose)  # only to check its format before any model runs; converted again later
        input_lengths = {
            f"`{name}`": self._video_length(value, name)
            for name, value in [("pose", pose), ("driving_video", driving_video)]
            if value is not None
        }
        ipi_frames = self.transformer.config.ipi_num_frames if self._uses_ipi(mode, pose) else None
        plan = plan_frames(num_frames, input_lengths, self.vae_factors, ipi_frames, window_frames, window_overlap)
        if plan.note is not None:
            logger.warning(f"{plan.note}.")
        batch_size = len(prompt) if isinstance(prompt, list) else 1
        latent_shape = (
            batch_size,
            self.vae.config.z_dim,
            plan.num_latent_frames,
            *self.vae_factors.latent_size(height, width),
        )
        if latents is not None and tuple(latents.shape) != latent_shape:
            raise ValueError(
                f"`latents` must have shape {latent_shape} ({plan.generation_frames} frames at {height}x{width}), "
                f"got {tuple(latents.shape)}."
            )
        if isinstance(generator, list) and len(generator) != batch_size:
            raise ValueError(f"Pass one generator per prompt: got {len(generator)} for {batch_size} prompts.")
        check_window_tokens(
            context_parallel_degree(self.transformer),
            plan.windows[0].length,
            *latent_shape[-2:],
            self.transformer.config.patch_size,
        )

        # 2. Define call parameters
        self._guidance_scale = guidance_scale
        self._attention_kwargs = attention_kwargs
        self._current_timestep = None
        self._interrupt = False
        device = self._execution_device
        transformer_dtype = self.transformer.dtype

        # 3. Encode the prompts (Wan's umT5 encoding)
        prompt_embeds, negative_prompt_embeds = self.encode_prompt(
            prompt=prompt,
            negative_prompt=negative_prompt,
            do_classifier_free_guidance=self.do_classifier_free_guidance,
            max_sequence_length=max_sequence_length,
            device=device,
        )
        prompt_embeds = prompt_embeds.to(transformer_dtype)
        if negative_prompt_embeds is not None:
            negative_prompt_embeds = negative_prompt_embeds.to(transformer_dtype)

        # 4. Encode the reference image (Wan's CLIP penultimate states)
        image_embeds = None
        if self.transformer.config.image_dim is not None:
            image_embeds = self.encode_image(reference_image, device).repeat(batch_size, 1, 1).to(transformer_dtype)

        # 5. Prepare the pose streams' inputs
        pose_inputs = PoseInputs(None, None, None, None)
        if mode == "animation":
            pose_inputs = self.prepare_pose_inputs(
                pose,
                driving_video,
                reference_pose,
                plan,
                height,
                width,
                batch_size,
                keypoint_conf_threshold,
                retarget_pose,
                keep_missing_parts,
                device,
            )

        # 6. Prepare timesteps
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps = self.scheduler.timesteps
        self._num_timesteps = len(timesteps)

        # 7. Prepare the noise for the whole video and the I2V condition for one window
        if latents is None:
            latents = randn_tensor(latent_shape, generator=generator, device=device, dtype=torch.float32)
        else:
            latents = latents.to(device=device, dtype=torch.float32)
        image_tensor = self.video_processor.preprocess(reference_image, height=height, width=width)
        # Every window has the same length, so one condition serves them all.
        window_pixel_frames = self.vae_factors.pixel_frames(plan.windows[0].length)
        condition = self.prepare_condition(
            image_tensor.to(device, torch.float32), batch_size, window_pixel_frames, torch.float32, device
        )

        # 8. Denoising loop over windows
        job = DenoisingJob(
            plan=plan,
            condition=condition,
            pose_inputs=pose_inputs,
            image_embeds=image_embeds,
            batch_size=batch_size,
            tensors={"prompt_embeds": prompt_embeds, "negative_prompt_embeds": negative_prompt_embeds},
            callback=callback_on_step_end,
            callback_tensor_inputs=callback_on_step_end_tensor_inputs,
        )
        if window_strategy == "blend" or len(plan.windows) == 1:
            latents = self._denoise_blended(job, latents, timesteps)
        else:
            latents = self._denoise_carried(job, latents, num_inference_steps)
        self._current_timestep = None

        # 9. Decode, and drop the frames that only filled the IPI's window
        if output_type == "latent":
            video = latents[:, :, : self.vae_factors.latent_frames(plan.num_frames)]
        else:
            video = self.decode_latents(latents)[:, :, : plan.num_frames]
            video = self.video_processor.postprocess_video(video, output_type=output_type)

        self.maybe_free_model_hooks()
        if not return_dict:
            return (video,)
        return WanPipelineOutput(frames=video)
