"""Build a SynthX benchmark: plan the clips of every split, render them (in parallel), write files and metadata.

Splits (docs/synthx.md): `train` holds human-like animation clips on still backgrounds (training motions) and ti2v
clips (a human-like character standing, or none, over a background that moves as the caption says); `test_x` holds
X characters performing held-out motions on still backgrounds; `test_x_dynamic` the same with a background prompt
and the ground truth rendered with that background motion; `test_human` held-out human-like identities and
motions. In test clips the pose comes from a different, human-like puppet performing the same motion (its video is
`driving_video`), as a user's driving video would; `truth` holds the character's own keypoints and masks.

Determinism: every clip draws from its own generator, seeded by (seed, split, index), so the bytes of a clip depend
on nothing else: not on the worker count, the order clips finish in, or the other splits' sizes.
"""

from __future__ import annotations

import json
import multiprocessing
import os
from collections import Counter
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from animatex_pp import __version__
from animatex_pp.io.files import atomic_directory
from animatex_pp.io.video import write_video
from animatex_pp.pipelines.geometry import VaeFactors
from animatex_pp.pose.sequence import PoseSequence
from animatex_pp.synthx import motions
from animatex_pp.synthx.bodies import FAMILIES, sample_body
from animatex_pp.synthx.captions import caption
from animatex_pp.synthx.draw import draw
from animatex_pp.synthx.puppet import Skeleton, fit, place, pose_body
from animatex_pp.synthx.scenes import CAMERA_LABELS, OBJECT_COLOURS, background_frames, sample_camera, sample_objects
from animatex_pp.synthx.textures import sample_appearance
from animatex_pp.synthx.truth import ClipTruth, write_truth

__all__ = ["GENERATOR_VERSION", "SPLITS", "BuildConfig", "build", "check_output"]

FORMAT = "animatex_pp.synthx/1"
# 1.1: background plates; a bigger character with chunky limbs and low-frequency textures (docs/synthx.md)
GENERATOR_VERSION = "1.1"
SPLITS = ("train", "test_x", "test_x_dynamic", "test_human")
METADATA_FILES = {"train": "train.jsonl", "test_x": "test_x.jsonl", "test_x_dynamic": "test_x_dynamic.jsonl",
                  "test_human": "test_human.jsonl"}  # fmt: skip
# x264's lossless mode: the ground truth is exact up to yuv420p's colour subsampling, and it encodes faster than
# any lossy setting (no rate-distortion search); a 64 x 64 x 17 clip is about 60 kB.
CRF = 0
X_FAMILIES = tuple(name for name, family in FAMILIES.items() if not family.human_like)


@dataclass(frozen=True)
class BuildConfig:
    """What a build makes: frame size and count, clips per split, seed (all recorded in synthx.json)."""

    size: int = 64
    frames: int = 17
    fps: float = 16.0
    train: int = 200
    test: int = 40
    seed: int = 0
    ti2v_share: float = 0.25

    def check(self) -> None:
        """Raise a ValueError that says what to change."""
        if not isinstance(self.size, int) or self.size < 32 or self.size % 16:
            raise ValueError(
                f"--size must be a multiple of 16 and at least 32 (the model's patching), got {self.size}"
            )
        if not VaeFactors().is_valid_frame_count(self.frames) or self.frames < 5:
            raise ValueError(
                f"--frames must be 4k+1 and at least 5 (17, 33, 81: Wan's frame counts), got {self.frames}"
            )
        if not self.fps > 0:
            raise ValueError(f"--fps must be positive, got {self.fps}")
        for name in ("train", "test", "seed"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"--{name} must be an integer >= 0, got {value!r}")
        if self.train + self.test == 0:
            raise ValueError("--train and --test are both 0: ask for at least one clip")
        if not 0.0 <= self.ti2v_share <= 1.0:
            raise ValueError(f"--ti2v-share must be in [0, 1], got {self.ti2v_share}")


@dataclass(frozen=True)
class ClipSpec:
    """One clip to render: everything chosen at planning time; the rest comes from the clip's own generator."""

    split: str
    index: int
    task: str
    family: str
    motion: str
    camera: str
    character: bool = True
    objects: bool = False
    real: motions.Motion | None = None

    @property
    def folder(self) -> str:
        return f"clips/{self.split}/{self.index:05d}"


def check_output(out: str | os.PathLike) -> Path:
    """The output folder, if it can be written: its parent exists, and it is new, empty or an earlier SynthX build."""
    out = Path(out)
    if not out.parent.is_dir():
        raise FileNotFoundError(f"folder {out.parent} does not exist: create it, or choose another OUT")
    if out.exists():
        if not out.is_dir():
            raise ValueError(f"{out} is a file: give a folder to build the benchmark in")
        if any(out.iterdir()) and not (out / "synthx.json").is_file():
            raise ValueError(f"{out} holds files but no synthx.json: it is not a SynthX build; choose a new folder")
    return out


def _plan(config: BuildConfig, real: dict[str, list[motions.Motion]]) -> list[ClipSpec]:
    """Every clip of every split, in a fixed order. Real motions enter the training or held-out pool by window."""
    train_pool = [(name, None) for name, kind in motions.MOTIONS.items() if kind.role == "train"]
    test_pool = [(name, None) for name, kind in motions.MOTIONS.items() if kind.role == "test"]
    for name, windows in real.items():
        for k, window in enumerate(windows):
            # Alternate windows of a source go to training and to the held-out pool, so held out means unseen.
            (train_pool if k % 2 == 0 else test_pool).append((f"real:{name}#{k}", window))
    rng = np.random.default_rng([config.seed, len(SPLITS)])  # the planner's own stream
    specs = []
    ti2v = round(config.train * config.ti2v_share)
    for index in range(config.train):
        if index < config.train - ti2v:
            motion, window = train_pool[index % len(train_pool)]
            specs.append(ClipSpec("train", index, "animation", "human", motion, "still", real=window))
        else:
            k = index - (config.train - ti2v)
            specs.append(ClipSpec("train", index, "ti2v", "human", "rest", CAMERA_LABELS[k % len(CAMERA_LABELS)],
                                  character=k % 2 == 0, objects=bool(rng.integers(2))))  # fmt: skip
    moving = CAMERA_LABELS[1:]
    for split in SPLITS[1:]:
        for index in range(config.test):
            motion, window = test_pool[int(rng.integers(len(test_pool)))]
            family = "human" if split == "test_human" else X_FAMILIES[index % len(X_FAMILIES)]
            camera = moving[index % len(moving)] if split == "test_x_dynamic" else "still"
            specs.append(ClipSpec(split, index, "animation", family, motion, camera, real=window))
    return specs


def _puppet(family: str, motion: motions.Motion, config: BuildConfig, rng: np.random.Generator):
    """A new character of `family` performing `motion`, placed in the frame: (skeleton, rest skeleton, look)."""
    body = sample_body(FAMILIES[family], rng)
    appearance = sample_appearance(rng)
    skeleton, standing = pose_body(body, motion), pose_body(body, motions.rest(1, config.fps))
    scale, offset = fit([skeleton, standing], config.size, rng)
    return place(skeleton, scale, offset), place(standing, scale, offset), appearance


def _pose(skeleton: Skeleton, config: BuildConfig) -> PoseSequence:
    points, conf = skeleton.keypoints()
    return PoseSequence(body=points / config.size, body_conf=conf, width=config.size, height=config.size,
                        fps=config.fps)  # fmt: skip


def _render(spec: ClipSpec, config: BuildConfig, root: Path) -> dict:
    """Render one clip, write its files under `root`, and return its metadata row."""
    rng = np.random.default_rng([config.seed, SPLITS.index(spec.split), spec.index])
    size, frames, fps = config.size, config.frames, config.fps
    if spec.task == "ti2v":
        motion = motions.rest(frames, fps)
    elif spec.real is not None:
        motion = spec.real
    else:
        motion = motions.MOTIONS[spec.motion].generate(frames, fps, rng)
    skeleton, standing, appearance = _puppet(spec.family, motion, config, rng)
    camera = sample_camera(spec.camera, size, rng)
    background = background_frames(camera, frames, size, rng)
    objects, described = sample_objects(frames, size, rng) if spec.objects else ([], [])
    for item, words in zip(objects, described, strict=True):
        appearance = appearance.with_solid(item.label, OBJECT_COLOURS[words["colour"]])
    layer = draw(skeleton if spec.character else None, appearance, size, frames, tuple(objects))
    video = layer.over(background)
    # The background plate: the same scene and objects without the character, for the foreground metrics.
    plate = draw(None, appearance, size, frames, tuple(objects)).over(background) if spec.character else video

    folder = root / spec.folder
    folder.mkdir(parents=True)
    row = {"id": f"{spec.split}/{spec.index:05d}", "video": f"{spec.folder}/video.mp4", "task": spec.task}
    family = FAMILIES[spec.family]
    if spec.task == "ti2v":
        subject = f"{family.description} stands in place" if spec.character else "a scene of coloured shapes"
        reference = video[0]
    else:
        verb = motions.REAL_VERB if spec.real is not None else motions.MOTIONS[spec.motion].verb
        subject = f"{family.description} {verb}"
        reference = draw(standing, appearance, size, 1).over(background[:1])[0]
    row["caption"] = caption(subject, camera.label, camera.speed, described, rng)
    row["fps"] = fps
    write_video(folder / "video.mp4", video, fps, crf=CRF)
    write_video(folder / "background.mp4", plate, fps, crf=CRF)
    row["background"] = f"{spec.folder}/background.mp4"
    Image.fromarray(reference).save(folder / "reference.png")
    row["reference"] = f"{spec.folder}/reference.png"
    if spec.task == "animation":
        driver = skeleton
        if spec.split != "train":
            # A human-like puppet of its own build performs the same motion in front of its own still scene.
            driver, _, look = _puppet("human", motion, config, rng)
            scene = background_frames(sample_camera("still", size, rng), frames, size, rng)
            write_video(folder / "driving.mp4", draw(driver, look, size, frames).over(scene), fps, crf=CRF)
            row["driving_video"] = f"{spec.folder}/driving.mp4"
        _pose(driver, config).save(folder / "pose.json")
        _pose(standing, config).save(folder / "reference_pose.json")
        row["pose"], row["reference_pose"] = f"{spec.folder}/pose.json", f"{spec.folder}/reference_pose.json"
    points, conf = skeleton.keypoints()
    write_truth(folder / "truth.safetensors", ClipTruth(
        keypoints=points / size, keypoints_conf=conf if spec.character else np.zeros_like(conf),
        labels=layer.labels, alpha=np.round(layer.alpha * 255).astype(np.uint8),
        background_shift=camera.shift(frames), background_scale=camera.scale(frames)))  # fmt: skip
    row["truth"] = f"{spec.folder}/truth.safetensors"
    row["family"] = spec.family if spec.character else None
    row["motion"] = spec.motion
    row["background_motion"] = camera.to_dict()
    row["objects"] = described
    row["character"] = skeleton.body.to_dict() if spec.character else None
    return row


def real_windows(sources: dict[str, motions.Motion], config: BuildConfig) -> dict[str, list[motions.Motion]]:
    """Each real motion cut into clip-length windows; a ValueError names a source shorter than one clip."""
    cut = {}
    for name, motion in sources.items():
        cut[name] = motions.windows(motion, config.frames, config.fps)
        if not cut[name]:
            clip = (config.frames - 1) / config.fps
            raise ValueError(
                f"motion source {name} lasts {motion.time[-1]:.2f} s, shorter than one clip ({clip:.2f} s): use "
                "fewer --frames or a longer source"
            )
    return cut


def build(
    out: str | os.PathLike,
    config: BuildConfig,
    motion_sources: dict[str, motions.Motion] | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> dict:
    """Write a SynthX benchmark to `out` (atomically: it appears complete or not at all). Returns synthx.json's
    contents. `motion_sources` are real motions (`motions.from_pose`) by name; `workers` processes render clips
    (default: up to 2, one per CPU core), with identical output whatever their number."""
    config.check()
    out = check_output(out)
    windows = real_windows(motion_sources or {}, config)
    specs = _plan(config, windows)
    workers = workers or min(2, os.cpu_count() or 1)
    rows: dict[str, list[dict]] = {split: [] for split in SPLITS}
    with atomic_directory(out) as folder:
        render = partial(_render, config=config, root=folder)
        bar = tqdm(total=len(specs), desc="synthx build", unit="clip", disable=not progress)
        if workers == 1:
            results = map(render, specs)
            pool = None
        else:
            # spawn: children import what they need and nothing of the parent's state (threads, open files).
            pool = multiprocessing.get_context("spawn").Pool(workers)
            results = pool.imap(render, specs, chunksize=4)
        try:
            for spec, row in zip(specs, results, strict=True):
                rows[spec.split].append(row)
                bar.update()
        finally:
            bar.close()
            if pool is not None:
                pool.terminate()
        for split in SPLITS:
            text = "".join(json.dumps(row) + "\n" for row in rows[split])
            (folder / METADATA_FILES[split]).write_text(text, encoding="utf-8")
        summary = _summary(config, rows, windows)
        (folder / "synthx.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def _summary(config: BuildConfig, rows: dict[str, list[dict]], windows: dict[str, list[motions.Motion]]) -> dict:
    splits = {}
    for split in SPLITS:
        splits[split] = {
            "metadata": METADATA_FILES[split],
            "clips": len(rows[split]),
            "tasks": dict(sorted(Counter(row["task"] for row in rows[split]).items())),
            "families": dict(sorted(Counter(str(row["family"]) for row in rows[split]).items())),
            "motions": dict(sorted(Counter(row["motion"].split("#")[0] for row in rows[split]).items())),
            "backgrounds": dict(sorted(Counter(row["background_motion"]["label"] for row in rows[split]).items())),
        }
    return {
        "format": FORMAT,
        "generator_version": GENERATOR_VERSION,
        "animatex_pp_version": __version__,
        "seed": config.seed,
        "parameters": asdict(config),
        "crf": CRF,
        "motion_sources": {name: len(cut) for name, cut in windows.items()},
        "families": {name: family.description for name, family in FAMILIES.items()},
        "x_families": list(X_FAMILIES),
        "motions": {name: kind.role for name, kind in motions.MOTIONS.items()},
        "splits": splits,
    }
