"""`evaluate`: a pipeline on every clip of a split, scored against the clip's ground truth beside its baselines.

Each clip is generated from its reference image, driving pose, reference pose, driving video and caption, at the
clip's size and frame count, from a fixed seed (`animatex_pp.eval.inputs`). The driving pose is retargeted onto the
reference pose by default, raw as the stress test (`animatex_pp.eval.driving`). The baselines and the metrics every
run is scored with are `animatex_pp.eval.runs`; the tables and the contact sheet `animatex_pp.eval.report`.

The out folder is one resumable stage (`animatex_pp.io.stages`): its marker records the settings, the model's and
the base's identity and the split; a rerun with the same settings skips every clip whose `clips/<id>.json` exists,
and other settings are refused, naming what differs. Every input is checked before a model loads.

Under `torchrun --nproc-per-node N` the clips are shared out over the ranks (`animatex_pp.eval.sharding`): each
generates and saves its share, and rank 0 writes the one table from every clip's saved result, the same table a
single process writes.
"""

from __future__ import annotations

import gc
import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm.auto import tqdm

from animatex_pp import __version__
from animatex_pp.eval.driving import DRIVING
from animatex_pp.eval.inputs import EvalClip, check_sizes, plan_clips, read_inputs
from animatex_pp.eval.report import contact_sheet, markdown_table, summarize
from animatex_pp.eval.runs import RUNS, generate, run_mode, score, vae_round_trip
from animatex_pp.eval.sharding import this_shard
from animatex_pp.io.files import atomic_output
from animatex_pp.io.stages import Stage, canonical, open_stage, read_marker
from animatex_pp.io.video import DEFAULT_FPS, write_video
from animatex_pp.pipelines.checks import check_device, existing_dir, existing_file, output_folder, torch_dtype
from animatex_pp.pipelines.placement import default_dtype

if TYPE_CHECKING:
    import PIL.Image

    from animatex_pp.pipelines.geometry import PipelineGeometry
    from animatex_pp.pipelines.pipeline_animatex import AnimateXPipeline

__all__ = ["RESULT_FORMAT", "RUNS", "clip_sheets", "evaluate"]

RESULT_FORMAT = "animatex_pp.eval/2"
STAGE_FILE = "stage.json"
SHEET_CLIPS = 4  # clips the contact sheet shows (the split's first)


# ----------------------------------------------------------------------------- checks and identities


def check_out(out: Path, inputs: dict[str, Path | None]) -> None:
    """`out` is a folder (new or existing) in a writable place, neither an input nor holding one, nor inside a
    model folder (a model's identity is its folder's files: results written inside it would change it)."""
    output_folder(out, "--out", "the evaluation's outputs", inputs)
    for name in ("--model", "--base-model"):
        folder = inputs.get(name)
        if folder is not None and folder.resolve() in out.resolve().parents:
            raise ValueError(f"--out {out} is inside {name} {folder}: choose a folder outside the model")


def _model_folder(model: str | Path | AnimateXPipeline, what: str, noun: str) -> tuple[Path | None, PipelineGeometry]:
    """`model`'s folder, checked (None for a pipeline in memory), and its geometry; `what` and `noun` name it."""
    from animatex_pp.models.weight_files import check_pipeline_folder
    from animatex_pp.pipelines.loading import read_pipeline_geometry

    if not isinstance(model, (str, Path)):
        return None, model.geometry
    hint = "Make one with `animatex-pp convert` or `animatex-pp train` (export)."
    folder = existing_dir(model, noun, "model_index.json", hint)
    check_pipeline_folder(folder, what, hint)
    return folder, read_pipeline_geometry(folder)


def _load(model: str | Path | AnimateXPipeline, folder: Path | None, device: str, dtype: str) -> AnimateXPipeline:
    """The pipeline ready to run: loaded from its folder, or the one given, on `device`."""
    from animatex_pp.pipelines.loading import load_pipeline

    pipe = model if folder is None else load_pipeline(folder, dtype=dtype)
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)  # one bar, over clips
    return pipe


def _folder_identity(model_dir: Path) -> dict:
    """A pipeline folder by a digest of its files' names, sizes and modification times: rewriting the weights
    changes it, without reading gigabytes of them."""
    files = sorted(path for path in model_dir.rglob("*") if path.is_file())
    listing = [
        [path.relative_to(model_dir).as_posix(), path.stat().st_size, path.stat().st_mtime_ns] for path in files
    ]
    return {"path": str(model_dir.resolve()), "files": hashlib.sha256(json.dumps(listing).encode()).hexdigest()[:16]}


def _pipeline_identity(pipe: AnimateXPipeline) -> dict:
    """An in-memory pipeline by its transformer's config and a digest of every component's parameters (each
    tensor's shape, sum and first values: any training step changes them, and no full copy is hashed)."""
    import torch

    digest = hashlib.sha256()
    for name, module in sorted(pipe.components.items()):
        if not isinstance(module, torch.nn.Module):
            continue
        for key, tensor in module.state_dict().items():
            values = tensor.detach().flatten()
            head = values[:64].double().cpu().numpy()
            digest.update(f"{name}.{key}{tuple(tensor.shape)}{float(values.double().sum())!r}".encode())
            digest.update(head.tobytes())
    return {"transformer": dict(pipe.transformer.config), "parameters": digest.hexdigest()}


def _identity(model: str | Path | AnimateXPipeline | None, folder: Path | None) -> dict | None:
    """What the stage's settings know a model by: its folder's files, or an in-memory pipeline's parameters."""
    if model is None:
        return None
    return _folder_identity(folder) if folder is not None else _pipeline_identity(model)


def _open(out: Path, settings: dict[str, Any]) -> Stage:
    """The out folder's stage; clip results without a marker are of unknown settings, so they are refused."""
    marker = out / STAGE_FILE
    stale = next((out / "clips").rglob("*.json"), None) if (out / "clips").is_dir() else None
    if stale is not None and read_marker(marker) is None:
        raise ValueError(
            f"--out {out} holds clip results ({stale}, ...) but no {STAGE_FILE}: their settings are unknown (an "
            f"older version's run?), so they are not reused; use another --out, or delete {out / 'clips'}"
        )
    return open_stage(marker, settings, on_change="refuse", what=f"--out {out}")


# ----------------------------------------------------------------------------- one clip


def _result_path(out: Path, clip: EvalClip) -> Path:
    return out / "clips" / f"{clip.id}.json"


def _write_video(out: Path, clip: EvalClip, run: str, frames: np.ndarray) -> str:
    """Write one run's output as `videos/<id>.mp4` (the model's) or `videos/<id>.<run>.mp4`; its path in `out`."""
    path = out / "videos" / (f"{clip.id}.mp4" if run == "model" else f"{clip.id}.{run}.mp4")
    path.parent.mkdir(parents=True, exist_ok=True)  # ids may hold folders ("test_x/00003")
    fps = clip.record.fps or clip.record.info.fps or DEFAULT_FPS
    return write_video(path, frames, fps).relative_to(out).as_posix()


def _evaluate_clip(pipe: AnimateXPipeline, clip: EvalClip, out: Path, settings: dict) -> dict[str, Any]:
    """The model's run and the baselines of one clip (all but `base`), scored, their videos written."""
    inputs = read_inputs(clip, settings["driving"])
    result: dict[str, Any] = {
        "id": clip.id,
        "video": str(clip.record.video),
        "task": clip.record.task,
        "mode": clip.mode,
        "caption": clip.record.caption,
        "num_frames": clip.num_frames,
        "height": clip.height,
        "width": clip.width,
        "expected_background_motion": clip.expected_motion,
        "reference_pose": inputs.reference_pose is not None,
        "driving": inputs.driving,
        "modes": {},
        "outputs": {},
    }
    mode = result["modes"]["model"] = run_mode(pipe, clip)
    output = generate(pipe, clip, inputs, mode, settings)
    result["model"] = score(output, inputs)
    result["outputs"]["model"] = _write_video(out, clip, "model", output)
    if not settings["baselines"]:
        return result
    # (H, W, 3) -> (F, H, W, 3): the reference held for every frame
    copied = np.broadcast_to(inputs.reference, inputs.truth.shape)
    result["copy_reference"] = score(copied, inputs)
    result["copy_reference_vae"] = score(vae_round_trip(pipe, copied), inputs)
    reconstruction = vae_round_trip(pipe, inputs.truth)
    result["vae_reconstruction"] = score(reconstruction, inputs)
    result["outputs"]["vae_reconstruction"] = _write_video(out, clip, "vae_reconstruction", reconstruction)
    if settings["no_pose"]:
        mode = result["modes"]["no_pose"] = run_mode(pipe, clip, pose_off=True)
        if mode == result["modes"]["model"]:
            # The model's run already had no pose (a ti2v clip): the same run, not made twice.
            result["no_pose"], result["outputs"]["no_pose"] = dict(result["model"]), result["outputs"]["model"]
        else:
            output = generate(pipe, clip, inputs, mode, settings)
            result["no_pose"] = score(output, inputs)
            result["outputs"]["no_pose"] = _write_video(out, clip, "no_pose", output)
    return result


def _add_base(base: AnimateXPipeline, clip: EvalClip, out: Path, settings: dict, result: dict) -> dict[str, Any]:
    """`result` with the base model's run of the clip: the clip's mode, or ti2v when the base has no pose stream."""
    inputs = read_inputs(clip, settings["driving"])
    mode = run_mode(base, clip)
    output = generate(base, clip, inputs, mode, settings)
    return {**result, "modes": {**result["modes"], "base": mode}, "base": score(output, inputs),
            "outputs": {**result["outputs"], "base": _write_video(out, clip, "base", output)}}  # fmt: skip


def _read_result(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ValueError(f"{path} could not be read ({error}): delete it to evaluate that clip again") from None


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as temporary:
        temporary.write_text(json.dumps(data, indent=2, allow_nan=False) + "\n", encoding="utf-8")


def _result(out: Path, clip: EvalClip) -> dict[str, Any]:
    """The clip's saved result."""
    return _read_result(_result_path(out, clip))


def _save(out: Path, clip: EvalClip, result: dict[str, Any]) -> dict[str, Any]:
    """Write one clip's result (atomically: a clip is done once its file exists) and return it."""
    _write_json(_result_path(out, clip), result)
    return result


# ----------------------------------------------------------------------------- the run


def _start(out: Path, settings: dict, clips: list[EvalClip]) -> tuple[Stage, set[str]]:
    """Open the out folder's stage; the ids of the clips without a result (every saved one is read, so a damaged
    file is reported before any model loads)."""
    stage = _open(out, settings)
    remaining = set()
    for clip in clips:
        if _result_path(out, clip).is_file():
            _result(out, clip)  # a damaged file is reported now, before any model loads
        else:
            remaining.add(clip.id)
    return stage, remaining


def clip_sheets(out: str | Path, count: int = 1) -> PIL.Image.Image:
    """The contact-sheet blocks of the first `count` clips of the finished evaluation in `out` (pose, output,
    baselines, the codec's reconstruction and the ground truth of each), as its contact_sheet.png draws them."""
    from animatex_pp.pipelines.loading import read_pipeline_geometry

    out = Path(out)
    marker = read_marker(out / STAGE_FILE)
    if marker is None or not marker.get("done"):
        raise FileNotFoundError(f"no finished evaluation in {out} (no done {STAGE_FILE}): run `animatex-pp eval`")
    settings = marker["settings"]
    clips = plan_clips(Path(settings["metadata"]), read_pipeline_geometry(settings["model"]["path"]), count)
    return contact_sheet(out, clips, {clip.id: _result(out, clip) for clip in clips}, settings["driving"])


def _finish(stage: Stage, out: Path, metadata: Path, clips: list[EvalClip], settings: dict, limit: int | None) -> dict:
    """Write metrics.json, metrics.md and the contact sheet from every clip's saved result, and mark the stage
    done; metrics.json's content."""
    results = {clip.id: _result(out, clip) for clip in clips}
    metrics = summarize(metadata.stem, [results[clip.id] for clip in clips], settings, stage.fingerprint)
    _write_json(out / "metrics.json", metrics)
    with atomic_output(out / "metrics.md") as temporary:
        temporary.write_text(markdown_table(metrics), encoding="utf-8")
    sheet = contact_sheet(out, clips[:SHEET_CLIPS], results, settings["driving"])
    with atomic_output(out / "contact_sheet.png") as temporary:
        sheet.save(temporary, format="PNG")
    stage.finish({"clips": len(clips), "limit": limit, "summary": metrics["summary"]})
    return metrics


def evaluate(
    model: str | Path | AnimateXPipeline,
    metadata: str | Path,
    out: str | Path,
    *,
    driving: str = "retargeted",
    baselines: bool = True,
    no_pose: bool = True,
    base_model: str | Path | AnimateXPipeline | None = None,
    num_inference_steps: int = 8,
    guidance_scale: float = 1.0,
    seed: int = 0,
    device: str = "cpu",
    dtype: str = "auto",
    limit: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate `model` (a pipeline folder or an `AnimateXPipeline`) on the split `metadata` and write `out`.

    Args:
        model: a pipeline directory (`AnimateXPipeline.save_pretrained`, `animatex-pp convert`) or a pipeline;
            a pipeline given in memory is moved to `device`.
        metadata: the split's .jsonl/.csv (SynthX's `test_x.jsonl`, or any metadata with poses, docs/data.md).
        out: the output folder (created; an earlier run's folder with the same settings resumes).
        driving: "retargeted" (the clip's driving pose retargeted onto its reference pose, parts the reference lacks
            dropped: what a user gets) or "raw" (the driving pose as it is: the stress test). A clip without a
            reference pose is driven raw either way, and its result says so.
        baselines: also score copying the reference (its pixels, and through the VAE), the VAE's reconstruction of
            the ground truth (the ceiling) and, with `no_pose`, the pose-streams-off model.
        no_pose: run the no-pose baseline (a second generation per animation clip).
        base_model: another pipeline (folder or in memory) run on the same clips, in ti2v mode when it has no pose
            stream: the "before" of a fine-tuned model.
        num_inference_steps, guidance_scale, seed: sampling; every clip starts from the noise of `seed`.
        device: torch device; dtype: "fp32", "bf16" or "fp16" for a folder's transformer and text encoder (the VAE
            and CLIPs stay float32), or "auto": bf16 on a CUDA device with native bfloat16, else fp32
            (`animatex_pp.pipelines.placement.default_dtype`); the settings record the dtype it resolved to.
        limit: evaluate only the split's first `limit` clips.
        progress: show a progress bar over clips.

    Under torchrun (RANK and WORLD_SIZE set, or a process group the caller made) every rank calls `evaluate` with
    the same arguments; each generates its share of the clips not done yet, "cuda" meaning its own GPU
    (cuda:LOCAL_RANK); rank 0 writes the outputs, and every rank returns the same metrics.

    Returns:
        metrics.json's content: `summary` (flat: the model's `psnr`, `character_psnr`, `foreground_iou`, ...,
        `driving_keypoint_error_px`, and every other run's metrics as `<run>_<metric>`), `mean` (the model's means),
        each other run's means under its name (None for a run not made), `driving` and `clips` (per-clip results).

    Raises:
        FileNotFoundError, ValueError: a missing or bad input, or an `out` of other settings, before any model loads.
    """
    # 1. Check everything before a model loads
    if dtype != "auto":
        torch_dtype(dtype)  # an unknown dtype name is refused here, not when the model loads
    if limit is not None and limit < 1:
        raise ValueError(f"--limit must be a positive integer, got {limit}")
    if driving not in DRIVING:
        raise ValueError(f"--driving must be one of {', '.join(DRIVING)}, got {driving!r}")
    out = Path(out)
    model_dir, geometry = _model_folder(model, "--model", "a pipeline directory")
    base_dir, base_geometry = (
        (None, None) if base_model is None else _model_folder(base_model, "--base-model", "a base pipeline directory")
    )
    metadata = existing_file(metadata, "--data metadata file")
    check_out(out, {"--model": model_dir, "--base-model": base_dir, "--data": metadata})
    shard = this_shard()
    device = shard.device(device)
    check_device(device)
    if dtype == "auto":
        dtype = default_dtype(device)
    clips = plan_clips(metadata, geometry, limit)
    if base_geometry is not None:
        check_sizes(clips, base_geometry.size_multiple, metadata, "the base model")
    settings = canonical({
        "format": RESULT_FORMAT, "version": __version__,
        "model": _identity(model, model_dir), "base_model": _identity(base_model, base_dir),
        "metadata": metadata.resolve(), "metadata_sha256": hashlib.sha256(metadata.read_bytes()).hexdigest(),
        "driving": driving, "num_inference_steps": num_inference_steps, "guidance_scale": guidance_scale,
        "seed": seed, "dtype": dtype, "baselines": baselines, "no_pose": baselines and no_pose,
    })  # fmt: skip
    with shard.joined():
        stage, remaining = shard.from_main(lambda: _start(out, settings, clips))

        # 2. Generate and score this rank's share of the clips not done yet, each saved as soon as it is
        todo = shard.part([clip for clip in clips if clip.id in remaining])
        if todo:
            pipe = _load(model, model_dir, device, dtype)
            desc = f"eval {metadata.stem}{shard.label}"
            for clip in (bar := tqdm(todo, desc=desc, unit="clip", disable=not progress)):
                result = _save(out, clip, _evaluate_clip(pipe, clip, out, settings))
                bar.set_postfix(psnr=f"{result['model']['psnr']:.2f}")
            del pipe

        # 3. The base's runs, once the model is released: two large models need not fit at once
        if base_model is not None:
            shard.barrier()  # every clip has its result before rank 0 lists those without the base's run
            without_base = shard.from_main(lambda: [clip.id for clip in clips if "base" not in _result(out, clip)])
            todo = shard.part([clip for clip in clips if clip.id in without_base])
            if todo:
                gc.collect()
                base = _load(base_model, base_dir, device, dtype)
                for clip in tqdm(todo, desc=f"base {metadata.stem}{shard.label}", unit="clip", disable=not progress):
                    _save(out, clip, _add_base(base, clip, out, settings, _result(out, clip)))
                del base

        # 4. The split's tables and contact sheet, by rank 0 once every rank is done, from the results on disk
        shard.barrier()
        return shard.from_main(lambda: _finish(stage, out, metadata, clips, settings, limit))
