"""Getting an `AnimateXPipeline`: from a pipeline folder, or built from Wan2.1 I2V weights and a released
Animate-X++ checkpoint; and what a folder's configs say about the videos it makes, without loading a weight.

Every loader keeps the VAE and the CLIPs in float32, as the official code and diffusers' Wan examples load them,
and gives the rest the dtype asked for. A folder whose weight files are missing or cut short is a `ValueError`
that names the file (`animatex_pp.models.weight_files`), not a traceback from deep inside diffusers.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from animatex_pp.models.weight_files import check_model_folder, check_pipeline_folder
from animatex_pp.pipelines.checks import torch_dtype
from animatex_pp.pipelines.geometry import PipelineGeometry
from animatex_pp.pipelines.pipeline_animatex import AnimateXPipeline

__all__ = ["FLOAT32_COMPONENTS", "component_dtypes", "load_pipeline", "pipeline_from_wan", "read_pipeline_geometry"]

FLOAT32_COMPONENTS = ("vae", "image_encoder", "motion_encoder")
SCHEDULERS = ("unipc", "euler")
REBUILD = "copy it again, or rebuild it with `animatex-pp convert`"
REBUILD_HINT = "Copy it again, or rebuild it with `animatex-pp convert`."
RELEASED_PRESET = "wan2.1-i2v-14b-720p"


def _as_dtype(dtype: torch.dtype | str) -> torch.dtype:
    return dtype if isinstance(dtype, torch.dtype) else torch_dtype(dtype)


def component_dtypes(dtype: torch.dtype | str) -> dict[str, torch.dtype]:
    """diffusers' per-component `dtype` map: the VAE and the CLIPs in float32, every other component in `dtype`."""
    return {**dict.fromkeys(FLOAT32_COMPONENTS, torch.float32), "default": _as_dtype(dtype)}


def load_pipeline(
    folder: str | os.PathLike, dtype: torch.dtype | str = torch.float32, **components: torch.nn.Module
) -> AnimateXPipeline:
    """`AnimateXPipeline.from_pretrained(folder)` with the VAE and CLIPs in float32 and the rest in `dtype`
    (a torch dtype, or "bf16", "fp16", "fp32"); `components` given by name are used instead of the folder's.

    Raises:
        ValueError: the folder is incomplete or damaged (a weight file missing or cut short, unreadable JSON).
    """
    from safetensors import SafetensorError

    folder = Path(folder)
    check_pipeline_folder(folder, "the pipeline folder", REBUILD_HINT)
    try:
        return AnimateXPipeline.from_pretrained(folder, dtype=component_dtypes(dtype), **components)
    except (OSError, SafetensorError) as error:
        raise ValueError(
            f"{folder} could not be loaded as a pipeline ({str(error).splitlines()[0]}): the folder is incomplete or "
            f"damaged; {REBUILD}"
        ) from None


def _read_config(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ValueError(f"{path} could not be read ({error}): {REBUILD}") from None


def read_pipeline_geometry(folder: str | os.PathLike) -> PipelineGeometry:
    """The size multiple, frame packing and IPI window of a pipeline folder, from three small JSON files."""
    folder = Path(folder)
    index = _read_config(folder / "model_index.json")
    has_motion_encoder = (index.get("motion_encoder") or [None])[0] is not None
    return PipelineGeometry.from_configs(
        _read_config(folder / "vae" / "config.json"),
        _read_config(folder / "transformer" / "config.json"),
        has_motion_encoder,
    )


def pipeline_from_wan(
    base: str | os.PathLike,
    checkpoint: str | os.PathLike | dict[str, torch.Tensor],
    motion_encoder: str | os.PathLike | None = None,
    *,
    lora: str = "merge",
    scheduler: str = "unipc",
    shift: float = 5.0,
    dtype: torch.dtype | str = torch.bfloat16,
    preset: str = RELEASED_PRESET,
) -> AnimateXPipeline:
    """An `AnimateXPipeline` from a diffusers Wan2.1 I2V folder and a released Animate-X++ checkpoint.

    Args:
        base: a diffusers-format Wan2.1 I2V folder (`Wan-AI/Wan2.1-I2V-14B-720P-Diffusers`); its tokenizer, umT5,
            CLIP and VAE are kept, and its transformer gets the release (`animatex_pp.models.convert`).
        checkpoint: `animate-x++.ckpt` or `_simple.ckpt` (or a safetensors export), or its state dict.
        motion_encoder: a transformers `CLIPVisionModelWithProjection` folder for the implicit pose indicator (the
            OpenCLIP ViT-H/14 laion2B-s32B-b79K the release was trained with); needed when the release has an IPI.
        lora: "merge" folds the release's LoRA into the weights; "adapter" keeps it as a peft adapter.
        scheduler: "unipc" (diffusers' UniPC on flow sigmas, Wan's default) or "euler" (flow-matching Euler).
        shift: the flow shift (official 5).
        dtype: the transformer's and text encoder's dtype; the VAE and the CLIPs stay float32.
        preset: the model preset whose stream settings the checkpoint's shapes do not tell (head counts, ...).

    Raises:
        ValueError: a damaged folder or checkpoint, an IPI release without its motion encoder, or a motion encoder
            whose projection does not fit the IPI.
    """
    from diffusers import FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler, WanImageToVideoPipeline
    from transformers import CLIPVisionModelWithProjection

    from animatex_pp.models.convert import (
        animatex_from_wan,
        convert_animatex_state_dict,
        infer_stream_config,
        load_animatex_checkpoint,
    )
    from animatex_pp.models.presets import split_preset

    if scheduler not in SCHEDULERS:
        raise ValueError(f"scheduler must be one of {', '.join(SCHEDULERS)}, got {scheduler!r}")
    # 1. Check the folders and read the release before 14B parameters load
    check_pipeline_folder(base, "the Wan2.1 folder", "Download it again (see docs/quickstart.md).")
    if motion_encoder is not None:
        check_model_folder(motion_encoder, "the motion encoder")
    state_dict = checkpoint if isinstance(checkpoint, dict) else load_animatex_checkpoint(checkpoint)
    converted = convert_animatex_state_dict(state_dict)
    if converted.has_ipi and motion_encoder is None:
        name = "the checkpoint" if isinstance(checkpoint, dict) else Path(checkpoint).name
        raise ValueError(
            f"{name} has an implicit pose indicator, which needs the CLIP it was trained with: pass the folder of "
            "laion/CLIP-ViT-H-14-laion2B-s32B-b79K (transformers format) as `motion_encoder` (`--motion-encoder` "
            "on the command line)"
        )
    # The checkpoint's shapes give the stream sizes; the preset gives only what shapes cannot (head counts, ...).
    inferred = infer_stream_config(converted.streams)
    stream_config = {key: value for key, value in split_preset(preset)[1].items() if key not in inferred}

    # 2. The base pipeline, and the release applied to its transformer
    wan = WanImageToVideoPipeline.from_pretrained(base, dtype=component_dtypes(dtype))
    transformer = animatex_from_wan(wan.transformer, state_dict, lora=lora, **stream_config)

    # 3. The motion encoder, and the official sampler on diffusers' schedulers
    clip = None
    if converted.has_ipi:
        clip = CLIPVisionModelWithProjection.from_pretrained(motion_encoder, dtype=torch.float32)
        clip_dim = transformer.config.ipi_clip_dim
        if clip.config.projection_dim != clip_dim:
            raise ValueError(
                f"the motion encoder projects to {clip.config.projection_dim} dimensions but the implicit pose "
                f"indicator takes {clip_dim}: use the CLIP the checkpoint was trained with"
            )
    if scheduler == "unipc":
        sampler = UniPCMultistepScheduler.from_config(
            wan.scheduler.config, prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=shift
        )
    else:
        sampler = FlowMatchEulerDiscreteScheduler(shift=shift)
    return AnimateXPipeline(
        tokenizer=wan.tokenizer,
        text_encoder=wan.text_encoder,
        vae=wan.vae,
        scheduler=sampler,
        transformer=transformer,
        image_processor=wan.image_processor,
        image_encoder=wan.image_encoder,
        motion_encoder=clip,
    )
