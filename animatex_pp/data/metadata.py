"""Training metadata: the clip list a dataset is built from, read from JSONL or CSV and checked before any decoding.

One clip per line (docs/data.md):

    {"video": "clips/0001.mp4", "task": "animation", "caption": "a person dances", "pose": "poses/0001.npz"}
    {"video": "clips/0002.mp4", "task": "ti2v", "caption": "the background drifts left", "fps": 16}

`video`, `task` ("animation" | "ti2v") and `caption` (required non-empty for ti2v, whose only driving signal it is)
are required; `pose` (a `PoseSequence` file; extracted at precompute when absent), `reference` (an image; else a
frame of the same video), `reference_pose` (the reference image's skeleton) and `fps` are optional; other keys are
kept in `ClipRecord.extra` for tools built on top (SynthX keeps its ground truth there). Paths are relative to the
metadata file.

Every row is checked (files exist, the task is known, the pose file loads and has its video's frame count, the
video's header reads) and each bad row becomes a `MetadataProblem` with its line number: `read_metadata` never
raises for a bad row, `load_metadata` refuses only when nothing usable is left.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
import os
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from animatex_pp.io.video import IMAGE_SUFFIXES, VideoInfo, video_info
from animatex_pp.pose.sequence import PoseSequence

logger = logging.getLogger(__name__)

TASKS = ("animation", "ti2v")
FIELDS = ("video", "task", "caption", "pose", "reference", "reference_pose", "fps")
METADATA_SUFFIXES = (".jsonl", ".csv")
# A container's frame count can be an estimate from its duration; a pose extracted from the same video may differ
# from it by a frame without being the wrong pose.
FRAME_COUNT_TOLERANCE = 1
# How many problems a refusal lists before it says "and N more".
PROBLEMS_SHOWN = 20


@dataclasses.dataclass(frozen=True)
class ClipRecord:
    """One usable row: resolved paths and the video's header facts."""

    line: int
    video: Path
    task: str
    caption: str
    info: VideoInfo
    pose: Path | None = None
    reference: Path | None = None
    reference_pose: Path | None = None
    fps: float | None = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        return self.info.num_frames / self.info.fps


@dataclasses.dataclass(frozen=True)
class MetadataProblem:
    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclasses.dataclass
class MetadataReport:
    """What a metadata file holds: its usable clips and its bad rows."""

    path: Path
    clips: list[ClipRecord]
    problems: list[MetadataProblem]

    @property
    def num_rows(self) -> int:
        return len(self.clips) + len(self.problems)

    def clips_of(self, task: str) -> list[ClipRecord]:
        return [clip for clip in self.clips if clip.task == task]

    def problem_list(self, limit: int = PROBLEMS_SHOWN) -> str:
        lines = [f"  {problem}" for problem in self.problems[:limit]]
        if len(self.problems) > limit:
            lines.append(f"  ... and {len(self.problems) - limit} more")
        return "\n".join(lines)

    def summary_table(self) -> str:
        """A markdown table: clips, total duration, frame counts and the most common resolutions, per task."""
        rows = ["| task | clips | duration | frames (min / median / max) | resolutions (H x W: clips) |"]
        rows.append("|---|---|---|---|---|")
        for task in TASKS:
            clips = self.clips_of(task)
            if not clips:
                rows.append(f"| {task} | 0 | - | - | - |")
                continue
            frames = np.array([clip.info.num_frames for clip in clips])
            sizes = Counter(f"{clip.info.height}x{clip.info.width}" for clip in clips).most_common(3)
            duration = sum(clip.duration_s for clip in clips)
            rows.append(
                f"| {task} | {len(clips)} | {duration:.1f} s | {frames.min()} / {int(np.median(frames))} / "
                f"{frames.max()} | {', '.join(f'{size}: {count}' for size, count in sizes)} |"
            )
        return "\n".join(rows)

    def require_usable(self) -> None:
        """Raise a ValueError listing the problems when no clip is usable; log the skip count otherwise."""
        if not self.clips:
            raise ValueError(
                f"{self.path} has no usable clip ({self.num_rows} rows, {len(self.problems)} bad):\n"
                f"{self.problem_list()}\nfix these rows (`animatex-pp data check {self.path}` lists them all)"
            )
        if self.problems:
            logger.warning(
                "%s: %d of %d rows skipped (run `animatex-pp data check %s` for the list); first: %s",
                self.path,
                len(self.problems),
                self.num_rows,
                self.path,
                self.problems[0],
            )


def _rows(path: Path) -> list[tuple[int, dict[str, Any] | str]]:
    """(line number, row) pairs; a row that cannot be parsed is its error message instead."""
    if path.suffix.lower() == ".csv":
        with open(path, newline="", encoding="utf-8") as file:
            reader = csv.DictReader(file)
            rows = []
            for row in reader:
                if None in row:
                    rows.append((reader.line_num, f"more values than the {len(reader.fieldnames)} header columns"))
                    continue
                # An empty CSV cell is an absent optional field.
                rows.append((reader.line_num, {key: value for key, value in row.items() if value not in ("", None)}))
            return rows
    rows = []
    with open(path, encoding="utf-8") as file:
        for number, text in enumerate(file, start=1):
            if not text.strip():
                continue
            try:
                row = json.loads(text)
            except json.JSONDecodeError as error:
                rows.append((number, f"not valid JSON ({error.msg} at column {error.colno})"))
                continue
            rows.append((number, row if isinstance(row, dict) else f"a JSON {type(row).__name__}, not an object"))
    return rows


def _existing_file(root: Path, value: Any, name: str) -> Path:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"`{name}` must be a path, got {value!r}")
    path = Path(value) if os.path.isabs(value) else (root / value).resolve()
    if not path.is_file():
        raise ValueError(f"{name} file not found: {path}")
    return path


def _record(root: Path, line: int, row: dict[str, Any]) -> ClipRecord:
    """Check one row and resolve it into a record; a ValueError says what is wrong with it."""
    missing = [name for name in ("video", "task") if name not in row]
    if missing:
        raise ValueError(f"missing required field {', '.join(f'`{name}`' for name in missing)}")
    task = row["task"]
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}: use one of {', '.join(TASKS)}")
    caption = row.get("caption", "")
    if not isinstance(caption, str):
        raise ValueError(f"`caption` must be text, got {caption!r}")
    if task == "ti2v" and not caption.strip():
        raise ValueError("empty caption: a ti2v clip needs one (the caption is what drives its motion)")
    fps = row.get("fps")
    if fps is not None:
        try:
            fps = float(fps)
        except (TypeError, ValueError):
            raise ValueError(f"`fps` must be a number, got {fps!r}") from None
        if not (math.isfinite(fps) and fps > 0):
            raise ValueError(f"`fps` must be a positive number, got {fps}")

    video = _existing_file(root, row["video"], "video")
    try:
        info = video_info(video)
    except (ValueError, OSError) as error:
        raise ValueError(f"video {video} cannot be read ({error})") from None
    if info.num_frames < 1:
        raise ValueError(f"video {video} has no frames")

    pose = None
    if "pose" in row:
        pose = _existing_file(root, row["pose"], "pose")
        try:
            pose_frames = len(PoseSequence.load(pose))
        except ValueError as error:
            raise ValueError(f"pose file {pose} cannot be loaded ({error})") from None
        if abs(pose_frames - info.num_frames) > FRAME_COUNT_TOLERANCE:
            raise ValueError(
                f"pose file {pose} has {pose_frames} frames but its video has {info.num_frames}: extract the pose "
                "from this video again (`animatex-pp pose extract`)"
            )
    reference = None
    if "reference" in row:
        reference = _existing_file(root, row["reference"], "reference")
        if reference.suffix.lower() not in IMAGE_SUFFIXES:
            raise ValueError(f"reference {reference} is not an image ({', '.join(sorted(IMAGE_SUFFIXES))})")
    reference_pose = None
    if "reference_pose" in row:
        reference_pose = _existing_file(root, row["reference_pose"], "reference_pose")
        try:
            PoseSequence.load(reference_pose)
        except ValueError as error:
            raise ValueError(f"reference pose file {reference_pose} cannot be loaded ({error})") from None
    extra = {key: value for key, value in row.items() if key not in FIELDS}
    return ClipRecord(line, video, task, caption, info, pose=pose, reference=reference, reference_pose=reference_pose,
                      fps=fps, extra=extra)  # fmt: skip


def read_metadata(path: str | os.PathLike) -> MetadataReport:
    """Read and check every row of a JSONL or CSV metadata file; bad rows become problems, never exceptions.

    Raises FileNotFoundError for a missing file and ValueError for a file that is not .jsonl or .csv.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"metadata file not found: {path}")
    if path.suffix.lower() not in METADATA_SUFFIXES:
        raise ValueError(f"metadata must be a .jsonl or .csv file, got {path}")
    root = path.resolve().parent
    clips, problems = [], []
    for line, row in _rows(path):
        if isinstance(row, str):
            problems.append(MetadataProblem(line, row))
            continue
        try:
            clips.append(_record(root, line, row))
        except ValueError as error:
            problems.append(MetadataProblem(line, str(error)))
    return MetadataReport(path=path, clips=clips, problems=problems)


def load_metadata(path: str | os.PathLike) -> list[ClipRecord]:
    """The usable clips of a metadata file; refuses (ValueError with the problem list) when there are none."""
    report = read_metadata(path)
    report.require_usable()
    return report.clips
