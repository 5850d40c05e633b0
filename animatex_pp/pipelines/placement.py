"""Where a pipeline's components run, and in which dtype a run on a device computes by default.

`DiffusionPipeline.to(device)` moves every component. A run that only encodes (precompute: VAE latents, the I2V
condition, umT5 prompt states, Wan's CLIP image states, the IPI's CLIP features of the driving frames) never calls the
transformer, which for Wan2.1 14B is 52 GiB more in float32 on the accelerator. `move_encoders` moves only the modules
that run. Such a run need not read the transformer's weights either: all the encoding reads of it is its config and
stream layout, so `transformer_without_weights` builds it from its config on the meta device, and
`load_pipeline(folder, transformer=...)` takes that instead of loading 52 GiB into host memory.

This is enough because the encoding code finds its device per module, never from the pipeline: Wan's prompt and
image encoding and `AnimateXPipeline.prepare_condition`, `encode_driving_frames` and `decode_latents` run each
module on its own parameters' device (`get_module_execution_device`) and put their outputs on the device they are
given. The pipeline-wide `_execution_device` / `device`, which diffusers derives from the components (the first
one off the CPU and the meta device, else any one of them, the meta transformer included), is read only by
`__call__` (generation), which needs the transformer's weights and placement as well: load and move the whole
pipeline for that.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from animatex_pp.models.transformer import AnimateXTransformer3DModel
    from animatex_pp.pipelines.pipeline_animatex import AnimateXPipeline

__all__ = ["ENCODERS", "default_dtype", "move_encoders", "transformer_without_weights"]

ENCODERS = ("text_encoder", "image_encoder", "motion_encoder", "vae")


def move_encoders(pipe: AnimateXPipeline, device: torch.device | str) -> AnimateXPipeline:
    """Move the pipeline's frozen encoders (those of `ENCODERS` it has) to `device`, and nothing else; returns it.

    Not diffusers' `enable_model_cpu_offload`: that also places only the modules that run, but moves each one back
    and forth around every call, some 25 GB per clip for umT5-XXL, Wan's CLIP and the VAE in float32.
    """
    for name in ENCODERS:
        module = getattr(pipe, name, None)
        if module is not None:
            module.to(device)
    return pipe


def transformer_without_weights(folder: str | os.PathLike) -> AnimateXTransformer3DModel:
    """The transformer of the pipeline folder `folder`, built from its `transformer/config.json` on the meta device:
    every module, stream and config value, no weight read or allocated. For a run that never calls it (precompute);
    pass it to `load_pipeline(folder, transformer=...)`.
    """
    from animatex_pp.models.transformer import AnimateXTransformer3DModel

    config = AnimateXTransformer3DModel.load_config(Path(folder) / "transformer")
    with torch.device("meta"):
        return AnimateXTransformer3DModel.from_config(config)


def default_dtype(device: torch.device | str) -> str:
    """The dtype a user would pick for the transformer and text encoder on `device`: "bf16" on a CUDA device with
    native bfloat16 (Ampere and later: Wan2.1 is released and run in bfloat16), else "fp32". Not float16 on older
    cards: its range is narrower than the weights were trained in, so it stays a user's explicit choice. `device`
    must exist (`checks.check_device`)."""
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_bf16_supported(including_emulation=False):
        return "bf16"
    return "fp32"
