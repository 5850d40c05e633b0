"""Named model sizes: `tiny` for CPU tests and the Wan2.1 I2V 14B configurations.

Each preset carries the full Wan base config (so `split_preset` can build a plain Wan model from it) and only the
stream arguments that differ from `AnimateXTransformer3DModel`'s defaults, which are the released Animate-X++
sizes. The 480P and 720P Wan2.1 I2V checkpoints share one architecture; they differ in the weights and the
resolution they were trained at.
"""

from __future__ import annotations

import copy
import inspect
from typing import Any

from diffusers import WanTransformer3DModel

_WAN21_I2V_14B: dict[str, Any] = {
    "patch_size": (1, 2, 2),
    "num_attention_heads": 40,
    "attention_head_dim": 128,
    "in_channels": 36,
    "out_channels": 16,
    "text_dim": 4096,
    "freq_dim": 256,
    "ffn_dim": 13824,
    "num_layers": 40,
    "cross_attn_norm": True,
    "qk_norm": "rms_norm_across_heads",
    "eps": 1e-6,
    "image_dim": 1280,
    "added_kv_proj_dim": 5120,
}

PRESETS: dict[str, dict[str, Any]] = {
    # Seconds on a CPU: 4 blocks of width 32, streams at matching tiny sizes, 9-frame windows (3 latent frames).
    "tiny": {
        **_WAN21_I2V_14B,
        "num_attention_heads": 2,
        "attention_head_dim": 16,
        "text_dim": 32,
        "freq_dim": 32,
        "ffn_dim": 64,
        "num_layers": 4,
        "image_dim": 24,
        "added_kv_proj_dim": 32,
        "rope_max_seq_len": 256,
        "pose_video_hidden_channels": 4,
        "reference_pose_hidden_channels": 4,
        "ipi_encoder_dim": 32,
        "ipi_encoder_heads": 2,
        "ipi_encoder_layers": 1,
        "ipi_encoder_ffn_dim": 32,
        "ipi_encoder_dropout": 0.0,
        "ipi_encoder_max_frames": 64,
        "ipi_clip_dim": 16,
        "ipi_resampler_dim": 32,
        "ipi_resampler_depth": 1,
        "ipi_resampler_heads": 2,
        "ipi_resampler_head_dim": 16,
        "ipi_resampler_ff_mult": 2,
        "ipi_resampler_output_dim": 32,
        "ipi_num_frames": 9,
        "ipi_num_latent_frames": 3,
        "ipi_block_start": 1,
        "ipi_block_end": 3,
    },
    "wan2.1-i2v-14b-480p": dict(_WAN21_I2V_14B),
    "wan2.1-i2v-14b-720p": dict(_WAN21_I2V_14B),
}


def get_preset(name: str) -> dict[str, Any]:
    """The config kwargs of preset `name` (a copy: change it freely)."""
    if name not in PRESETS:
        raise ValueError(f"Unknown preset {name!r}; choose one of {sorted(PRESETS)}.")
    return copy.deepcopy(PRESETS[name])


def wan_config_keys() -> set[str]:
    """The config arguments that belong to the Wan base model; the rest of ours configure the pose streams."""
    return set(inspect.signature(WanTransformer3DModel.__init__).parameters) - {"self"}


def split_preset(name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Preset `name` as (Wan base config, stream config): build a plain Wan model from the first, and pass the
    second to `AnimateXTransformer3DModel.from_wan`."""
    preset = get_preset(name)
    base_keys = wan_config_keys()
    base = {key: value for key, value in preset.items() if key in base_keys}
    streams = {key: value for key, value in preset.items() if key not in base_keys}
    return base, streams
