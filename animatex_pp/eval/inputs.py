"""The clips of a split as the evaluation sees them: planned and checked before any model loads, then read one by one.

`plan_clips` resolves every row of a metadata file (`animatex_pp.data.metadata`: `reference_pose` is one of its
fields; `driving_video`, `truth` and `background` are extras SynthX writes) to an `EvalClip`: its id, the frame
count it is generated at (the shortest of its video, pose, driving video and background plate, as 4k+1) and the
background motion its caption asks for. `read_inputs` reads one clip: frames, reference, the driving pose the run
asked for (`animatex_pp.eval.driving`), and from the ground truth the masks and the background plate.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import PIL.Image

from animatex_pp.data.metadata import ClipRecord, read_metadata
from animatex_pp.eval.driving import drive
from animatex_pp.eval.motion import expected_motion_label
from animatex_pp.io.preview import as_uint8_image
from animatex_pp.io.video import read_video, video_info
from animatex_pp.pipelines.geometry import PipelineGeometry
from animatex_pp.pose.sequence import PoseSequence

__all__ = ["ClipInputs", "EvalClip", "check_sizes", "plan_clips", "read_inputs"]


@dataclasses.dataclass(frozen=True)
class EvalClip:
    """One clip to evaluate, resolved and checked before any model loads."""

    id: str
    record: ClipRecord
    num_frames: int
    driving_video: Path | None
    truth: Path | None
    background: Path | None
    expected_motion: str | None

    @property
    def mode(self) -> str:
        """The row's task ("animation" or "ti2v"): the pipeline mode of a model with pose streams."""
        return self.record.task

    @property
    def reference_pose(self) -> Path | None:
        return self.record.reference_pose

    @property
    def height(self) -> int:
        return self.record.info.height

    @property
    def width(self) -> int:
        return self.record.info.width


@dataclasses.dataclass(frozen=True)
class ClipInputs:
    """One clip's inputs and ground truth, cut to its frame count; frames uint8, masks bool.

    `pose` is the driving pose fed (retargeted or raw) and `driving` its record; `foreground` (character and moving
    objects) is what background motion leaves out; `character` the character's own masks; `plate` the background
    plate. Each is None where the clip does not have it.
    """

    truth: np.ndarray  # (F, H, W, 3): the clip's video
    reference: np.ndarray  # (H, W, 3) at the clip's size
    pose: PoseSequence | None
    reference_pose: PoseSequence | None
    driving_video: np.ndarray | None  # (F, H, W, 3)
    driving: dict[str, Any] | None
    foreground: np.ndarray | None  # (F, H, W)
    character: np.ndarray | None  # (F, H, W)
    plate: np.ndarray | None  # (F, H, W, 3)
    expected_motion: str | None


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


def check_sizes(clips: list[EvalClip], multiple: int, metadata: Path, model: str = "the model") -> None:
    """Refuse a clip whose size is not a multiple of what `model` generates."""
    for clip in clips:
        if clip.height % multiple or clip.width % multiple:
            raise ValueError(
                f"line {clip.record.line} of {metadata}: the clip is {clip.height}x{clip.width} but {model} generates "
                f"multiples of {multiple}: resize the split's videos (and references) to a multiple"
            )


def plan_clips(metadata: Path, geometry: PipelineGeometry, limit: int | None = None) -> list[EvalClip]:
    """Every clip of `metadata` (its first `limit`), checked: files exist, poses load, sizes fit the model."""
    report = read_metadata(metadata)
    if report.problems:
        raise ValueError(
            f"{metadata} has {len(report.problems)} bad row(s); a split is scored whole, so fix them first "
            f"(`animatex-pp data check {metadata}` lists them):\n{report.problem_list()}"
        )
    if not report.clips:
        raise ValueError(f"{metadata} holds no clip")
    root = metadata.resolve().parent
    clips, seen = [], set()
    for record in report.clips[:limit]:
        clip_id = _clip_id(record, root)
        if clip_id in seen:
            raise ValueError(f"line {record.line} of {metadata}: clip id {clip_id!r} appears twice")
        seen.add(clip_id)
        if record.task == "animation" and record.pose is None:
            raise ValueError(
                f"line {record.line} of {metadata}: an animation clip needs a `pose` file to be evaluated: extract "
                "one with `animatex-pp pose extract`"
            )
        driving_video = _optional_file(root, record, "driving_video")
        truth = _optional_file(root, record, "truth")
        background = _optional_file(root, record, "background")
        info = record.info
        lengths = [info.num_frames]
        if record.task == "animation":
            lengths.append(len(PoseSequence.load(record.pose)))
            if driving_video is not None and video_info(driving_video).num_frames:
                lengths.append(video_info(driving_video).num_frames)
        if background is not None:
            plate = video_info(background)
            if (plate.height, plate.width) != (info.height, info.width):
                raise ValueError(
                    f"line {record.line} of {metadata}: the background plate {background} is {plate.height}x"
                    f"{plate.width} but its clip is {info.height}x{info.width}: rebuild the split"
                )
            if plate.num_frames:
                lengths.append(plate.num_frames)
        # Wan generates 4k+1 frames: the longest such count every input has.
        num_frames = geometry.factors.round_down(min(lengths))
        camera = record.extra.get("background_motion")
        expected = expected_motion_label(record.caption)
        if expected is None and isinstance(camera, dict):
            expected = camera.get("label")
        if num_frames < 2:  # a motion needs two frames
            expected = None
        clips.append(EvalClip(clip_id, record, num_frames, driving_video, truth, background, expected))
    check_sizes(clips, geometry.size_multiple, metadata)
    return clips


def _resized(image: np.ndarray, height: int, width: int) -> np.ndarray:
    if image.shape[:2] == (height, width):
        return image
    return np.asarray(PIL.Image.fromarray(image).resize((width, height), PIL.Image.BICUBIC))


def _masks(masks: np.ndarray, frames: np.ndarray) -> np.ndarray | None:
    """Ground-truth masks cut to the clip, or None when they are not the clip's size (then nothing is measured on
    them, rather than on masks of another clip)."""
    masks = masks[: len(frames)]
    return masks if masks.shape == frames.shape[:3] else None


def read_inputs(clip: EvalClip, driving: str) -> ClipInputs:
    """The clip's frames, reference, poses (the driving pose as `driving` asks), driving frames and ground truth,
    all cut to `clip.num_frames`."""
    from animatex_pp.io.image import read_image
    from animatex_pp.synthx.truth import read_truth

    record = clip.record
    truth_frames, _ = read_video(record.video, max_frames=clip.num_frames)
    # Without a reference image the clip's first frame is the reference, as the training data takes it.
    reference = truth_frames[0] if record.reference is None else as_uint8_image(read_image(record.reference))
    truth = None if clip.truth is None else read_truth(clip.truth)
    pose = reference_pose = driving_video = record_of_driving = None
    if clip.mode == "animation":
        reference_pose = None if clip.reference_pose is None else PoseSequence.load(clip.reference_pose)
        raw = PoseSequence.load(record.pose)[: clip.num_frames]
        pose, record_of_driving = drive(raw, reference_pose, driving, truth, clip.height, clip.width)
        # Without a driving video the clip's own frames feed the IPI, as in training and in self-driven
        # reconstruction (the protocol of Animate-X's tables).
        driving_video = read_video(clip.driving_video or record.video, max_frames=clip.num_frames)[0]
    plate = None
    if clip.background is not None:
        plate = read_video(clip.background, max_frames=clip.num_frames)[0]
        if plate.shape != truth_frames.shape:
            raise ValueError(
                f"the background plate {clip.background} has {len(plate)} frames but clip {clip.id} needs "
                f"{len(truth_frames)}: rebuild the split"
            )
    return ClipInputs(
        truth=truth_frames,
        reference=_resized(reference, clip.height, clip.width),
        pose=pose,
        reference_pose=reference_pose,
        driving_video=driving_video,
        driving=record_of_driving,
        foreground=None if truth is None else _masks(truth.foreground_masks(), truth_frames),
        character=None if truth is None else _masks(truth.character_masks(), truth_frames),
        plate=plate,
        expected_motion=clip.expected_motion,
    )
