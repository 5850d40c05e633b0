"""A batch of clip samples -> the transformer's inputs, through the pipeline's own frozen encoders.

`ConditionEncoder` calls `AnimateXPipeline`'s methods, never a copy of them: Wan's umT5 prompt encoding, its CLIP
image encoding of the reference, the I2V condition (`prepare_condition`), the VAE latents normalised as the
pipeline normalises them, and the IPI's CLIP features of the driving frames (`encode_driving_frames`). Precompute
writes what it returns; the trainer calls it on the fly when there is no cache. Both therefore give the model what
inference gives it.

Model inputs (B samples of one task):
- `latents` (B, 16, F_lat, h, w): the clip's normalised VAE latents (the distribution's mode: deterministic);
- `condition` (B, 4 + 16, F_lat, h, w): the I2V mask and the latent of the reference as frame 0;
- `prompt_embeds` (B, 512, D_text); `image_embeds` (B, 257, D_image) when the transformer takes image tokens;
- animation: `driving_embeds` (B, F, D_clip) when the IPI runs, and the pose tensors passed through unchanged
  (`pose_video`, `pose_keypoints`, `reference_pose`; the images uint8), which the trainable pose streams encode in
  the step.

The batch's images come uint8 (`animatex_pp.data.clips`); they are copied to the device as such, without blocking
the host (from pinned memory when the trainer's loader pins it), and become floats there.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import PIL.Image
import torch
from diffusers.pipelines.wan.pipeline_wan_i2v import retrieve_latents
from diffusers.utils.torch_utils import get_module_execution_device

from animatex_pp.io.frames import to_signed
from animatex_pp.pipelines.pipeline_animatex import WAN_TEXT_TOKENS, AnimateXPipeline

POSE_TENSORS = ("pose_video", "pose_keypoints", "reference_pose")
# What precompute stores per sample (the pose tensors stay random: EPI is drawn per step).
ENCODED_TENSORS = ("latents", "condition", "prompt_embeds", "image_embeds", "driving_embeds")


def _uint8_images(images: torch.Tensor) -> list[PIL.Image.Image]:
    """uint8 (B, 3, H, W) -> PIL images, the input Wan's CLIP image processor takes at inference."""
    # (B, 3, H, W) -> (B, H, W, 3)
    pixels = images.permute(0, 2, 3, 1).cpu().numpy()
    return [PIL.Image.fromarray(image) for image in pixels]


class ConditionEncoder:
    """Encodes collated samples (`animatex_pp.data.clips.collate`) with a pipeline's frozen encoders."""

    def __init__(self, pipeline: AnimateXPipeline, max_sequence_length: int = WAN_TEXT_TOKENS):
        self.pipeline = pipeline
        self.max_sequence_length = max_sequence_length

    @property
    def uses_ipi(self) -> bool:
        return self.pipeline._has_stream("implicit_pose_indicator") and self.pipeline.motion_encoder is not None

    @torch.no_grad()
    def encode(self, batch: dict[str, Any], device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
        pipe = self.pipeline
        frames, reference = batch["frames"], batch["reference"]
        batch_size, _, num_frames, _, _ = frames.shape
        vae_device = get_module_execution_device(pipe.vae)

        # uint8 -> [-1, 1] on the VAE's device, then its dtype
        video = to_signed(frames.to(vae_device, non_blocking=True)).to(pipe.vae.dtype)
        latents = pipe.normalize_latents(retrieve_latents(pipe.vae.encode(video), sample_mode="argmax").float())
        references = to_signed(reference.to(device, non_blocking=True))
        condition = torch.cat(
            [pipe.prepare_condition(references[i : i + 1], 1, num_frames, torch.float32, device)
             for i in range(batch_size)]
        )  # fmt: skip
        prompt_embeds, _ = pipe.encode_prompt(
            prompt=list(batch["caption"]),
            do_classifier_free_guidance=False,
            max_sequence_length=self.max_sequence_length,
            device=device,
        )
        inputs = {"latents": latents.to(device), "condition": condition, "prompt_embeds": prompt_embeds.float()}
        if pipe.transformer.config.image_dim is not None:
            inputs["image_embeds"] = pipe.encode_image(_uint8_images(reference), device).float()
        if "pose_video" in batch:
            inputs.update({name: batch[name].to(device, non_blocking=True) for name in POSE_TENSORS})
            if self.uses_ipi:
                driving = batch["driving_frames"].cpu().numpy()
                inputs["driving_embeds"] = torch.stack(
                    [pipe.encode_driving_frames(np.ascontiguousarray(clip)).to(device) for clip in driving]
                )
        return inputs
