"""What an evaluation writes about a split once its clips are scored: metrics.json's content (the runs' means and a
flat summary), metrics.md (runs as rows, metrics as columns, then one line per clip) and the contact sheet (one
`clip_sheet` block per clip)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image

from animatex_pp.eval.inputs import EvalClip, read_inputs
from animatex_pp.eval.motion import background_motion_accuracy
from animatex_pp.eval.runs import CHARACTER_METRICS, FRAME_METRICS, RUNS
from animatex_pp.io.preview import SheetRow, clip_sheet, stack_sheets
from animatex_pp.io.video import read_video

__all__ = ["METRICS", "contact_sheet", "markdown_table", "run_means", "summarize"]

METRICS = (*FRAME_METRICS, *CHARACTER_METRICS, "background_motion_accuracy")
RUN_NAMES = {
    "model": "model",
    "copy_reference": "copy the reference",
    "copy_reference_vae": "copy the reference, through the VAE",
    "no_pose": "model, pose streams off",
    "base": "base model",
    "vae_reconstruction": "VAE reconstruction of the ground truth (ceiling)",
}
SHEET_FRAMES = 3  # columns per clip: its first, middle and last frame


def _mean(values: list[float | None]) -> float | None:
    """The mean of the values measured (None: the clip lacks what the metric needs); None when none is."""
    measured = [value for value in values if value is not None]
    return float(np.mean(measured)) if measured else None


def run_means(results: list[dict], run: str) -> dict[str, Any] | None:
    """Each metric's mean over the clips that have `run` (a character metric over the clips that measure it), the
    background-motion accuracy over the clips that expect a motion; None when no clip has the run."""
    with_run = [result for result in results if run in result]
    if not with_run:
        return None
    means: dict[str, Any] = {name: _mean([result[run].get(name) for result in with_run])
                             for name in (*FRAME_METRICS, *CHARACTER_METRICS)}  # fmt: skip
    means["background_motion_accuracy"] = background_motion_accuracy(
        [result[run].get("background_motion", "unknown") for result in with_run],
        [result["expected_background_motion"] for result in with_run],
    )
    means["clips"] = len(with_run)
    means["character_clips"] = sum(result[run].get("character_psnr") is not None for result in with_run)
    means["foreground_clips"] = sum(result[run].get("foreground_iou") is not None for result in with_run)
    means["background_motion_clips"] = sum(result["expected_background_motion"] is not None for result in with_run)
    return means


def _driving_means(results: list[dict], requested: str) -> dict[str, Any]:
    """How the split's animation clips were driven, and their driving poses' keypoint error to the ground truth."""
    driven = [result["driving"] for result in results if result.get("driving")]
    errors = [record["keypoint_error_px"] for record in driven]
    return {
        "requested": requested,
        "clips": len(driven),
        "retargeted": sum(record["used"] == "retargeted" for record in driven),
        "raw": sum(record["used"] == "raw" for record in driven),
        "fallbacks": [{"id": result["id"], "reason": result["driving"]["fallback"]} for result in results
                      if result.get("driving") and result["driving"]["used"] != result["driving"]["requested"]],
        "keypoint_error_px": _mean([error[record["used"]] for error, record in zip(errors, driven, strict=True)]),
        "raw_keypoint_error_px": _mean([error["raw"] for error in errors]),
        "retargeted_keypoint_error_px": _mean([error["retargeted"] for error in errors]),
    }  # fmt: skip


def summarize(split: str, results: list[dict], settings: dict, stamp: str) -> dict[str, Any]:
    """metrics.json's content: per-clip results, each run's means (`mean` is the model's), how the clips were
    driven, and a flat summary: the model's metrics by name, every other run's as `<run>_<metric>`."""
    means = {run: run_means(results, run) for run in RUNS}
    driving = _driving_means(results, settings["driving"])
    summary = {name: means["model"][name] for name in METRICS}
    summary["driving_keypoint_error_px"] = driving["keypoint_error_px"]
    summary["raw_driving_keypoint_error_px"] = driving["raw_keypoint_error_px"]
    for run in RUNS[1:]:
        for name in METRICS:
            summary[f"{run}_{name}"] = None if means[run] is None else means[run][name]
    return {
        "format": settings["format"],
        "split": split,
        "fingerprint": stamp,
        "settings": settings,
        "summary": summary,
        "mean": means["model"],
        **{run: means[run] for run in RUNS[1:]},
        "driving": driving,
        "clips": results,
    }


def _cell(value: float | None, digits: int = 2) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _accuracy(means: dict) -> str:
    accuracy = means["background_motion_accuracy"]
    if accuracy is None:
        return "-"
    return f"{100 * accuracy:.0f} % of {means['background_motion_clips']}"


def _driving_line(metrics: dict) -> str:
    driving = metrics["driving"]
    if not driving["clips"]:
        return "No animation clip."
    line = (f"Driving pose: {driving['requested']} ({driving['retargeted']} of {driving['clips']} animation clips "
            f"retargeted onto their reference pose, {driving['raw']} raw)")  # fmt: skip
    if driving["raw_keypoint_error_px"] is not None:
        line += (f"; its keypoint error to the ground-truth skeleton {_cell(driving['keypoint_error_px'])} px (raw "
                 f"{_cell(driving['raw_keypoint_error_px'])} px, retargeted "
                 f"{_cell(driving['retargeted_keypoint_error_px'])} px)")  # fmt: skip
    return line + "."


def markdown_table(metrics: dict) -> str:
    """metrics.md: the runs' means (runs as rows, the ceiling last), then one line per clip."""
    settings = metrics["settings"]
    lines = [
        f"# Evaluation: {metrics['split']}",
        "",
        f"{metrics['mean']['clips']} clips, {settings['num_inference_steps']} steps, guidance "
        f"{settings['guidance_scale']:g}, seed {settings['seed']}. {_driving_line(metrics)}",
        "",
        "| run | clips | PSNR (dB) | PSNR* (dB) | SSIM | L1 | character PSNR (dB) | foreground IoU | spurious share "
        "| background motion |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in RUNS:
        means = metrics["mean"] if run == "model" else metrics[run]
        if means is None:
            continue
        lines.append(
            f"| {RUN_NAMES[run]} | {means['clips']} | {_cell(means['psnr'])} | {_cell(means['psnr_star'])} | "
            f"{_cell(means['ssim'], 4)} | {_cell(means['l1'], 4)} | {_cell(means['character_psnr'])} | "
            f"{_cell(means['foreground_iou'], 3)} | {_cell(means['spurious_share'], 3)} | {_accuracy(means)} |"
        )
    lines += [
        "",
        "| clip | task | driving (keypoint error px) | PSNR | character PSNR | foreground IoU | spurious share "
        "| copy PSNR | no-pose PSNR | background: expected / measured |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for result in metrics["clips"]:
        model, copied, no_pose = result["model"], result.get("copy_reference", {}), result.get("no_pose", {})
        driving = "-"
        if result.get("driving"):
            record = result["driving"]
            driving = f"{record['used']} ({_cell(record['keypoint_error_px'][record['used']], 1)})"
        motion = "-"
        if result["expected_background_motion"] is not None:
            motion = f"{result['expected_background_motion']} / {model['background_motion']}"
        lines.append(
            f"| {result['id']} | {result['task']} | {driving} | {_cell(model['psnr'])} | "
            f"{_cell(model.get('character_psnr'))} | {_cell(model.get('foreground_iou'), 3)} | "
            f"{_cell(model.get('spurious_share'), 3)} | {_cell(copied.get('psnr'))} | {_cell(no_pose.get('psnr'))} | "
            f"{motion} |"
        )
    return "\n".join(lines) + "\n"


def _clip_block(out: Path, clip: EvalClip, result: dict, driving: str) -> PIL.Image.Image:
    """One clip's `clip_sheet`: the pose as the pose stream saw it (the reference skeleton first), the output (the
    reference first), the runs worth looking at beside it, and the ground truth; first, middle and last frame."""
    from animatex_pp.pipelines.conditioning import prepare_pose, render_reference_pose

    inputs = read_inputs(clip, driving)
    outputs = result["outputs"]
    rows = []
    if inputs.pose is not None:
        frames = prepare_pose(inputs.pose, None, clip.num_frames, clip.height, clip.width, use_ipi=False).pose_frames
        still = None
        if inputs.reference_pose is not None:
            still = render_reference_pose(inputs.reference_pose, clip.height, clip.width)
        rows.append(SheetRow("pose", frames, still))
    rows.append(SheetRow("output", read_video(out / outputs["model"])[0], inputs.reference))
    # A ti2v clip's no-pose run is its model run: no row of its own.
    shown = {"no_pose": "no-pose output", "base": "base output", "vae_reconstruction": "VAE of truth"}
    for run, label in shown.items():
        if run in outputs and outputs[run] != outputs["model"]:
            rows.append(SheetRow(label, read_video(out / outputs[run])[0]))
    rows.append(SheetRow("ground truth", inputs.truth))
    used = f", driving {result['driving']['used']}" if result.get("driving") else ""
    title = f"{clip.id} ({clip.mode}{used}): {clip.record.caption}"
    return clip_sheet(rows, num_columns=SHEET_FRAMES, title=title, label_rows=True)


def contact_sheet(out: Path, clips: list[EvalClip], results: dict[str, dict], driving: str) -> PIL.Image.Image:
    """The clips' blocks top to bottom, the outputs read back from the videos written."""
    return stack_sheets([_clip_block(out, clip, results[clip.id], driving) for clip in clips])
