"""`evaluate`: a pipeline on every clip of a split, scored against the clip's own video, beside two baselines.

Each clip is generated from its reference image, pose, reference pose, driving video and caption, at the clip's
size and frame count (its shortest input, as 4k+1), from a fixed seed: animation clips with `mode="animation"`,
ti2v rows with `mode="ti2v"`. The ground truth is the clip's video. Two baselines run on the same clips:

- `copy_reference`: every output frame is the reference image (what a model that learnt no motion would score);
- `no_pose`: the same model with the pose streams off. The pipeline's `check_inputs` refuses `mode="animation"`
  without a pose, so this run is `mode="ti2v"`: same reference, caption, size, frames and seed, and no pose, driving
  video or reference pose. A ti2v clip's model run already has no pose, so its `no_pose` result is that run's.

Metrics per clip (`animatex_pp.eval.metrics`, on the uint8 frames before they are encoded): `psnr`, `psnr_star`,
`ssim`, `l1`; and where the caption (else the ground truth's camera) names a background motion, the label
`estimate_background_motion` measures with the ground truth's character and object masks left out, and whether it
is the expected one. Keypoint error is not measured: it needs a pose extractor run on the outputs, and MediaPipe
finds no body in 64 x 64 frames of drawn puppets.

Outputs under `out`: `clips/<id>.json` per clip (written atomically when the clip is done; a rerun skips clips
whose file exists, and refuses results of another model or settings), `videos/<id>.mp4` (and `<id>.no_pose.mp4`),
`metrics.json`, `metrics.md` and `contact_sheet.png`. Every input is checked before a model loads.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import numpy as np
import PIL.Image
import PIL.ImageDraw
import PIL.ImageFont
from tqdm.auto import tqdm

from animatex_pp import __version__
from animatex_pp.data.metadata import ClipRecord, read_metadata
from animatex_pp.eval.metrics import l1, psnr, psnr_star, ssim
from animatex_pp.eval.motion import background_motion_accuracy, estimate_background_motion, expected_motion_label
from animatex_pp.io.files import atomic_output
from animatex_pp.io.preview import LABEL_HEIGHT, MIN_SHEET_CELL_HEIGHT, as_uint8_image, preview_frames
from animatex_pp.io.video import DEFAULT_FPS, read_video, video_info, write_video
from animatex_pp.pipelines.checks import check_device, existing_dir, existing_file, output_folder, torch_dtype
from animatex_pp.pipelines.geometry import PipelineGeometry

if TYPE_CHECKING:
    from animatex_pp.pipelines.pipeline_animatex import AnimateXPipeline

__all__ = ["FRAME_METRICS", "RUNS", "evaluate"]

FRAME_METRICS = {"psnr": psnr, "psnr_star": psnr_star, "ssim": ssim, "l1": l1}
RUNS = ("model", "copy_reference", "no_pose")
RESULT_FORMAT = "animatex_pp.eval/1"
SHEET_CLIPS = 4  # clips the contact sheet shows (the split's first)
SHEET_FRAMES = 3  # rows per clip: first, middle and last frame
TITLE_CHAR_WIDTH = 6  # pixels per character of PIL's default font: titles are cut to their block


@dataclasses.dataclass(frozen=True)
class EvalClip:
    """One clip to evaluate, resolved and checked before any model loads."""

    id: str
    record: ClipRecord
    num_frames: int
    reference_pose: Path | None
    driving_video: Path | None
    truth: Path | None
    expected_motion: str | None

    @property
    def mode(self) -> str:
        """The pipeline mode: the row's task ("animation" or "ti2v")."""
        return self.record.task

    @property
    def height(self) -> int:
        return self.record.info.height

    @property
    def width(self) -> int:
        return self.record.info.width


# ----------------------------------------------------------------------------- checks and planning


def _clip_id(record: ClipRecord, root: Path) -> str:
    """The row's `id` (SynthX: "test_x/00003"), else its video path without suffix; a path segment of `out/clips`,
    so anything that could leave that folder falls back to the line number."""
    given = record.extra.get("id")
    if given is None:
        try:
            given = record.video.resolve().relative_to(root).with_suffix("").as_posix()
        except ValueError:  # a video outside the metadata's folder
            given = ""
    given = str(given)
    parts = PurePosixPath(given).parts
    if not parts or given.startswith("/") or any(part in (".", "..") for part in parts):
        return f"line-{record.line:06d}"
    return given


def _optional_file(root: Path, record: ClipRecord, key: str) -> Path | None:
    if not record.extra.get(key):
        return None
    path = root / record.extra[key]
    if not path.is_file():
        raise FileNotFoundError(f"line {record.line} of the metadata: {key} {path} not found")
    return path


def plan_clips(metadata: Path, geometry: PipelineGeometry, limit: int | None = None) -> list[EvalClip]:
    """Every clip of `metadata` (its first `limit`), checked: files exist, poses load, sizes fit the model."""
    from animatex_pp.pose.sequence import PoseSequence

    report = read_metadata(metadata)
    if report.problems:
        raise ValueError(
            f"{metadata} has {len(report.problems)} bad row(s); a split is scored whole, so fix them first "
            f"(`animatex-pp data check {metadata}` lists them):\n{report.problem_list()}"
        )
    if not report.clips:
        raise ValueError(f"{metadata} holds no clip")
    root = metadata.resolve().parent
    multiple = geometry.size_multiple
    clips, seen = [], set()
    for record in report.clips[:limit]:
        clip_id = _clip_id(record, root)
        if clip_id in seen:
            raise ValueError(f"line {record.line} of {metadata}: clip id {clip_id!r} appears twice")
        seen.add(clip_id)
        info = record.info
        if info.height % multiple or info.width % multiple:
            raise ValueError(
                f"line {record.line} of {metadata}: the clip is {info.height}x{info.width} but the model generates "
                f"multiples of {multiple}: resize the split's videos (and references) to a multiple"
            )
        if record.task == "animation" and record.pose is None:
            raise ValueError(
                f"line {record.line} of {metadata}: an animation clip needs a `pose` file to be evaluated: extract "
                "one with `animatex-pp pose extract`"
            )
        reference_pose = _optional_file(root, record, "reference_pose")
        driving_video = _optional_file(root, record, "driving_video")
        truth = _optional_file(root, record, "truth")
        lengths = [info.num_frames]
        if record.task == "animation":
            lengths.append(len(PoseSequence.load(record.pose)))
            if driving_video is not None and video_info(driving_video).num_frames:
                lengths.append(video_info(driving_video).num_frames)
        # Wan generates 4k+1 frames: the longest such count every input has.
        num_frames = geometry.factors.round_down(min(lengths))
        camera = record.extra.get("background_motion")
        expected = expected_motion_label(record.caption)
        if expected is None and isinstance(camera, dict):
            expected = camera.get("label")
        if num_frames < 2:  # a motion needs two frames
            expected = None
        clips.append(EvalClip(clip_id, record, num_frames, reference_pose, driving_video, truth,
                              expected))  # fmt: skip
    return clips


def check_out(out: Path, inputs: dict[str, Path | None]) -> None:
    """`out` is a folder (new or existing) in a writable place, neither an input nor holding one, nor in the model."""
    output_folder(out, "--out", "the evaluation's outputs", inputs)
    model_dir = inputs.get("--model")
    if model_dir is not None and model_dir.resolve() in out.resolve().parents:
        # The model's identity is its folder's files: results written inside it would change it.
        raise ValueError(f"--out {out} is inside --model {model_dir}: choose a folder outside the model")


# ----------------------------------------------------------------------------- fingerprint


def _folder_identity(model_dir: Path) -> dict:
    """A pipeline folder by its files' names, sizes and modification times: rewriting the weights changes it,
    without reading gigabytes of them."""
    files = sorted(path for path in model_dir.rglob("*") if path.is_file())
    return {
        "path": str(model_dir.resolve()),
        "files": [[path.relative_to(model_dir).as_posix(), path.stat().st_size, path.stat().st_mtime_ns]
                  for path in files],
    }  # fmt: skip


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


def fingerprint(model_identity: dict, metadata: Path, settings: dict) -> str:
    text = json.dumps(
        {"format": RESULT_FORMAT, "version": __version__, "model": model_identity,
         "metadata": str(metadata.resolve()), "settings": settings},
        sort_keys=True, default=str,
    )  # fmt: skip
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _done_results(out: Path, clips: list[EvalClip], stamp: str) -> dict[str, dict]:
    """The clip results an earlier run left in `out/clips`; refuses when they come from another model or settings."""
    done = {}
    for clip in clips:
        path = _result_path(out, clip)
        if not path.is_file():
            continue
        try:
            result = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise ValueError(f"{path} could not be read ({error}): delete it to evaluate that clip again") from None
        if result.get("fingerprint") != stamp:
            raise ValueError(
                f"--out {out} holds results of another model, split or settings ({path} has fingerprint "
                f"{result.get('fingerprint')}, this run {stamp}): use another --out, or delete {out / 'clips'}"
            )
        done[clip.id] = result
    return done


# ----------------------------------------------------------------------------- one clip


def _result_path(out: Path, clip: EvalClip) -> Path:
    return out / "clips" / f"{clip.id}.json"


def _video_path(out: Path, clip: EvalClip, run: str) -> Path:
    path = out / "videos" / (f"{clip.id}.mp4" if run == "model" else f"{clip.id}.{run}.mp4")
    path.parent.mkdir(parents=True, exist_ok=True)  # ids may hold folders ("test_x/00003")
    return path


def _resized(image: np.ndarray, height: int, width: int) -> np.ndarray:
    if image.shape[:2] == (height, width):
        return image
    return np.asarray(PIL.Image.fromarray(image).resize((width, height), PIL.Image.BICUBIC))


def _read_inputs(clip: EvalClip) -> dict[str, Any]:
    """The clip's frames, reference, poses, driving frames and masks, all cut to `clip.num_frames`."""
    from animatex_pp.io.image import read_image
    from animatex_pp.pipelines.conditioning import read_reference_pose
    from animatex_pp.pose.sequence import PoseSequence
    from animatex_pp.synthx.truth import read_truth

    record = clip.record
    truth_frames, _ = read_video(record.video, max_frames=clip.num_frames)
    # Without a reference image the clip's first frame is the reference, as the training data takes it.
    reference = truth_frames[0] if record.reference is None else as_uint8_image(read_image(record.reference))
    inputs = {
        "truth": truth_frames,
        "reference": _resized(reference, clip.height, clip.width),
        "pose": None,
        "reference_pose": None,
        "driving_video": None,
        "masks": None,
    }
    if clip.mode == "animation":
        inputs["pose"] = PoseSequence.load(record.pose)[: clip.num_frames]
        if clip.reference_pose is not None:
            inputs["reference_pose"] = read_reference_pose(clip.reference_pose)
        # Without a driving video the clip's own frames feed the IPI, as in training and in self-driven
        # reconstruction (the protocol of Animate-X's tables).
        driving = clip.driving_video or record.video
        inputs["driving_video"] = read_video(driving, max_frames=clip.num_frames)[0]
    if clip.truth is not None:
        masks = read_truth(clip.truth).foreground_masks()[: clip.num_frames]
        if masks.shape == truth_frames.shape[:3]:
            inputs["masks"] = masks
    return inputs


def _generate(pipe, clip: EvalClip, inputs: dict, mode: str, settings: dict) -> np.ndarray:
    """uint8 (F, H, W, 3): the pipeline's output for the clip; mode "ti2v" drops every pose input."""
    import torch

    from animatex_pp.pipelines.pipeline_animatex import OFFICIAL_NEGATIVE_PROMPT

    animation = mode == "animation"
    frames = pipe(
        image=inputs["reference"],
        pose=inputs["pose"] if animation else None,
        reference_pose=inputs["reference_pose"] if animation else None,
        driving_video=inputs["driving_video"] if animation else None,
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
    return (np.clip(frames, 0.0, 1.0) * 255).round().astype(np.uint8)


def score(output: np.ndarray, inputs: dict, expected_motion: str | None) -> dict[str, Any]:
    """Frame metrics of `output` against the clip's video, and its background motion where one is expected."""
    truth = inputs["truth"]
    result: dict[str, Any] = {name: metric(output, truth) for name, metric in FRAME_METRICS.items()}
    if expected_motion is not None:
        label = estimate_background_motion(output, mask=inputs["masks"]).classify()
        result["background_motion"] = label
        result["background_motion_correct"] = label == expected_motion
    return result


def _evaluate_clip(pipe, clip: EvalClip, out: Path, settings: dict, stamp: str) -> dict[str, Any]:
    inputs = _read_inputs(clip)
    fps = clip.record.fps or clip.record.info.fps or DEFAULT_FPS
    runs: dict[str, dict] = {}
    outputs = {}
    model_output = _generate(pipe, clip, inputs, clip.mode, settings)
    runs["model"] = score(model_output, inputs, clip.expected_motion)
    outputs["model"] = write_video(_video_path(out, clip, "model"), model_output, fps).relative_to(out).as_posix()
    if settings["baselines"]:
        # (H, W, 3) -> (F, H, W, 3): the reference held for every frame
        copied = np.broadcast_to(inputs["reference"], inputs["truth"].shape)
        runs["copy_reference"] = score(copied, inputs, clip.expected_motion)
        if settings["no_pose"]:
            if clip.mode == "ti2v":
                runs["no_pose"] = dict(runs["model"])  # the model run already had no pose
                outputs["no_pose"] = outputs["model"]
            else:
                no_pose_output = _generate(pipe, clip, inputs, "ti2v", settings)
                runs["no_pose"] = score(no_pose_output, inputs, clip.expected_motion)
                written = write_video(_video_path(out, clip, "no_pose"), no_pose_output, fps)
                outputs["no_pose"] = written.relative_to(out).as_posix()
    return {
        "id": clip.id,
        "video": str(clip.record.video),
        "task": clip.record.task,
        "mode": clip.mode,
        "caption": clip.record.caption,
        "num_frames": clip.num_frames,
        "height": clip.height,
        "width": clip.width,
        "expected_background_motion": clip.expected_motion,
        "fingerprint": stamp,
        "outputs": outputs,
        **runs,
    }


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as temporary:
        temporary.write_text(json.dumps(data, indent=2, allow_nan=False) + "\n", encoding="utf-8")


# ----------------------------------------------------------------------------- summaries


def run_means(results: list[dict], run: str) -> dict[str, Any] | None:
    """The mean of each frame metric over the clips that have `run`, and the background-motion accuracy over the
    clips that expect a motion (None when none does); None when no clip has the run."""
    scored = [result[run] for result in results if run in result]
    if not scored:
        return None
    means: dict[str, Any] = {name: float(np.mean([item[name] for item in scored])) for name in FRAME_METRICS}
    with_run = [result for result in results if run in result]
    means["background_motion_accuracy"] = background_motion_accuracy(
        [result[run].get("background_motion", "unknown") for result in with_run],
        [result["expected_background_motion"] for result in with_run],
    )
    means["clips"] = len(scored)
    means["background_motion_clips"] = sum(result["expected_background_motion"] is not None for result in with_run)
    return means


def summarize(split: str, results: list[dict], settings: dict, stamp: str) -> dict[str, Any]:
    """metrics.json's content: per-clip results, the model's means, each baseline's means, and a flat summary."""
    mean, copied, no_pose = (run_means(results, run) for run in RUNS)
    summary = {name: mean[name] for name in (*FRAME_METRICS, "background_motion_accuracy")}
    for run, means in (("copy_reference", copied), ("no_pose", no_pose)):
        for name in (*FRAME_METRICS, "background_motion_accuracy"):
            summary[f"{run}_{name}"] = None if means is None else means[name]
    return {
        "format": RESULT_FORMAT,
        "split": split,
        "fingerprint": stamp,
        "settings": settings,
        "summary": summary,
        "mean": mean,
        "copy_reference": copied,
        "no_pose": no_pose,
        "clips": results,
    }


def _cell(value: float | None, digits: int) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _accuracy(means: dict) -> str:
    accuracy = means["background_motion_accuracy"]
    if accuracy is None:
        return "-"
    return f"{100 * accuracy:.0f} % of {means['background_motion_clips']}"


def markdown_table(metrics: dict) -> str:
    """metrics.md: the runs' means, then one line per clip."""
    names = {"model": "model", "copy_reference": "copy the reference", "no_pose": "model, pose streams off"}
    lines = [
        f"# Evaluation: {metrics['split']}",
        "",
        f"{metrics['mean']['clips']} clips, {metrics['settings']['num_inference_steps']} steps, guidance "
        f"{metrics['settings']['guidance_scale']:g}, seed {metrics['settings']['seed']}.",
        "",
        "| run | clips | PSNR (dB) | PSNR* (dB) | SSIM | L1 | background motion |",
        "|---|---|---|---|---|---|---|",
    ]
    for run in RUNS:
        means = metrics["mean"] if run == "model" else metrics[run]
        if means is None:
            continue
        lines.append(
            f"| {names[run]} | {means['clips']} | {_cell(means['psnr'], 2)} | {_cell(means['psnr_star'], 2)} | "
            f"{_cell(means['ssim'], 4)} | {_cell(means['l1'], 4)} | {_accuracy(means)} |"
        )
    lines += [
        "",
        "| clip | task | PSNR | SSIM | copy PSNR | no-pose PSNR | background: expected / measured |",
        "|---|---|---|---|---|---|---|",
    ]
    for result in metrics["clips"]:
        copied, no_pose = result.get("copy_reference", {}), result.get("no_pose", {})
        motion = "-"
        if result["expected_background_motion"] is not None:
            motion = f"{result['expected_background_motion']} / {result['model']['background_motion']}"
        lines.append(
            f"| {result['id']} | {result['task']} | {_cell(result['model']['psnr'], 2)} | "
            f"{_cell(result['model']['ssim'], 4)} | {_cell(copied.get('psnr'), 2)} | "
            f"{_cell(no_pose.get('psnr'), 2)} | {motion} |"
        )
    return "\n".join(lines) + "\n"


def _pose_frames(inputs: dict, clip: EvalClip) -> np.ndarray:
    """The skeleton frames the pose stream saw (the pipeline's rendering), or black frames for a ti2v clip."""
    from animatex_pp.pipelines.conditioning import prepare_pose

    if inputs["pose"] is None:
        return np.zeros_like(inputs["truth"])
    prepared = prepare_pose(inputs["pose"], None, clip.num_frames, clip.height, clip.width, use_ipi=False)
    return prepared.pose_frames


def contact_sheet(out: Path, clips: list[EvalClip], results: dict[str, dict], no_pose: bool) -> PIL.Image.Image:
    """Per clip a title strip, then its first, middle and last frames as rows of reference | pose | output |
    (no-pose output |) ground truth, the outputs read back from the written videos."""
    columns = ["reference", "pose", "output", *(["no-pose output"] if no_pose else []), "ground truth"]
    font = PIL.ImageFont.load_default()
    blocks = []
    for clip in clips:
        inputs = _read_inputs(clip)
        outputs = results[clip.id]["outputs"]
        # (F, H, 3 W, 3): reference | pose | output
        panels = [
            preview_frames(inputs["reference"], _pose_frames(inputs, clip), read_video(out / outputs["model"])[0])
        ]
        if no_pose:
            panels.append(read_video(out / outputs["no_pose"])[0])
        panels.append(inputs["truth"])
        strip = np.concatenate(panels, axis=2)  # (F, H, n W, 3)
        rows = np.unique(np.linspace(0, len(strip) - 1, SHEET_FRAMES).round().astype(int))
        scale = max(1, -(-MIN_SHEET_CELL_HEIGHT // clip.height))
        grid = PIL.Image.fromarray(np.concatenate(list(strip[rows]), axis=0))  # (rows H, n W, 3)
        grid = grid.resize((grid.width * scale, grid.height * scale), PIL.Image.NEAREST)
        block = PIL.Image.new("RGB", (grid.width, LABEL_HEIGHT + grid.height), "white")
        title = f"{clip.id} ({clip.mode}, frames {', '.join(map(str, rows))}): {clip.record.caption}"
        PIL.ImageDraw.Draw(block).text((2, 1), title[: grid.width // TITLE_CHAR_WIDTH], fill="black", font=font)
        block.paste(grid, (0, LABEL_HEIGHT))
        blocks.append(block)
    sheet = PIL.Image.new(
        "RGB", (max(block.width for block in blocks), LABEL_HEIGHT + sum(block.height for block in blocks)), "white"
    )
    # Clips of one split share one size, so the first block's cells name every block's columns.
    cell_width = blocks[0].width // len(columns)
    draw = PIL.ImageDraw.Draw(sheet)
    for index, name in enumerate(columns):
        draw.text((index * cell_width + 2, 1), name, fill="black", font=font)
    top = LABEL_HEIGHT
    for block in blocks:
        sheet.paste(block, (0, top))
        top += block.height
    return sheet


# ----------------------------------------------------------------------------- the run


def evaluate(
    model: str | Path | AnimateXPipeline,
    metadata: str | Path,
    out: str | Path,
    *,
    baselines: bool = True,
    no_pose: bool = True,
    num_inference_steps: int = 8,
    guidance_scale: float = 1.0,
    seed: int = 0,
    device: str = "cpu",
    dtype: str = "fp32",
    limit: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate `model` (a pipeline folder or an `AnimateXPipeline`) on the split `metadata` and write `out`.

    Args:
        model: a pipeline directory (`AnimateXPipeline.save_pretrained`, `animatex-pp convert`) or a pipeline;
            a pipeline given in memory is moved to `device`.
        metadata: the split's .jsonl/.csv (SynthX's `test_x.jsonl`, or any metadata with poses, docs/data.md).
        out: the output folder (created; an earlier run's folder resumes).
        baselines: also score the copy-the-reference baseline and, with `no_pose`, the pose-streams-off model.
        no_pose: run the no-pose baseline (a second generation per animation clip).
        num_inference_steps, guidance_scale, seed: sampling; every clip starts from the noise of `seed`.
        device: torch device; dtype: "fp32", "bf16" or "fp16" for a folder's transformer and text encoder (the VAE
            and CLIPs stay float32).
        limit: evaluate only the split's first `limit` clips.
        progress: show a progress bar over clips.

    Returns:
        metrics.json's content: `summary` (flat: `psnr`, `ssim`, `background_motion_accuracy`,
        `copy_reference_psnr`, `no_pose_psnr`, ...), `mean`, `copy_reference` and `no_pose` (means per run, None
        for a run not made) and `clips` (per-clip results).

    Raises:
        FileNotFoundError, ValueError: a missing or bad input, before any model loads.
    """
    from animatex_pp.models.weight_files import check_pipeline_folder
    from animatex_pp.pipelines.loading import load_pipeline, read_pipeline_geometry

    # 1. Check everything before a model loads
    torch_dtype(dtype)  # an unknown dtype name is refused here, not when the model loads
    if limit is not None and limit < 1:
        raise ValueError(f"--limit must be a positive integer, got {limit}")
    out = Path(out)
    model_dir = None
    if isinstance(model, (str, Path)):
        hint = "Make one with `animatex-pp convert` or `animatex-pp train` (export)."
        model_dir = existing_dir(model, "a pipeline directory", "model_index.json", hint)
        check_pipeline_folder(model_dir, "--model", hint)
        geometry = read_pipeline_geometry(model_dir)
    else:
        geometry = model.geometry
    metadata = existing_file(metadata, "--data metadata file")
    check_out(out, {"--model": model_dir, "--data": metadata})
    check_device(device)
    clips = plan_clips(metadata, geometry, limit)
    settings = {"num_inference_steps": num_inference_steps, "guidance_scale": guidance_scale, "seed": seed,
                "dtype": dtype, "baselines": baselines, "no_pose": baselines and no_pose}  # fmt: skip
    identity = _folder_identity(model_dir) if model_dir is not None else _pipeline_identity(model)
    stamp = fingerprint(identity, metadata, settings)
    results = _done_results(out, clips, stamp)

    # 2. Generate and score the clips not done yet, each saved as soon as it is
    out.mkdir(exist_ok=True)
    pipe = None
    bar = tqdm(clips, desc=f"eval {metadata.stem}", unit="clip", disable=not progress)
    for clip in bar:
        if clip.id in results:
            continue
        if pipe is None:
            pipe = model if model_dir is None else load_pipeline(model_dir, dtype=dtype)
            pipe.to(device)
            pipe.set_progress_bar_config(disable=True)  # one bar, over clips
        results[clip.id] = _evaluate_clip(pipe, clip, out, settings, stamp)
        _write_json(_result_path(out, clip), results[clip.id])
        bar.set_postfix(psnr=f"{results[clip.id]['model']['psnr']:.2f}")
    bar.close()

    # 3. The split's tables and contact sheet
    ordered = [results[clip.id] for clip in clips]
    metrics = summarize(metadata.stem, ordered, settings, stamp)
    _write_json(out / "metrics.json", metrics)
    with atomic_output(out / "metrics.md") as temporary:
        temporary.write_text(markdown_table(metrics), encoding="utf-8")
    sheet = contact_sheet(out, clips[:SHEET_CLIPS], results, settings["no_pose"])
    with atomic_output(out / "contact_sheet.png") as temporary:
        sheet.save(temporary, format="PNG")
    return metrics
