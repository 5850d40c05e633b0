"""`run_demo`: the whole system on one CPU in minutes (docs/results.md): SynthX, the pretrained codec and base,
precompute, the real trainer, evaluation against ground truth, and a generated clip of a held-out X character.

Stages, one function each, in order: `build_benchmark` (SynthX into `synthx/`), `load_demo_codec` (`vae/`),
`load_demo_base` (`base/pipeline`: the SynthX base with the codec), `precompute_cache` (`cache/`: the trainer never
runs the encoders), `train_model` (`train/`: Animate-X++'s adapters on the base, exported to
`train/export/pipeline`), `evaluate_split` per test split (`eval/<split>/`, the base as the "before"), then
`write_outputs` (`demo.mp4`, `preview.png`, `metrics.json`, `report.md`, always rewritten: they take seconds).
With `ablation=True`, `run_ablation` comes before the outputs: it trains the `synthx_ablation` sweep on the same
data, base and cache (`ablation/<job>/`) and evaluates each point (`eval_ablation/<point>/<name>/`); the report
then has its table.
With `from_scratch=True` the transformer is trained in full from random weights instead (`recipe=synthx_tiny`):
the comparison that shows what the base is for.

Reuse: each stage records in `stages/<name>.json` a fingerprint of its settings and of the stages it depends on,
with `"done": false` when it starts and its result when it ends. A second run skips a done stage whose fingerprint
matches; a stage interrupted with the same fingerprint continues where it stopped when it can (the cache and the
evaluation resume per shard and per clip, training from its last checkpoint); anything else starts that stage
afresh, and so every stage after it, whose fingerprints include it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from animatex_pp.io.files import atomic_output
from animatex_pp.io.frames import unit_to_uint8
from animatex_pp.io.stages import file_digest, open_stage

__all__ = ["QUICK", "DemoConfig", "run_demo"]

STAGES = "stages"
EVAL_SPLITS = ("test_x", "test_x_dynamic", "test_human")
# The stress test: test_x again, driven by the human driver's pose as it is, not retargeted (what EPI is for).
RAW_SPLIT = "test_x"
DEMO_SPLIT = "test_x_dynamic"  # demo.mp4: a held-out X character, animated with a background prompt
PREVIEW_SPLITS = ("test_x", DEMO_SPLIT)  # preview.png: the first clip of each, with its baselines
BASE_REPORTED = ("source", "steps", "final_loss", "wall_time_s")  # what metrics.json keeps of the base stage
# What metrics.json keeps of each split's evaluation summary (docs/evaluation.md defines each): every metric of the
# model and of each baseline, by its prefix (the base, pose streams off, copying the reference in pixels and through
# the codec, the codec's reconstruction of the ground truth: the ceiling), and the driving pose's keypoint error.
RUNS = {"": "the model", "base_": "the base (before)", "no_pose_": "pose streams off",
        "copy_reference_": "copy the reference", "copy_reference_vae_": "copy the reference, through the codec",
        "vae_reconstruction_": "codec ceiling"}  # fmt: skip
METRICS = ("psnr", "ssim", "character_psnr", "foreground_iou", "spurious_share", "background_motion_accuracy")
REPORTED = (*(run + metric for run in RUNS for metric in METRICS), "driving_keypoint_error_px")
# recipe=synthx_ablation's sweep, in its order. Each point is scored on test_x (with the pose-off baseline), on
# test_x driven raw (what EPI is for) and on test_x_dynamic (background motion: the no_ti2v point should lose it).
ABLATIONS = ("full", "no_ipi", "no_epi", "no_ti2v")
# (name, split, driving, with the baselines)
ABLATION_EVALS = (("test_x", "test_x", "retargeted", True), ("test_x_raw", "test_x", "raw", False),
                  ("test_x_dynamic", "test_x_dynamic", "retargeted", False))  # fmt: skip
BASE_PIPELINE = Path("base") / "pipeline"  # in the demo's folder: the base with the codec, as one pipeline folder
# SynthX test clips held out of the VAE's training to measure its reconstruction PSNR (the first of test_x).
VAE_HELD_OUT = 16


@dataclasses.dataclass(frozen=True)
class DemoConfig:
    """The demo's sizes. The defaults fit 15 minutes on 2 shared cores (docs/results.md has the measured times)."""

    size: int = 64
    frames: int = 17
    train_clips: int = 200
    test_clips: int = 16
    seed: int = 0
    # a codec folder (holding vae/, as `animatex-pp demo --fit-codec OUT` writes); None: the package's
    codec: str | None = None
    # a base folder (`--pretrain-base OUT` writes OUT/base; a pipeline folder also works); None: the package's
    base: str | None = None
    # train the whole transformer from random weights (recipe=synthx_tiny) instead of the adapters on the base
    from_scratch: bool = False
    train_steps: int | None = None  # None: the recipe's trainer.max_steps
    num_inference_steps: int = 8
    # One thread per process: on a shared 2-core machine two threads made these small ops 6-13x slower.
    threads: int = 1


# `--quick`: every stage runs, at sizes that only prove the wiring (tests).
QUICK = DemoConfig(train_clips=16, test_clips=2, train_steps=4, num_inference_steps=2)


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as temporary:
        temporary.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")


def _say(message: str) -> None:
    print(f"[demo] {message}", flush=True)


def _stage(
    out: Path, name: str, folder: Path, settings: dict[str, Any], work: Callable[[bool], dict[str, Any]]
) -> tuple[str, dict[str, Any]]:
    """Run `work(resume)` unless stage `name` is done with these settings; returns (fingerprint, result).

    `resume` is True when an earlier run started this stage with the same settings and did not finish; otherwise
    `folder`, the stage's output, is deleted first so nothing of other settings is mixed in (`animatex_pp.io.stages`).
    """
    stage = open_stage(out / STAGES / f"{name}.json", settings, on_change="restart", folder=folder)
    if stage.status == "done":
        _say(f"{name}: done by an earlier run with these settings, reused ({folder})")
        return stage.fingerprint, {**stage.result, "reused": True}
    _say(f"{name}: {'continuing' if stage.status == 'resumed' else 'starting'} ({folder})")
    started = time.perf_counter()
    result = work(stage.status == "resumed")
    result = stage.finish({**result, "stage_time_s": time.perf_counter() - started, "reused": False})
    _say(f"{name}: done in {result['stage_time_s']:.0f} s")
    return stage.fingerprint, result


def _training_overrides(out: Path, config: DemoConfig) -> list[str]:
    """The `animatex-pp train` overrides of the demo's run on its data: recipe synthx_animate on the base (or
    synthx_tiny from random weights with the demo's codec, `from_scratch`)."""
    recipe, model = ("synthx_tiny", out / "vae") if config.from_scratch else ("synthx_animate", out / BASE_PIPELINE)
    overrides = [
        f"recipe={recipe}",
        f"data.metadata={out / 'synthx' / 'train.jsonl'}",
        f"data.cache={out / 'cache'}",
        f"model.path={model}",
        f"run_dir={out / 'train'}",
        f"seed={config.seed}",
        f"data.clips.num_frames={config.frames}",
        f"data.clips.buckets=[[{config.size},{config.size}]]",
    ]
    if config.train_steps is not None:
        overrides.append(f"trainer.max_steps={config.train_steps}")
    return overrides


def build_benchmark(out: Path, config: DemoConfig, progress: bool) -> tuple[str, dict[str, Any]]:
    """Stage 1: SynthX into `out/synthx` (train on human-like characters; test_x, test_x_dynamic, test_human)."""
    from animatex_pp.synthx.build import GENERATOR_VERSION, BuildConfig, build

    build_config = BuildConfig(size=config.size, frames=config.frames, train=config.train_clips,
                               test=config.test_clips, seed=config.seed)  # fmt: skip
    settings = {"build": dataclasses.asdict(build_config), "generator": GENERATOR_VERSION}

    def work(resume: bool) -> dict[str, Any]:
        summary = build(out / "synthx", build_config, progress=progress)
        return {name: split["clips"] for name, split in summary["splits"].items()}

    return _stage(out, "synthx", out / "synthx", settings, work)


def codec_source(config: DemoConfig) -> Path:
    """The codec folder the demo uses, checked before any stage runs."""
    from animatex_pp.demo.codec import WEIGHTS_FILE, shipped_codec

    if config.codec is None:
        return shipped_codec()
    source = Path(config.codec)
    if not (source / "vae" / WEIGHTS_FILE).is_file():
        raise FileNotFoundError(f"no codec in {source} (no vae/{WEIGHTS_FILE}): give the OUT of --fit-codec OUT")
    return source


def base_source(config: DemoConfig, codec: Path) -> Path | None:
    """The base folder the demo trains on (None `from_scratch`), checked against the codec before any stage runs."""
    from animatex_pp.demo.base import check_base, shipped_base

    if config.from_scratch:
        if config.base is not None:
            raise ValueError("a run from scratch trains no base: give either a base or from_scratch, not both")
        return None
    return check_base(shipped_base() if config.base is None else config.base, codec)


def load_demo_codec(out: Path, source: Path, synthx: str) -> tuple[str, dict[str, Any]]:
    """Stage 2: the codec folder `source` (`codec_source`) copied into `out/vae/vae`, where the training recipe's
    `model.path` finds it, and measured on held-out test_x clips. It is a pretrained component, as Wan's VAE is:
    `animatex-pp demo --fit-codec OUT` is the fit that made the shipped one (docs/results.md, "The codec")."""
    import shutil

    from diffusers import AutoencoderKLWan

    from animatex_pp.demo.codec import FIT_FILE, WEIGHTS_FILE, Clips, held_out_numbers
    from animatex_pp.io.files import atomic_directory

    settings = {"synthx": synthx, "codec": file_digest(source / "vae" / WEIGHTS_FILE)}

    def work(resume: bool) -> dict[str, Any]:
        (out / "vae").mkdir(parents=True, exist_ok=True)
        with atomic_directory(out / "vae" / "vae") as folder:
            shutil.copytree(source / "vae", folder, dirs_exist_ok=True)
        vae = AutoencoderKLWan.from_pretrained(out / "vae" / "vae").eval()
        held_out = Clips.load(out / "synthx" / "test_x.jsonl", limit=VAE_HELD_OUT)
        fit = source / FIT_FILE
        recorded = json.loads(fit.read_text(encoding="utf-8")) if fit.is_file() else {}
        return {**held_out_numbers(vae, held_out), "source": str(source), "held_out_clips": len(held_out),
                "fit_steps": recorded.get("steps"), "fit_time_s": recorded.get("fit_time_s")}  # fmt: skip

    return _stage(out, "vae", out / "vae", settings, work)


def load_demo_base(out: Path, source: Path, vae: str) -> tuple[str, dict[str, Any]]:
    """Stage 3: the base folder `source` (`base_source`) and the demo's codec put together as one pipeline folder,
    `out/base/pipeline`: the model Animate-X++'s adapters train on, and the evaluation's "before"."""
    from animatex_pp.demo.base import BASE_FIT_FILE, base_pipeline
    from animatex_pp.demo.codec import WEIGHTS_FILE

    settings = {"vae": vae, "base": file_digest(source / "transformer" / WEIGHTS_FILE)}

    def work(resume: bool) -> dict[str, Any]:
        base_pipeline(source, out / "vae", out / BASE_PIPELINE)
        fit = source / BASE_FIT_FILE
        recorded = json.loads(fit.read_text(encoding="utf-8")) if fit.is_file() else {}
        return {**{name: recorded.get(name) for name in BASE_REPORTED}, "source": str(source)}

    return _stage(out, "base", out / "base", settings, work)


def precompute_cache(out: Path, config: DemoConfig, model: str, progress: bool) -> tuple[str, dict[str, Any]]:
    """Stage 4: the training clips through the frozen encoders of the model the run trains (`model`: the base's
    stage fingerprint, or the codec's from scratch), with the clip settings the trainer will use."""
    from animatex_pp.demo.base import precompute_for_run

    overrides = _training_overrides(out, config)
    settings = {"model": model, "overrides": [item for item in overrides if not item.startswith("run_dir=")]}

    def work(resume: bool) -> dict[str, Any]:
        return precompute_for_run(overrides, out / "synthx" / "train.jsonl", out / "cache", f"demo model {model}",
                                  progress)  # fmt: skip

    return _stage(out, "precompute", out / "cache", settings, work)


def train_model(out: Path, config: DemoConfig, cache: str) -> tuple[str, dict[str, Any]]:
    """Stage 5: `recipe=synthx_animate` on the base (or `synthx_tiny` from scratch) with the real trainer (DeepSpeed
    ZeRO-0, one process) on the cache; an interrupted run resumes from its last checkpoint."""
    from animatex_pp.training import train
    from animatex_pp.training.config import compose_config

    overrides = _training_overrides(out, config)
    settings = {"cache": cache, "overrides": overrides}

    def work(resume: bool) -> dict[str, Any]:
        metrics = train(compose_config([*overrides, f"resume={'auto' if resume else 'null'}"]))
        if not metrics.get("export"):
            raise RuntimeError(f"the training run in {out / 'train'} exported no pipeline")
        return metrics

    return _stage(out, "train", out / "train", settings, work)


def evaluate_split(
    out: Path, config: DemoConfig, split: str, model: str, progress: bool, driving: str = "retargeted"
) -> dict[str, Any]:
    """Stage 6: the exported pipeline on one test split, with every baseline (the base, the "before"; copy the
    reference, through the codec too; pose streams off; the codec's reconstruction of the ground truth).
    `driving="raw"` is the stress test: the driver's pose as it is, into `eval/<split>_raw`."""
    from animatex_pp.eval.evaluate import RESULT_FORMAT, evaluate

    name = split if driving == "retargeted" else f"{split}_raw"
    settings = {"model": model, "steps": config.num_inference_steps, "seed": config.seed, "driving": driving,
                "eval": RESULT_FORMAT}  # fmt: skip
    base = None if config.from_scratch else out / BASE_PIPELINE

    def work(resume: bool) -> dict[str, Any]:
        (out / "eval").mkdir(exist_ok=True)
        metrics = evaluate(out / "train" / "export" / "pipeline", out / "synthx" / f"{split}.jsonl",
                           out / "eval" / name, base_model=base, num_inference_steps=config.num_inference_steps,
                           guidance_scale=1.0, seed=config.seed, driving=driving, progress=progress)  # fmt: skip
        return {"summary": metrics["summary"], "clips": metrics["mean"]["clips"]}

    return _stage(out, f"eval_{name}", out / "eval" / name, settings, work)[1]


def _sweep_points(sweep_dir: Path) -> dict[str, dict[str, Any]]:
    """{ablation: its job's folder name and metrics.json} of a finished sweep, from Hydra's record of each job."""
    from animatex_pp.training.sweep import summarize

    points = {}
    for row in summarize(sweep_dir):
        names = [item.split("=", 1)[1] for item in row["overrides"].split() if item.startswith("ablation=")]
        if len(names) != 1 or "final_loss" not in row:
            raise RuntimeError(f"ablation sweep job {sweep_dir / row['job']} has no ablation or no metrics.json")
        points[names[0]] = row
    if set(points) != set(ABLATIONS):
        raise RuntimeError(f"the ablation sweep in {sweep_dir} ran {sorted(points)}, not {list(ABLATIONS)}")
    return points


def run_ablation(out: Path, config: DemoConfig, cache: str, progress: bool) -> dict[str, dict[str, Any]]:
    """The optional stage (`ablation=True`): `animatex-pp train -m recipe=synthx_ablation` on the demo's data, base
    and cache, then each point's exported pipeline on ABLATION_EVALS. Returns {stage name: its result}.

    The sweep is the real command line in a child process: Hydra's multirun owns its process's config state and
    launcher, and this is exactly what a user runs. An interrupted sweep reruns with resume=auto, so finished
    points only re-export and an interrupted one continues from its checkpoint."""
    sweep_dir = out / "ablation"
    overrides = [item for item in _training_overrides(out, config) if not item.startswith(("recipe=", "run_dir="))]
    settings = {"cache": cache, "overrides": overrides}

    def sweep(resume: bool) -> dict[str, Any]:
        command = [sys.executable, "-m", "animatex_pp.cli", "train", "-m", "recipe=synthx_ablation", *overrides,
                   f"hydra.sweep.dir={sweep_dir}", f"resume={'auto' if resume else 'null'}"]  # fmt: skip
        subprocess.run(command, check=True, env={**os.environ, "OMP_NUM_THREADS": str(config.threads)})
        return {"points": _sweep_points(sweep_dir)}

    stamp, swept = _stage(out, "ablation_sweep", sweep_dir, settings, sweep)
    results = {"ablation_sweep": swept}
    for name in ABLATIONS:
        job = sweep_dir / swept["points"][name]["job"]
        for evaluation in ABLATION_EVALS:
            results[f"ablation_{name}_{evaluation[0]}"] = _evaluate_point(out, config, stamp, name, job, evaluation,
                                                                          progress)  # fmt: skip
    return results


def _evaluate_point(
    out: Path, config: DemoConfig, sweep: str, name: str, job: Path, evaluation: tuple[str, str, str, bool],
    progress: bool,
) -> dict[str, Any]:  # fmt: skip
    """One ablation point's exported pipeline on one of ABLATION_EVALS, into `eval_ablation/<point>/<name>`."""
    from animatex_pp.eval.evaluate import RESULT_FORMAT, evaluate

    label, split, driving, baselines = evaluation
    folder = out / "eval_ablation" / name / label
    settings = {"sweep": sweep, "point": name, "steps": config.num_inference_steps, "seed": config.seed,
                "driving": driving, "eval": RESULT_FORMAT}  # fmt: skip

    def work(resume: bool) -> dict[str, Any]:
        folder.parent.mkdir(parents=True, exist_ok=True)
        metrics = evaluate(job / "export" / "pipeline", out / "synthx" / f"{split}.jsonl", folder, driving=driving,
                           baselines=baselines, num_inference_steps=config.num_inference_steps, guidance_scale=1.0,
                           seed=config.seed, progress=progress)  # fmt: skip
        return {"summary": metrics["summary"], "clips": metrics["mean"]["clips"]}

    return _stage(out, f"ablation_{name}_{label}", folder, settings, work)[1]


def _ablation_table(results: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """{point: the numbers the report's ablation table shows}."""
    table = {}
    for name in ABLATIONS:
        trained = results["ablation_sweep"]["points"][name]
        still, raw, dynamic = (results[f"ablation_{name}_{evaluation[0]}"]["summary"] for evaluation in ABLATION_EVALS)
        table[name] = {"loss_animation": trained.get("loss_animation"), "loss_ti2v": trained.get("loss_ti2v"),
                       "test_x_psnr": still["psnr"], "test_x_character_psnr": still["character_psnr"],
                       "test_x_foreground_iou": still["foreground_iou"],
                       "test_x_no_pose_foreground_iou": still["no_pose_foreground_iou"],
                       "test_x_raw_foreground_iou": raw["foreground_iou"], "test_x_dynamic_psnr": dynamic["psnr"],
                       "background_motion_accuracy": dynamic["background_motion_accuracy"]}  # fmt: skip
    return table


def _preview(out: Path) -> None:
    """preview.png: the evaluation's sheets of the first clip of each PREVIEW_SPLITS split (the retargeted pose, the
    output, the baselines, the codec's reconstruction of the ground truth and the ground truth)."""
    from animatex_pp.eval.evaluate import clip_sheets
    from animatex_pp.io.preview import stack_sheets

    sheet = stack_sheets([clip_sheets(out / "eval" / split) for split in PREVIEW_SPLITS])
    with atomic_output(out / "preview.png") as temporary:
        sheet.save(temporary, format="PNG")
    _say(f"wrote {out / 'preview.png'}")


def _demo_clip(out: Path, config: DemoConfig) -> None:
    """demo.mp4 (reference | pose | output): the exported pipeline on the first DEMO_SPLIT clip."""
    import torch

    from animatex_pp.io.image import read_image
    from animatex_pp.io.preview import write_preview_video
    from animatex_pp.io.video import read_video
    from animatex_pp.pipelines.conditioning import official_strokes
    from animatex_pp.pipelines.loading import load_pipeline
    from animatex_pp.pose.render import render
    from animatex_pp.pose.retarget import retarget
    from animatex_pp.pose.sequence import PoseSequence

    root = out / "synthx"
    # The split's first row, in SynthX's metadata format (paths relative to the benchmark's folder).
    row = json.loads((root / f"{DEMO_SPLIT}.jsonl").read_text(encoding="utf-8").splitlines()[0])
    image = read_image(root / row["reference"])
    reference_pose = PoseSequence.load(root / row["reference_pose"])
    # The driver's pose retargeted onto the character, as the evaluation drives it (and the preview shows it).
    pose = retarget(PoseSequence.load(root / row["pose"]), reference_pose[0])
    driving = read_video(root / row["driving_video"])[0]
    pipe = load_pipeline(out / "train" / "export" / "pipeline")
    pipe.set_progress_bar_config(desc="demo clip", unit="step")
    frames = pipe(image=image, pose=pose, reference_pose=reference_pose, driving_video=driving,
                  prompt=row["caption"], height=config.size, width=config.size, num_frames=len(pose),
                  num_inference_steps=config.num_inference_steps, guidance_scale=1.0,
                  generator=torch.Generator().manual_seed(config.seed), output_type="np").frames[0]  # fmt: skip
    video = unit_to_uint8(frames)
    skeleton = render(pose, config.size, config.size, **official_strokes(pose, config.size, config.size))
    write_preview_video(out / "demo.mp4", image, skeleton, video, row["fps"])
    _say(f"wrote {out / 'demo.mp4'}: {row['caption']!r}")


def _goals(metrics: dict[str, Any]) -> list[tuple[str, bool | None, str]]:
    """The goals the demo measures (docs/results.md): (goal, met or None when not measured, the numbers)."""
    x, dynamic, raw = metrics["test_x"], metrics["test_x_dynamic"], metrics["test_x_raw"]

    def met(value, test) -> bool | None:
        return None if value is None else bool(test(value))

    codec = metrics["vae_character_psnr"]
    margin = None if x["character_psnr"] is None else x["character_psnr"] - x["copy_reference_character_psnr"]
    iou, no_pose_iou = x["foreground_iou"], x["no_pose_foreground_iou"]
    iou_gap = None if iou is None or no_pose_iou is None else iou - no_pose_iou
    accuracy = dynamic["background_motion_accuracy"]
    goals = [
        ("codec keeps the character: test_x vae_character_psnr >= 28 dB", met(codec, lambda v: v >= 28.0),
         f"{_cell(codec)} dB"),
        ("codec keeps motion: reversal PSNR gap <= 3 dB", met(metrics["vae_reversal_gap_db"], lambda v: v <= 3.0),
         f"{_cell(metrics['vae_reversal_gap_db'])} dB"),
        ("the model animates: character_psnr >= copy_reference_character_psnr + 3 dB",
         met(margin, lambda v: v >= 3.0),
         f"{_cell(x['character_psnr'])} vs {_cell(x['copy_reference_character_psnr'])} dB"),
        ("it follows the pose: foreground_iou >= 0.6 and >= no_pose_foreground_iou + 0.2",
         None if iou_gap is None else iou >= 0.6 and iou_gap >= 0.2,
         f"{_cell(iou)} vs {_cell(no_pose_iou)} with the pose streams off"),
        ("it keeps the body plan: test_x spurious_share <= 0.10", met(x["spurious_share"], lambda v: v <= 0.10),
         _cell(x["spurious_share"], 3)),
        ("the prompt moves the background: test_x_dynamic background_motion_accuracy >= 0.8",
         met(accuracy, lambda v: v >= 0.8), _percent(accuracy)),
        ("raw driving (the EPI stress test): test_x foreground_iou, reported", None,
         f"{_cell(raw['foreground_iou'])} raw vs {_cell(iou)} retargeted"),
        ("time: the demo <= 15 min on 2 cores", metrics["wall_time_s"] <= 900, f"{metrics['wall_time_s']:.0f} s"),
    ]  # fmt: skip
    ablation = metrics.get("ablation")
    if ablation:
        full, no_ti2v = (ablation[name]["background_motion_accuracy"] for name in ("full", "no_ti2v"))
        drop = None if full is None or no_ti2v is None else full - no_ti2v
        goals.append(("ablation: no_ti2v's background_motion_accuracy >= 0.3 below full's",
                      met(drop, lambda v: v >= 0.3),
                      f"{_percent(full)} full vs {_percent(no_ti2v)} no_ti2v"))  # fmt: skip
        goals.append(("ablation, raw driving: EPI's and no-EPI's test_x foreground_iou, reported", None,
                      f"{_cell(ablation['full']['test_x_raw_foreground_iou'])} with EPI vs "
                      f"{_cell(ablation['no_epi']['test_x_raw_foreground_iou'])} without"))  # fmt: skip
    return goals


def _cell(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f} %"


def _ablation_report(table: dict[str, dict[str, Any]], time_s: float) -> list[str]:
    lines = [
        "",
        f"## Ablation: `animatex-pp train -m recipe=synthx_ablation` ({time_s:.0f} s)",
        "",
        "Final training loss per task (mean of the last fifth of the steps), then each point's exported pipeline on "
        "test_x (retargeted driving, with the pose streams off as a baseline; and raw driving) and test_x_dynamic.",
        "",
        "| ablation | loss animation | loss ti2v | test_x PSNR | character PSNR | foreground IoU (pose off) "
        "| raw driving: IoU | test_x_dynamic PSNR | background motion |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in table.items():
        lines.append(
            f"| {name} | {_cell(row['loss_animation'], 4)} | {_cell(row['loss_ti2v'], 4)} | "
            f"{_cell(row['test_x_psnr'])} | {_cell(row['test_x_character_psnr'])} | "
            f"{_cell(row['test_x_foreground_iou'])} ({_cell(row['test_x_no_pose_foreground_iou'])}) | "
            f"{_cell(row['test_x_raw_foreground_iou'])} | {_cell(row['test_x_dynamic_psnr'])} | "
            f"{_percent(row['background_motion_accuracy'])} |"
        )
    return lines


def _base_line(base: dict[str, Any] | None) -> str:
    if base is None:
        return "No base: the transformer was trained from random weights."
    made = ""
    if base["steps"] is not None:
        minutes = base["wall_time_s"] / 60
        made = f", pretrained for {base['steps']} steps in {minutes:.0f} min (loss {base['final_loss']:.3f})"
    return f"The base (`{base['source']}`{made}) is the 'before' row of every split."


def _report(metrics: dict[str, Any]) -> str:
    lines = [
        "# Animate-X++ demo",
        "",
        f"SynthX: {', '.join(f'{split} {count} clips' for split, count in metrics['synthx'].items())}. "
        f"The VAE's held-out reconstruction PSNR is {metrics['vae_psnr']:.2f} dB, "
        f"the ceiling of every PSNR below. Wall time {metrics['wall_time_s']:.0f} s (this run "
        f"{metrics['this_run_s']:.0f} s); stages: "
        f"{', '.join(f'{name} {seconds:.0f} s' for name, seconds in metrics['stage_times_s'].items())}.",
        "",
        _base_line(metrics["base"]),
        "",
        "Character PSNR is measured over the character's (dilated) mask; foreground IoU compares the pixels that "
        "differ from the background plate with the character's mask; the spurious share is the foreground outside "
        "the dilated mask over the mask's area (docs/evaluation.md). Every generated row decodes through the same "
        "codec; copying the reference is scored on its own pixels and through the codec.",
        "",
        "| split | run | PSNR | SSIM | character PSNR | foreground IoU | spurious share | background motion |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for split in (*EVAL_SPLITS, f"{RAW_SPLIT}_raw"):
        v = metrics[split]
        for prefix, run in RUNS.items():
            if v[f"{prefix}psnr"] is None:
                continue  # a baseline this run has not got (the base, from scratch)
            lines.append(
                f"| {split} | {run} | {_cell(v[f'{prefix}psnr'])} | {_cell(v[f'{prefix}ssim'], 3)} | "
                f"{_cell(v[f'{prefix}character_psnr'])} | {_cell(v[f'{prefix}foreground_iou'])} | "
                f"{_cell(v[f'{prefix}spurious_share'], 3)} | {_percent(v[f'{prefix}background_motion_accuracy'])} |"
            )
    lines += [
        "",
        "Goals (measured, not asserted):",
        "",
        "| goal | met | measured |",
        "|---|---|---|",
    ]
    for goal, met, measured in _goals(metrics):
        lines.append(f"| {goal} | {'n/a' if met is None else 'yes' if met else 'no'} | {measured} |")
    if metrics["config"]["from_scratch"]:
        start = "from random weights (recipe=synthx_tiny)"
    else:
        start = "on the base (recipe=synthx_animate: LoRA + pose streams)"
    lines += [
        "",
        f"Training {start}: {metrics['train']['steps']} steps, loss {metrics['train']['first_loss']:.4f} -> "
        f"{metrics['train']['final_loss']:.4f}. demo.mp4: reference | pose | output on {DEMO_SPLIT}/00000.",
        "",
        f"![the first clip of {' and of '.join(PREVIEW_SPLITS)}: the retargeted pose, the output, the baselines, the "
        "codec's reconstruction and the ground truth](preview.png)",
    ]
    if "ablation" in metrics:
        lines += _ablation_report(metrics["ablation"], metrics["ablation_time_s"])
    return "\n".join(lines) + "\n"


def write_outputs(
    out: Path, config: DemoConfig, results: dict[str, Any], started: float, ablation: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The last stage: demo.mp4, preview.png, metrics.json and report.md (with `run_ablation`'s results, if any)."""
    _demo_clip(out, config)
    _preview(out)
    metrics = {
        "vae_psnr": results["vae"]["psnr"],
        # the codec's reconstruction of test_x, scored on the character's pixels by the evaluation's ceiling row
        "vae_character_psnr": results["test_x"]["summary"]["vae_reconstruction_character_psnr"],
        "vae_reversal_gap_db": results["vae"]["reversal_gap_db"],
        **{
            split: {name: results[split]["summary"].get(name) for name in REPORTED}
            for split in (*EVAL_SPLITS, f"{RAW_SPLIT}_raw")
        },
        "synthx": {split: results["synthx"][split] for split in ("train", *EVAL_SPLITS)},
        "train": {name: results["train"][name] for name in ("steps", "first_loss", "final_loss", "wall_time_s")},
        # the base trained on (None from scratch): its folder and its pretraining's steps, loss and time
        "base": {name: results["base"][name] for name in BASE_REPORTED} if "base" in results else None,
        "config": dataclasses.asdict(config),
        "stage_times_s": {name: result["stage_time_s"] for name, result in results.items()},
    }
    ablation = ablation or {}
    if ablation:
        metrics["ablation"] = _ablation_table(ablation)
        metrics["ablation_time_s"] = sum(result["stage_time_s"] for result in ablation.values())
    # A rerun reuses stages: the demo's time is what building every stage took, plus this run's outputs.
    this_run = time.perf_counter() - started
    built = [result for result in (*results.values(), *ablation.values()) if not result["reused"]]
    outputs = this_run - sum(result["stage_time_s"] for result in built)
    metrics["wall_time_s"] = sum(metrics["stage_times_s"].values()) + outputs
    metrics["this_run_s"] = this_run
    _write_json(out / "metrics.json", metrics)
    with atomic_output(out / "report.md") as temporary:
        temporary.write_text(_report(metrics), encoding="utf-8")
    _say(f"wrote {out / 'metrics.json'} and {out / 'report.md'}")
    return metrics


def run_demo(
    out: str | Path, config: DemoConfig = DemoConfig(), progress: bool = True, ablation: bool = False
) -> dict[str, Any]:
    """Every stage into `out` (created), reusing what an earlier run built; returns metrics.json's content.
    `ablation`: also train and score the synthx_ablation sweep (four more training runs)."""
    import torch

    started = time.perf_counter()
    codec = codec_source(config)
    base = base_source(config, codec)
    if ablation and base is None:
        raise ValueError("the ablation sweep (recipe=synthx_ablation) trains adapters on the base: drop from_scratch")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(config.threads)
    results: dict[str, Any] = {}
    synthx, results["synthx"] = build_benchmark(out, config, progress)
    model, results["vae"] = load_demo_codec(out, codec, synthx)
    if base is not None:
        model, results["base"] = load_demo_base(out, base, model)
    cache, results["precompute"] = precompute_cache(out, config, model, progress)
    model, results["train"] = train_model(out, config, cache)
    for split in EVAL_SPLITS:
        results[split] = evaluate_split(out, config, split, model, progress)
    results[f"{RAW_SPLIT}_raw"] = evaluate_split(out, config, RAW_SPLIT, model, progress, driving="raw")
    swept = run_ablation(out, config, cache, progress) if ablation else None
    return write_outputs(out, config, results, started, swept)
