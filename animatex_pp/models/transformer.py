"""`AnimateXTransformer3DModel`: diffusers' Wan2.1 I2V DiT with the three Animate-X++ pose streams.

The subclass keeps every Wan state-dict name, so real Wan2.1 weights load as they are, and adds:

| stream                    | input                                    | enters the DiT                          |
|---------------------------|------------------------------------------|-----------------------------------------|
| `pose_video_encoder`      | rendered skeleton video (B, 3, F, H, W)  | added to the patch tokens (block 0 in)  |
| `reference_pose_encoder`  | reference skeleton (B, 3, H, W)          | added to the 20 I2V condition channels  |
| `implicit_pose_indicator` | keypoints (B, F, 18, 2) + CLIP (B, F, D) | one vector per latent frame, before     |
|                           |                                          | blocks ipi_block_start <= i < ..._end   |

Each stream's output layer starts at zero, so at initialisation (and whenever a stream's input is absent) the
output equals the base Wan model's output exactly.
"""

from __future__ import annotations

import logging as pylogging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
from diffusers import WanTransformer3DModel
from diffusers.configuration_utils import register_to_config
from diffusers.hooks._helpers import TransformerBlockMetadata, TransformerBlockRegistry
from diffusers.models.modeling_outputs import Transformer2DModelOutput

# Re-exported on purpose: a pipeline's `from_pretrained` looks the loadable base classes up in the module that
# `model_index.json` names for a component, and for this model that is this module.
from diffusers.models.modeling_utils import ModelMixin  # noqa: F401
from diffusers.models.transformers.transformer_wan import WanTransformerBlock
from diffusers.utils import apply_lora_scale, logging
from diffusers.utils.accelerate_utils import apply_forward_hook

from animatex_pp.io.files import give_umask_permissions
from animatex_pp.models.pose_streams import (
    ImplicitPoseIndicator,
    PoseVideoEncoder,
    ReferencePoseEncoder,
    sinusoidal_position_table,
    zero_module,
)
from animatex_pp.models.presets import get_preset, wan_config_keys

# The official Animate-X++ stacks: three stride-1 convs, then downsampling to the patch grid. The pose-video stack's
# total stride (4, 16, 16) is the Wan VAE's (4, 8, 8) times the patch (1, 2, 2); a model with another VAE or patch
# size passes other strides.
OFFICIAL_POSE_VIDEO_STRIDES = ((1, 1, 1), (1, 1, 1), (1, 1, 1), (1, 2, 2), (2, 2, 2), (2, 2, 2), (1, 2, 2))
OFFICIAL_REFERENCE_POSE_STRIDES = ((1, 1), (1, 1), (1, 1), (2, 2), (2, 2), (2, 2))

ATTENTION_BACKEND_ENV = "ANIMATEX_ATTENTION_BACKEND"

logger = logging.get_logger(__name__)


def resolve_attention_backend(
    requested: str, device: torch.device, dtype: torch.dtype, capability: tuple[int, int] | None = None
) -> str:
    """The diffusers attention backend for attention in `dtype` on `device`.

    `requested` (the model config's `attention_backend`, overridden by the ANIMATEX_ATTENTION_BACKEND environment
    variable) names a diffusers backend, or is "auto": flash-attn where it runs, PyTorch SDPA ("native") elsewhere.
    flash-attn refuses fp32 (`eval` runs in fp32) and cards before Ampere, and diffusers takes only flash-attn >=
    2.6.3 that imports, so it is chosen for bf16/fp16 on a CUDA card of compute capability >= 8.0 when diffusers can
    use it. `capability` is the card's (major, minor), read from `device` when not given.
    """
    from diffusers.models import attention_dispatch

    requested = os.environ.get(ATTENTION_BACKEND_ENV, requested)
    if requested != "auto":
        return requested
    if device.type != "cuda" or dtype not in (torch.bfloat16, torch.float16):
        return "native"
    if (capability or torch.cuda.get_device_capability(device)) < (8, 0):
        return "native"
    # diffusers' own verdict on the installed flash-attn: its version, and a real import (a half-built one fails)
    return "flash" if attention_dispatch._CAN_USE_FLASH_ATTN else "native"


@dataclass
class PoseConditions:
    """The pose streams' outputs for one window, encoded once by `encode_pose_conditions`.

    `dataclasses.replace(conditions, pose_tokens=None)` drops the explicit pose for a classifier-free-guidance pass.
    """

    pose_tokens: torch.Tensor | None = None  # (B, D, F', H', W'): added to the patch tokens
    reference_condition: torch.Tensor | None = None  # (B, C_cond, H / 8, W / 8): added to the I2V conditions
    pose_embedding: torch.Tensor | None = None  # (B, F_lat, D): added before the IPI blocks

    def check_fits(self, num_frames: int, height: int, width: int, patch_size: tuple[int, int, int]) -> None:
        """Raise a ValueError saying what to do when the encodings do not fit a latent of this size."""
        p_t, p_h, p_w = patch_size
        grid = (num_frames // p_t, height // p_h, width // p_w)
        if self.pose_tokens is not None and tuple(self.pose_tokens.shape[2:]) != grid:
            raise ValueError(
                f"`pose_video` encodes to a {tuple(self.pose_tokens.shape[2:])} grid, but the latent patch grid is "
                f"{grid}: give 4 * (F_lat - 1) + 1 frames at the generation resolution."
            )
        if self.reference_condition is not None and tuple(self.reference_condition.shape[-2:]) != (height, width):
            raise ValueError(
                f"`reference_pose` encodes to {tuple(self.reference_condition.shape[-2:])}, but the latent is "
                f"{(height, width)}: give the skeleton at the generation resolution."
            )
        if self.pose_embedding is not None and self.pose_embedding.shape[1] != num_frames // p_t:
            raise ValueError(
                f"The IPI gives {self.pose_embedding.shape[1]} latent frames (ipi_num_latent_frames) but the latent "
                f"has {num_frames // p_t}: generate windows of ipi_num_frames driving frames."
            )


class AnimateXTransformerBlock(WanTransformerBlock):
    """A Wan block that first adds the implicit pose indicator, broadcast over each latent frame's tokens.

    Doing the add inside the block (rather than between blocks) keeps diffusers' cache hooks exact: a skipped block
    returns its input unchanged, and the cached residual already holds the pose contribution. The subclass has no
    state of its own, so state-dict names are Wan's.
    """

    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        temb: torch.Tensor,
        rotary_emb: torch.Tensor,
        pose_embedding: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if pose_embedding is not None:
            num_latent_frames = pose_embedding.shape[1]
            # (B, F_lat * H' * W', D) -> (B, F_lat, H' * W', D) + (B, F_lat, 1, D) -> (B, F_lat * H' * W', D)
            hidden_states = (
                hidden_states.unflatten(1, (num_latent_frames, -1)) + pose_embedding.unsqueeze(2)
            ).flatten(1, 2)
        return super().forward(hidden_states, encoder_hidden_states, temb, rotary_emb)


TransformerBlockRegistry.register(
    AnimateXTransformerBlock,
    TransformerBlockMetadata(return_hidden_states_index=0, return_encoder_hidden_states_index=None),
)


class _FreshStreamsNotice(pylogging.Filter):
    """Drops diffusers' "Some weights of ... are newly initialized: [...]" warning when every weight it names is a
    pose stream's: `from_pretrained` initialises those itself and logs one line that says so. A warning naming any
    other weight (a damaged or foreign checkpoint) goes through. Written by hand: diffusers can ignore unexpected
    weights (`_keys_to_ignore_on_load_unexpected`) but has no switch for weights that are expected to be missing."""

    def __init__(self, stream_prefixes: tuple[str, ...]):
        super().__init__()
        self.stream_prefixes = stream_prefixes

    def filter(self, record: pylogging.LogRecord) -> bool:
        message = record.getMessage()
        if "are newly initialized:" not in message:
            return True
        names = re.findall(r"'([^']+)'", message.split("are newly initialized:", 1)[1].split("\n", 1)[0])
        return not names or not all(name.startswith(self.stream_prefixes) for name in names)


class AnimateXTransformer3DModel(WanTransformer3DModel):
    r"""
    Wan2.1 image-to-video DiT with the Animate-X++ explicit and implicit pose streams.

    Base arguments are `WanTransformer3DModel`'s. Stream arguments (defaults are the released Animate-X++ sizes):

    Args:
        use_pose_video (`bool`): build the explicit pose-video encoder.
        pose_video_hidden_channels (`int`): width of its conv stack.
        pose_video_strides (`tuple[tuple[int, int, int]]`): per-conv strides; their product must map pixels onto the
            patch grid (VAE compression x patch size).
        use_reference_pose (`bool`): build the reference-pose encoder (needs I2V condition channels).
        reference_pose_hidden_channels (`int`), reference_pose_strides (`tuple[tuple[int, int]]`): its conv stack; the
            total stride is the VAE's spatial compression.
        use_ipi (`bool`): build the implicit pose indicator.
        ipi_num_keypoints (`int`): body keypoints per frame (OpenPose-18).
        ipi_encoder_dim, ipi_encoder_heads, ipi_encoder_layers, ipi_encoder_ffn_dim, ipi_encoder_dropout,
        ipi_encoder_max_frames: the keypoint transformer encoder.
        ipi_clip_dim (`int`): size of the CLIP image embedding of each driving frame.
        ipi_resampler_dim, ipi_resampler_depth, ipi_resampler_heads, ipi_resampler_head_dim, ipi_resampler_ff_mult,
        ipi_resampler_output_dim: the Perceiver resampler.
        ipi_num_frames (`int`): driving frames per window; the temporal Conv1d is tied to it.
        ipi_num_latent_frames (`int`): latent frames per window.
        ipi_temporal_kernel_size (`int`): kernel of the temporal Conv1d.
        ipi_block_start, ipi_block_end (`int`): the IPI is added before blocks `ipi_block_start <= i < ipi_block_end`
            (official: 2 and 21 of 40).
        attention_backend (`str`): a diffusers attention backend name, or "auto" (flash-attn for bf16/fp16 on an
            Ampere or newer card when diffusers can use it, SDPA otherwise). The ANIMATEX_ATTENTION_BACKEND
            environment variable overrides it.
    """

    _no_split_modules = ["AnimateXTransformerBlock"]
    _repeated_blocks = ["AnimateXTransformerBlock"]
    _skip_layerwise_casting_patterns = WanTransformer3DModel._skip_layerwise_casting_patterns + [
        "pose_video_encoder",
        "reference_pose_encoder",
        "implicit_pose_indicator",
    ]
    stream_names = ("pose_video_encoder", "reference_pose_encoder", "implicit_pose_indicator")

    @register_to_config
    def __init__(
        self,
        patch_size: tuple[int, ...] = (1, 2, 2),
        num_attention_heads: int = 40,
        attention_head_dim: int = 128,
        in_channels: int = 36,
        out_channels: int = 16,
        text_dim: int = 4096,
        freq_dim: int = 256,
        ffn_dim: int = 13824,
        num_layers: int = 40,
        cross_attn_norm: bool = True,
        qk_norm: str | None = "rms_norm_across_heads",
        eps: float = 1e-6,
        image_dim: int | None = 1280,
        added_kv_proj_dim: int | None = 5120,
        rope_max_seq_len: int = 1024,
        pos_embed_seq_len: int | None = None,
        use_pose_video: bool = True,
        pose_video_hidden_channels: int = 16,
        pose_video_strides: tuple[tuple[int, ...], ...] = OFFICIAL_POSE_VIDEO_STRIDES,
        use_reference_pose: bool = True,
        reference_pose_hidden_channels: int = 16,
        reference_pose_strides: tuple[tuple[int, ...], ...] = OFFICIAL_REFERENCE_POSE_STRIDES,
        use_ipi: bool = True,
        ipi_num_keypoints: int = 18,
        ipi_encoder_dim: int = 1024,
        ipi_encoder_heads: int = 8,
        ipi_encoder_layers: int = 3,
        ipi_encoder_ffn_dim: int = 1024,
        ipi_encoder_dropout: float = 0.1,
        ipi_encoder_max_frames: int = 330,
        ipi_clip_dim: int = 1024,
        ipi_resampler_dim: int = 1024,
        ipi_resampler_depth: int = 8,
        ipi_resampler_heads: int = 16,
        ipi_resampler_head_dim: int = 64,
        ipi_resampler_ff_mult: int = 4,
        ipi_resampler_output_dim: int = 1024,
        ipi_num_frames: int = 81,
        ipi_num_latent_frames: int = 21,
        ipi_temporal_kernel_size: int = 3,
        ipi_block_start: int = 2,
        ipi_block_end: int = 21,
        attention_backend: str = "auto",
    ) -> None:
        super().__init__(
            patch_size=patch_size,
            num_attention_heads=num_attention_heads,
            attention_head_dim=attention_head_dim,
            in_channels=in_channels,
            out_channels=out_channels,
            text_dim=text_dim,
            freq_dim=freq_dim,
            ffn_dim=ffn_dim,
            num_layers=num_layers,
            cross_attn_norm=cross_attn_norm,
            qk_norm=qk_norm,
            eps=eps,
            image_dim=image_dim,
            added_kv_proj_dim=added_kv_proj_dim,
            rope_max_seq_len=rope_max_seq_len,
            pos_embed_seq_len=pos_embed_seq_len,
        )
        inner_dim = num_attention_heads * attention_head_dim
        condition_channels = in_channels - out_channels
        if use_reference_pose and condition_channels <= 0:
            raise ValueError(
                f"use_reference_pose needs I2V condition channels (in_channels > out_channels), got in_channels="
                f"{in_channels}, out_channels={out_channels}; build an I2V model or pass use_reference_pose=False."
            )
        if use_ipi and not 0 <= ipi_block_start < ipi_block_end <= num_layers:
            raise ValueError(
                f"ipi_block_start/ipi_block_end must satisfy 0 <= start < end <= num_layers ({num_layers}), got "
                f"{ipi_block_start} and {ipi_block_end}."
            )

        # Wan builds WanTransformerBlocks; re-class them as the state-free subclass that also takes the IPI, rather
        # than building every block twice (40 x 0.4B parameters for the 14B model).
        for block in self.blocks:
            block.__class__ = AnimateXTransformerBlock

        # 1. Explicit pose: rendered pose video -> patch tokens
        self.pose_video_encoder = (
            PoseVideoEncoder(pose_video_hidden_channels, inner_dim, pose_video_strides) if use_pose_video else None
        )
        # 2. Reference pose -> I2V condition channels
        self.reference_pose_encoder = (
            ReferencePoseEncoder(reference_pose_hidden_channels, condition_channels, reference_pose_strides)
            if use_reference_pose
            else None
        )
        # 3. Implicit pose indicator -> one vector per latent frame
        self.implicit_pose_indicator = (
            ImplicitPoseIndicator(
                inner_dim=inner_dim,
                num_keypoints=ipi_num_keypoints,
                encoder_dim=ipi_encoder_dim,
                encoder_heads=ipi_encoder_heads,
                encoder_layers=ipi_encoder_layers,
                encoder_ffn_dim=ipi_encoder_ffn_dim,
                encoder_dropout=ipi_encoder_dropout,
                encoder_max_frames=ipi_encoder_max_frames,
                clip_dim=ipi_clip_dim,
                resampler_dim=ipi_resampler_dim,
                resampler_depth=ipi_resampler_depth,
                resampler_heads=ipi_resampler_heads,
                resampler_head_dim=ipi_resampler_head_dim,
                resampler_ff_mult=ipi_resampler_ff_mult,
                resampler_output_dim=ipi_resampler_output_dim,
                num_frames=ipi_num_frames,
                num_latent_frames=ipi_num_latent_frames,
                temporal_kernel_size=ipi_temporal_kernel_size,
            )
            if use_ipi
            else None
        )
        self._attention_backend_key: tuple[torch.device, torch.dtype] | None = None
        if not any(parameter.is_meta for parameter in self.stream_parameters()):
            self.initialize_stream_weights()

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> AnimateXTransformer3DModel:
        """A randomly initialised model of a named size (`animatex_pp.models.presets`), e.g. `from_preset("tiny")`.

        Build the 14B presets under `torch.device("meta")` to inspect them without allocating memory.
        """
        return cls(**{**get_preset(name), **overrides})

    @classmethod
    def from_wan(cls, wan_transformer: WanTransformer3DModel, **stream_config: Any) -> AnimateXTransformer3DModel:
        """Build the model around an existing Wan I2V transformer, sharing its weights (no copy).

        `stream_config` takes the stream arguments of `__init__` (e.g. `use_ipi=False`, `ipi_block_end=21`).
        The streams are created freshly initialised on the Wan model's device and dtype.
        """
        base_keys = wan_config_keys()
        unknown = set(stream_config) & base_keys
        if unknown:
            raise ValueError(
                f"from_wan takes stream arguments only; {sorted(unknown)} belong to the Wan model itself."
            )
        config = {key: value for key, value in wan_transformer.config.items() if key in base_keys}
        device, dtype = wan_transformer.device, wan_transformer.dtype

        # Build on the meta device (nothing allocated), then point every Wan parameter at the existing tensors.
        with torch.device("meta"):
            model = cls(**config, **stream_config)
        incompatible = model.load_state_dict(wan_transformer.state_dict(), strict=False, assign=True)
        stream_prefixes = tuple(f"{name}." for name in cls.stream_names)
        missing_base = [key for key in incompatible.missing_keys if not key.startswith(stream_prefixes)]
        if missing_base or incompatible.unexpected_keys:
            raise ValueError(
                "The Wan transformer does not match the model built from its config: missing "
                f"{missing_base}, unexpected {incompatible.unexpected_keys}."
            )
        # Non-persistent buffers (rotary tables) are not in the state dict: take them from the Wan model.
        for name, buffer in list(model.named_buffers()):
            if buffer.is_meta and not name.startswith(stream_prefixes):
                module_name, _, buffer_name = name.rpartition(".")
                model.get_submodule(module_name)._buffers[buffer_name] = wan_transformer.get_buffer(name)
        for stream in model.streams().values():
            stream.to_empty(device=device).to(dtype)
        model.initialize_stream_weights()
        return model.train(wan_transformer.training)

    def save_pretrained(self, save_directory, *args, **kwargs) -> None:
        """diffusers' `save_pretrained`; the files get the user's umask permissions (safetensors makes them 0o600)."""
        super().save_pretrained(save_directory, *args, **kwargs)
        give_umask_permissions(save_directory)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs) -> AnimateXTransformer3DModel:
        """diffusers' `from_pretrained`; a plain Wan2.1 I2V checkpoint loads too, with fresh pose streams.

        Stream arguments (e.g. `use_ipi=False`) may be passed as keyword overrides of the stored config. Streams the
        checkpoint lacks are created on the base weights' device and dtype and initialised (zero outputs), so the
        model starts as the Wan model it was loaded from.
        """
        notice = _FreshStreamsNotice(tuple(f"{name}." for name in cls.stream_names))
        loading_logger = logging.get_logger("diffusers.models.modeling_utils")
        loading_logger.addFilter(notice)
        try:
            model = super().from_pretrained(pretrained_model_name_or_path, **kwargs)
        finally:
            loading_logger.removeFilter(notice)
        base_parameter = model.patch_embedding.weight
        fresh = [name for name, stream in model.streams().items() if any(p.is_meta for p in stream.parameters())]
        if fresh:
            for name in fresh:
                getattr(model, name).to_empty(device=base_parameter.device)
            logger.info("Pose streams not in the checkpoint were initialised fresh (zero outputs): %s", fresh)
            # only those: the streams the checkpoint holds keep their loaded weights
            model.initialize_stream_weights(fresh)
        # Wan's `_keep_in_fp32_modules` ("norm1", "norm2", ...) is matched per name part, so it also keeps the IPI's
        # `nn.TransformerEncoderLayer` norms in fp32, and CUDA's layer norm refuses a bf16 input with fp32 weights.
        for stream in model.streams().values():
            stream.to(base_parameter.dtype)
        return model

    def initialize_stream_weights(self, names: Sequence[str] | None = None) -> None:
        """The one place where the grafted streams are initialised: those named (default: every stream).

        PyTorch defaults everywhere, Xavier on the keypoint transformer (as the official encoder), and zero on the
        output layer of every stream, so the model's output starts equal to Wan's.
        """
        streams = {name: stream for name, stream in self.streams().items() if names is None or name in names}
        for stream in streams.values():
            for module in stream.modules():
                if isinstance(module, nn.MultiheadAttention):
                    # Its in-projection is a bare parameter that only this private method re-initialises.
                    module._reset_parameters()
                elif hasattr(module, "reset_parameters"):
                    module.reset_parameters()
        if "pose_video_encoder" in streams:
            zero_module(self.pose_video_encoder.layers[-1])
        if "reference_pose_encoder" in streams:
            zero_module(self.reference_pose_encoder.layers[-1])
        ipi = streams.get("implicit_pose_indicator")
        if ipi is not None:
            with torch.no_grad():
                ipi.query.normal_(std=ipi.query.shape[-1] ** -0.5)
                table = ipi.keypoint_encoder.position_table
                table.copy_(sinusoidal_position_table(*table.shape))
            for parameter in ipi.keypoint_encoder.encoder.parameters():
                if parameter.dim() > 1:
                    nn.init.xavier_uniform_(parameter)
            zero_module(ipi.keypoint_encoder.output_mlp[-1])
            zero_module(ipi.out_proj)

    def streams(self) -> dict[str, nn.Module]:
        """The pose streams this model has, by name."""
        return {name: getattr(self, name) for name in self.stream_names if getattr(self, name) is not None}

    def stream_parameters(self):
        for stream in self.streams().values():
            yield from stream.parameters()

    # ------------------------------------------------------------------ forward helpers

    def _select_attention_backend(self, device: torch.device) -> None:
        """Apply the configured attention backend the first time the model runs on a device in its dtype."""
        from diffusers.models.attention_dispatch import _AttentionBackendRegistry

        key = (device, self.dtype)
        if self._attention_backend_key == key:
            return
        # diffusers warns that backends are experimental each time one is set; the user did not ask for this one.
        verbosity = logging.get_verbosity()
        logging.set_verbosity_error()
        # `set_attention_backend` also makes its backend the process-wide default, which other models (e.g. an fp32
        # one on the same card, where flash-attn fails) would then use: this model's processors only.
        process_default, _ = _AttentionBackendRegistry.get_active_backend()
        try:
            self.set_attention_backend(resolve_attention_backend(self.config.attention_backend, device, self.dtype))
        finally:
            _AttentionBackendRegistry.set_active_backend(process_default)
            logging.set_verbosity(verbosity)
        self._attention_backend_key = key

    def _maybe_checkpoint(self, module: nn.Module, *inputs: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and self.gradient_checkpointing:
            return self._gradient_checkpointing_func(module, *inputs)
        return module(*inputs)

    def _check_stream_inputs(
        self,
        batch_size: int | None,
        pose_video: torch.Tensor | None,
        reference_pose: torch.Tensor | None,
        pose_keypoints: torch.Tensor | None,
        driving_image_embeds: torch.Tensor | None,
    ) -> None:
        given = {
            "pose_video": (pose_video, self.pose_video_encoder, "use_pose_video"),
            "reference_pose": (reference_pose, self.reference_pose_encoder, "use_reference_pose"),
            "pose_keypoints": (pose_keypoints, self.implicit_pose_indicator, "use_ipi"),
            "driving_image_embeds": (driving_image_embeds, self.implicit_pose_indicator, "use_ipi"),
        }
        for name, (value, module, flag) in given.items():
            if value is not None and module is None:
                raise ValueError(f"`{name}` was given but this model has no such stream ({flag}=False).")
        given_values = (pose_video, reference_pose, pose_keypoints, driving_image_embeds)
        if (pose_keypoints is None) != (driving_image_embeds is None):
            raise ValueError("The implicit pose indicator needs both `pose_keypoints` and `driving_image_embeds`.")
        if batch_size is None:
            batch_size = next((len(value) for value in given_values if value is not None), 0)
        if pose_video is not None and (pose_video.ndim != 5 or pose_video.shape[:2] != (batch_size, 3)):
            raise ValueError(f"`pose_video` must be (B={batch_size}, 3, F, H, W), got {tuple(pose_video.shape)}.")
        if reference_pose is not None and (reference_pose.ndim != 4 or reference_pose.shape[:2] != (batch_size, 3)):
            raise ValueError(f"`reference_pose` must be (B={batch_size}, 3, H, W), got {tuple(reference_pose.shape)}.")
        if pose_keypoints is not None:
            expected = (batch_size, self.config.ipi_num_frames, self.config.ipi_num_keypoints, 2)
            if tuple(pose_keypoints.shape) != expected:
                raise ValueError(
                    f"`pose_keypoints` must be {expected} (the IPI is tied to ipi_num_frames driving frames), got "
                    f"{tuple(pose_keypoints.shape)}."
                )
            expected = (batch_size, self.config.ipi_num_frames, self.config.ipi_clip_dim)
            if tuple(driving_image_embeds.shape) != expected:
                raise ValueError(
                    f"`driving_image_embeds` must be {expected}, got {tuple(driving_image_embeds.shape)}."
                )

    # ------------------------------------------------------------------ forward

    @apply_forward_hook  # with CPU offload, moves the model onto the execution device as `forward` does
    def encode_pose_conditions(
        self,
        pose_video: torch.Tensor | None = None,
        reference_pose: torch.Tensor | None = None,
        pose_keypoints: torch.Tensor | None = None,
        driving_image_embeds: torch.Tensor | None = None,
        batch_size: int | None = None,
    ) -> PoseConditions:
        """Run the stream encoders once; pass the result to `forward(pose_conditions=...)` at every step.

        Poses do not change with the timestep, so a pipeline encodes them once per window (as the official inference
        does) instead of at each of the 2 x 50 transformer calls. Arguments are those of `forward`.
        """
        self._check_stream_inputs(batch_size, pose_video, reference_pose, pose_keypoints, driving_image_embeds)
        return PoseConditions(
            pose_tokens=None if pose_video is None else self._maybe_checkpoint(self.pose_video_encoder, pose_video),
            reference_condition=(
                None if reference_pose is None else self._maybe_checkpoint(self.reference_pose_encoder, reference_pose)
            ),
            pose_embedding=(
                None
                if pose_keypoints is None
                else self._maybe_checkpoint(self.implicit_pose_indicator, pose_keypoints, driving_image_embeds)
            ),
        )

    @apply_lora_scale("attention_kwargs")
    def forward(
        self,
        hidden_states: torch.Tensor,
        timestep: torch.LongTensor,
        encoder_hidden_states: torch.Tensor,
        encoder_hidden_states_image: torch.Tensor | None = None,
        pose_video: torch.Tensor | None = None,
        reference_pose: torch.Tensor | None = None,
        pose_keypoints: torch.Tensor | None = None,
        driving_image_embeds: torch.Tensor | None = None,
        return_dict: bool = True,
        attention_kwargs: dict[str, Any] | None = None,
        pose_conditions: PoseConditions | None = None,
    ) -> torch.Tensor | Transformer2DModelOutput:
        """
        Args:
            hidden_states: (B, 16 + 20, F_lat, H / 8, W / 8) noisy latent ++ mask ++ image latent.
            timestep: (B,).
            encoder_hidden_states: (B, L_text, text_dim) umT5 states.
            encoder_hidden_states_image: (B, 257, image_dim) CLIP penultimate states (Wan I2V).
            pose_video: (B, 3, F, H, W) rendered skeletons in [0, 1], F = 4 * (F_lat - 1) + 1.
            reference_pose: (B, 3, H, W) the reference image's skeleton in [0, 1].
            pose_keypoints: (B, F, 18, 2) driving keypoints in [0, 1], -1 where missing.
            driving_image_embeds: (B, F, D_clip) pooled, projected CLIP embeddings of the driving frames.
            pose_conditions: the four stream inputs already encoded by `encode_pose_conditions` (instead of them).

        Returns: `Transformer2DModelOutput` with `sample` (B, 16, F_lat, H / 8, W / 8), or a 1-tuple.
        """
        raw_inputs = (pose_video, reference_pose, pose_keypoints, driving_image_embeds)
        if pose_conditions is None:
            pose_conditions = self.encode_pose_conditions(*raw_inputs, batch_size=hidden_states.shape[0])
        elif any(value is not None for value in raw_inputs):
            raise ValueError("Pass either `pose_conditions` or the raw pose inputs, not both.")
        self._select_attention_backend(hidden_states.device)
        batch_size, num_channels, num_frames, height, width = hidden_states.shape
        p_t, p_h, p_w = self.config.patch_size
        post_patch_num_frames = num_frames // p_t
        post_patch_height = height // p_h
        post_patch_width = width // p_w
        pose_conditions.check_fits(num_frames, height, width, self.config.patch_size)

        # 1. Reference pose, added to the I2V condition channels of every latent frame
        if pose_conditions.reference_condition is not None:
            noisy_channels = self.config.out_channels
            # (B, C_cond, H', W') -> (B, C_cond, 1, H', W'), broadcast over latent frames
            reference_condition = pose_conditions.reference_condition.unsqueeze(2).to(hidden_states.dtype)
            conditions = hidden_states[:, noisy_channels:] + reference_condition
            hidden_states = torch.cat([hidden_states[:, :noisy_channels], conditions], dim=1)

        # 2. Patch & position embedding, plus the explicit pose tokens
        rotary_emb = self.rope(hidden_states)
        hidden_states = self.patch_embedding(hidden_states)
        # (B, D, F', H', W') -> (B, F' * H' * W', D)
        hidden_states = hidden_states.flatten(2).transpose(1, 2).contiguous()
        if pose_conditions.pose_tokens is not None:
            # (B, D, F', H', W') -> (B, F' * H' * W', D)
            pose_tokens = pose_conditions.pose_tokens.flatten(2).transpose(1, 2)
            hidden_states = hidden_states + pose_tokens.to(hidden_states.dtype)

        # 3. Time, text and image conditions (Wan2.1: one timestep per sample)
        temb, timestep_proj, encoder_hidden_states, encoder_hidden_states_image = self.condition_embedder(
            timestep, encoder_hidden_states, encoder_hidden_states_image
        )
        # (B, 6 * D) -> (B, 6, D)
        timestep_proj = timestep_proj.unflatten(1, (6, -1))
        if encoder_hidden_states_image is not None:
            encoder_hidden_states = torch.concat([encoder_hidden_states_image, encoder_hidden_states], dim=1)

        # 4. Implicit pose indicator: one vector per latent frame
        pose_embedding = pose_conditions.pose_embedding
        if pose_embedding is not None:
            pose_embedding = pose_embedding.to(hidden_states.dtype)

        # 5. Transformer blocks, the IPI added before those in [ipi_block_start, ipi_block_end)
        ipi_blocks = range(self.config.ipi_block_start, self.config.ipi_block_end)
        for index, block in enumerate(self.blocks):
            block_pose = pose_embedding if index in ipi_blocks else None
            if torch.is_grad_enabled() and self.gradient_checkpointing:
                hidden_states = self._gradient_checkpointing_func(
                    block, hidden_states, encoder_hidden_states, timestep_proj, rotary_emb, block_pose
                )
            else:
                hidden_states = block(hidden_states, encoder_hidden_states, timestep_proj, rotary_emb, block_pose)

        # 6. Output norm, projection & unpatchify
        shift, scale = (self.scale_shift_table.to(temb.device) + temb.unsqueeze(1)).chunk(2, dim=1)
        shift, scale = shift.to(hidden_states.device), scale.to(hidden_states.device)
        hidden_states = (self.norm_out(hidden_states.float()) * (1 + scale) + shift).type_as(hidden_states)
        hidden_states = self.proj_out(hidden_states)
        # (B, F' * H' * W', p_t * p_h * p_w * C) -> (B, F', H', W', p_t, p_h, p_w, C)
        hidden_states = hidden_states.reshape(
            batch_size, post_patch_num_frames, post_patch_height, post_patch_width, p_t, p_h, p_w, -1
        )
        # (B, F', H', W', p_t, p_h, p_w, C) -> (B, C, F' * p_t, H' * p_h, W' * p_w)
        hidden_states = hidden_states.permute(0, 7, 1, 4, 2, 5, 3, 6)
        output = hidden_states.flatten(6, 7).flatten(4, 5).flatten(2, 3)

        if not return_dict:
            return (output,)
        return Transformer2DModelOutput(sample=output)


def count_parameters(model: AnimateXTransformer3DModel) -> dict[str, int]:
    """Parameter counts: the Wan base, each stream, and the total (works on the meta device)."""
    counts = {name: sum(p.numel() for p in stream.parameters()) for name, stream in model.streams().items()}
    total = sum(p.numel() for p in model.parameters())
    counts["base"] = total - sum(counts.values())
    counts["total"] = total
    return counts
