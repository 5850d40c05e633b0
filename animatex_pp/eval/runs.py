"""The runs an evaluation makes of a clip, and the one scoring every run goes through.

Runs (docs/evaluation.md, "Baselines"): `model` (the pipeline, in the clip's mode), `copy_reference` (the reference
image held for every frame), `copy_reference_vae` (that, through the pipeline's VAE), `no_pose` (the same pipeline
with the pose streams off), `vae_reconstruction` (the ground truth through the VAE: the ceiling every run is read
against) and `base` (another pipeline on the same clips). Every video that leaves a pipeline went through its VAE,
so the codec baselines are decoded exactly as a generated clip is: `decode_latents`, then the video processor.

`score` gives each run the same metrics: `psnr`, `psnr_star`, `ssim`, `l1` against the clip's video; from SynthX's
ground truth `character_psnr`, and with a background plate `foreground_iou` and `spurious_share`
(`animatex_pp.eval.character`; None where the clip lacks what they need); the background motion where one is
expected.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from animatex_pp.eval.character import character_psnr, foreground_iou, spurious_share
from animatex_pp.eval.inputs import ClipInputs, EvalClip
from animatex_pp.eval.metrics import l1, psnr, psnr_star, ssim
from animatex_pp.eval.motion import estimate_background_motion
from animatex_pp.io.frames import to_signed, unit_to_uint8

if TYPE_CHECKING:
    from animatex_pp.pipelines.pipeline_animatex import AnimateXPipeline

__all__ = ["CHARACTER_METRICS", "FRAME_METRICS", "RUNS", "generate", "run_mode", "score", "vae_round_trip"]

FRAME_METRICS = {"psnr": psnr, "psnr_star": psnr_star, "ssim": ssim, "l1": l1}
CHARACTER_METRICS = ("character_psnr", "foreground_iou", "spurious_share")
RUNS = ("model", "copy_reference", "copy_reference_vae", "no_pose", "base", "vae_reconstruction")
POSE_STREAMS = ("pose_video_encoder", "implicit_pose_indicator")


def _has(pipe: AnimateXPipeline, stream: str) -> bool:
    return getattr(pipe.transformer, stream, None) is not None


def run_mode(pipe: AnimateXPipeline, clip: EvalClip, pose_off: bool = False) -> str:
    """The pipeline mode of a run: the clip's, except "ti2v" (no pose input at all) with the pose streams off or
    for a transformer that has none (a base without them): the pipeline refuses `mode="animation"` then."""
    if clip.mode != "animation" or pose_off or not any(_has(pipe, stream) for stream in POSE_STREAMS):
        return "ti2v"
    return "animation"


def generate(pipe: AnimateXPipeline, clip: EvalClip, inputs: ClipInputs, mode: str, settings: dict) -> np.ndarray:
    """uint8 (F, H, W, 3): the pipeline's output for the clip in `mode` ("ti2v" gives no pose input). The
    reference pose is given whenever the transformer has its stream, as training always gives it."""
    from animatex_pp.pipelines.pipeline_animatex import OFFICIAL_NEGATIVE_PROMPT

    animation = mode == "animation"
    frames = pipe(
        image=inputs.reference,
        pose=inputs.pose if animation else None,
        reference_pose=inputs.reference_pose if animation and _has(pipe, "reference_pose_encoder") else None,
        driving_video=inputs.driving_video if animation else None,
        prompt=clip.record.caption,
        negative_prompt=OFFICIAL_NEGATIVE_PROMPT,
        mode=mode,
        height=clip.height,
        width=clip.width,
        num_frames=clip.num_frames,
        num_inference_steps=settings["num_inference_steps"],
        guidance_scale=settings["guidance_scale"],
        generator=torch.Generator(device="cpu").manual_seed(settings["seed"]),
        output_type="np",
    ).frames[0]
    return unit_to_uint8(frames)


@torch.no_grad()
def vae_round_trip(pipe: AnimateXPipeline, frames: np.ndarray) -> np.ndarray:
    """uint8 (F, H, W, 3) -> the same frames encoded by the pipeline's VAE (the latent's mode, as the pipeline
    encodes its condition) and decoded as the pipeline decodes a generation. F is 4k+1, as every clip's."""
    from diffusers.pipelines.wan.pipeline_wan_i2v import retrieve_latents
    from diffusers.utils.torch_utils import get_module_execution_device

    video = to_signed(torch.from_numpy(np.ascontiguousarray(frames)))
    video = video.permute(3, 0, 1, 2).unsqueeze(0)  # (F, H, W, 3) -> (1, 3, F, H, W)
    video = video.to(device=get_module_execution_device(pipe.vae), dtype=pipe.vae.dtype)
    latents = retrieve_latents(pipe.vae.encode(video), sample_mode="argmax")
    decoded = pipe.decode_latents(pipe.normalize_latents(latents))  # (1, 3, F, H, W) in [-1, 1]
    return unit_to_uint8(pipe.video_processor.postprocess_video(decoded, output_type="np")[0])


def _finite(value: float) -> float | None:
    """NaN (nothing to measure: no character in any frame) as None, which JSON keeps and means skip."""
    return None if math.isnan(value) else value


def score(output: np.ndarray, inputs: ClipInputs) -> dict[str, Any]:
    """Every metric of one run's `output` (F, H, W, 3) against the clip's ground truth (docstring above)."""
    truth = inputs.truth
    result: dict[str, Any] = {name: metric(output, truth) for name, metric in FRAME_METRICS.items()}
    result.update(dict.fromkeys(CHARACTER_METRICS))
    if inputs.character is not None:
        result["character_psnr"] = _finite(character_psnr(output, truth, inputs.character))
        if inputs.plate is not None:
            result["foreground_iou"] = _finite(foreground_iou(output, inputs.plate, inputs.character))
            result["spurious_share"] = _finite(spurious_share(output, inputs.plate, inputs.character))
    if inputs.expected_motion is not None:
        label = estimate_background_motion(output, mask=inputs.foreground).classify()
        result["background_motion"] = label
        result["background_motion_correct"] = label == inputs.expected_motion
    return result
