"""Clip datasets for both training tasks: pose-driven animation and text-image-to-video (ti2v).

A `ClipDataset` is map-style, indexed by `SampleKey(step, rank, index)` (the `TaskMixingSampler` yields them): the
key's clip is read with a window, a reference frame and an EPI augmentation that are all drawn from `(seed, step,
rank, index)` (`animatex_pp.data.randomness`), so the same key gives the same sample in any process.

A sample holds named tensors; its images are uint8 in [0, 255], converted to floats on the training device by
their consumers (`animatex_pp.data.encode` for the VAE and CLIP, `animatex_pp.training.step` for the pose streams):
a float32 480 x 832 x 81 video would be 388 MB through a loader worker's shared memory and the copy to the device,
its uint8 97 MB, and the floats are the same.

- `frames` uint8 (3, F, H, W): F = `num_frames` (4k + 1) frames at a random stride in [1, `max_stride`] from a
  random start, resized to the clip's resolution bucket with the pipeline's own image processor;
- `reference` uint8 (3, H, W): animation: a random frame of the whole video, inside or outside the window
  (UniAnimate-DiT's practice), or the clip's `reference` image; ti2v: the clip's first frame;
- animation only, all prepared by `animatex_pp.pipelines.conditioning.prepare_pose` (the pipeline's own code) from one
  pose, the window's pose after EPI augmentation: `pose_video` uint8 (3, F, H, W), `pose_keypoints`
  (F, 18, 2) float32 and `reference_pose` uint8 (3, H, W) (the reference frame's own, unaugmented pose); and
  `driving_frames` uint8 (F, H, W, 3), the window's frames, whose CLIP features feed the IPI;
- `caption` (str), `task` (str), `key` (3,) int64 and `replaced` (int): how many clips failed to decode before
  this one was read in their place.

A clip that fails to decode is logged and replaced by another of the same task and bucket; `replaced` carries
the count into the batch, so the trainer can report it from any data worker.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import PIL.Image
import torch
from diffusers.video_processor import VideoProcessor
from torch.utils.data import Dataset, default_collate

from animatex_pp.data.buckets import Bucket, check_buckets, nearest_bucket
from animatex_pp.data.metadata import ClipRecord
from animatex_pp.data.randomness import numpy_generator
from animatex_pp.io.frames import signed_to_uint8
from animatex_pp.io.video import count_selected, iter_video, source_frame_index
from animatex_pp.pipelines.conditioning import prepare_pose
from animatex_pp.pipelines.geometry import VaeFactors
from animatex_pp.pose.augment import EPIAugment
from animatex_pp.pose.sequence import PoseSequence

logger = logging.getLogger(__name__)


class SampleKey(NamedTuple):
    """Which sample a dataset reads, and the step and rank its random choices are drawn for."""

    step: int
    rank: int
    index: int


@dataclasses.dataclass(frozen=True)
class ClipConfig:
    """How clips are cut, resized and augmented (the `data` config group's `clips`)."""

    num_frames: int = 81
    max_stride: int = 1
    buckets: tuple[Bucket, ...] = ((480, 832), (832, 480))
    size_multiple: int = 16
    epi_probability: float = 0.98  # λ: the chance a driving pose is EPI-augmented (Animate-X: at least 0.98)
    epi_rescale_probability: float = 0.5
    epi_drop_probability: float = 0.1
    epi_add_probability: float = 0.1
    epi_pool_clips: int = 32  # animation clips whose poses are the EPI's realignment anchors
    keypoint_conf_threshold: float = 0.3
    max_replacements: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        VaeFactors().check_frame_count(self.num_frames, "num_frames")
        if self.max_stride < 1:
            raise ValueError(f"max_stride must be >= 1, got {self.max_stride}")
        object.__setattr__(self, "buckets", tuple(check_buckets(self.buckets, self.size_multiple)))
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")


@dataclasses.dataclass(frozen=True)
class ClipWindow:
    """Where a sample is cut from its video, on the timeline of the clip's frame rate."""

    start: int
    stride: int
    num_frames: int
    reference: int  # the reference frame (animation) on the same timeline

    @property
    def frames(self) -> np.ndarray:
        return self.start + self.stride * np.arange(self.num_frames)


@dataclasses.dataclass
class RawClip:
    """A decoded clip before augmentation: what precompute stores and both dataset paths start from."""

    frames: np.ndarray  # uint8 (F, H, W, 3) at the bucket size
    reference: np.ndarray  # uint8 (H, W, 3) at the bucket size
    pose: PoseSequence | None  # the window's pose (animation)
    reference_pose: PoseSequence | None  # the reference frame's pose, one frame (animation)


def timeline_length(record: ClipRecord) -> int:
    """Frames of the clip's video at the clip's frame rate (`fps`, else the video's own)."""
    info = record.info
    return count_selected(info.num_frames, info.fps, record.fps, 1, 0, None)


def draw_window(record: ClipRecord, num_frames: int, max_stride: int, rng: np.random.Generator) -> ClipWindow:
    """A random stride (up to what the video's length allows), start and reference frame."""
    length = timeline_length(record)
    longest_stride = min(max_stride, (length - 1) // max(num_frames - 1, 1))
    stride = int(rng.integers(1, longest_stride + 1))
    start = int(rng.integers(0, length - (num_frames - 1) * stride))
    reference = int(rng.integers(0, length))
    if record.task == "ti2v":
        reference = start
    return ClipWindow(start=start, stride=stride, num_frames=num_frames, reference=reference)


def _pose_frames(record: ClipRecord, pose: PoseSequence, timeline: np.ndarray) -> np.ndarray:
    """Pose frame indices for timeline frames (a pose holds one frame per source frame of its video)."""
    target_fps = record.fps or record.info.fps
    source = [source_frame_index(int(frame), record.info.fps, target_fps) for frame in timeline]
    # The container's frame count may exceed the pose's by one (metadata.FRAME_COUNT_TOLERANCE).
    return np.minimum(np.array(source), len(pose) - 1)


def make_epi(pool: list[PoseSequence], config: ClipConfig) -> EPIAugment:
    """The EPI augmentation of `config`, realigning to the anchor poses of `pool`."""
    return EPIAugment(
        pose_pool=pool or None,
        probability=config.epi_probability,
        rescale_probability=config.epi_rescale_probability,
        drop_probability=config.epi_drop_probability,
        add_probability=config.epi_add_probability,
    )


def pose_inputs(
    pose: PoseSequence,
    reference_pose: PoseSequence,
    key: SampleKey,
    epi: EPIAugment,
    config: ClipConfig,
    height: int,
    width: int,
) -> dict[str, torch.Tensor]:
    """The pose streams' tensors of an animation sample, from its window's pose after this key's EPI draw."""
    rng = numpy_generator(config.seed, "epi", key.step, key.rank, key.index)
    augmented = epi.apply(pose, epi.sample(rng))
    prepared = prepare_pose(
        augmented,
        reference_pose,
        len(pose),
        height,
        width,
        use_ipi=True,
        keypoint_conf_threshold=config.keypoint_conf_threshold,
    )
    return {
        # (F, H, W, 3) -> (3, F, H, W), uint8
        "pose_video": torch.from_numpy(prepared.pose_frames).permute(3, 0, 1, 2),
        "pose_keypoints": torch.from_numpy(prepared.keypoints),
        # (H, W, 3) -> (3, H, W), uint8
        "reference_pose": torch.from_numpy(prepared.reference_pose).permute(2, 0, 1),
    }


def to_model_range(frames: np.ndarray, processor: VideoProcessor, height: int, width: int) -> torch.Tensor:
    """uint8 (F, h, w, 3) -> (3, F, H, W) in [-1, 1], resized by the pipeline's own image processor (PIL)."""
    images = [PIL.Image.fromarray(frame) for frame in frames]
    # (1, 3, F, H, W) -> (3, F, H, W)
    return processor.preprocess_video(images, height=height, width=width)[0]


class ClipDataset(Dataset):
    """Animation and ti2v clips of a metadata file, read on the fly; index with a `SampleKey`.

    `poses` maps a record's line to a pose file that replaces (or supplies) its `pose` (precompute extracts the
    missing ones); `reference_poses` likewise for clips with a `reference` image. An animation clip without a pose
    is refused: extract it first (`animatex-pp pose extract`, or `animatex-pp precompute`).
    """

    def __init__(
        self,
        records: Sequence[ClipRecord],
        config: ClipConfig,
        poses: dict[int, str] | None = None,
        reference_poses: dict[int, str] | None = None,
    ):
        self.config = config
        self.processor = VideoProcessor(vae_scale_factor=config.size_multiple)
        poses, reference_poses = poses or {}, reference_poses or {}
        self.records: list[ClipRecord] = []
        self.skipped: list[tuple[int, str]] = []
        for record in records:
            reason = self._unusable(record, poses, reference_poses)
            if reason:
                self.skipped.append((record.line, reason))
                continue
            if record.line in poses:
                record = dataclasses.replace(record, pose=poses[record.line])
            if record.line in reference_poses:
                record = dataclasses.replace(record, reference_pose=reference_poses[record.line])
            self.records.append(record)
        if self.skipped:
            logger.warning(
                "%d clips skipped; first: line %d: %s", len(self.skipped), self.skipped[0][0], self.skipped[0][1]
            )
        if not self.records:
            listed = "; ".join(f"line {line}: {reason}" for line, reason in self.skipped[:5])
            raise ValueError(f"no usable clip for {config.num_frames}-frame samples ({listed})")
        self.tasks = [record.task for record in self.records]
        self.buckets = [nearest_bucket(r.info.height, r.info.width, config.buckets) for r in self.records]
        self.epi = self._make_epi()

    def _unusable(self, record: ClipRecord, poses: dict, reference_poses: dict) -> str | None:
        if timeline_length(record) < self.config.num_frames:
            return f"{timeline_length(record)} frames, fewer than the {self.config.num_frames} a sample takes"
        if record.task != "animation":
            return None
        if record.pose is None and record.line not in poses:
            return "no pose: extract it (`animatex-pp pose extract`, or `animatex-pp precompute`)"
        if record.reference is not None and record.reference_pose is None and record.line not in reference_poses:
            return "a `reference` image without a `reference_pose` file: extract its pose, or run precompute"
        return None

    def _make_epi(self) -> EPIAugment:
        animation = [record for record in self.records if record.task == "animation"]
        pool = [PoseSequence.load(record.pose) for record in animation[: self.config.epi_pool_clips]]
        return make_epi(pool, self.config)

    def __len__(self) -> int:
        return len(self.records)

    def window(self, key: SampleKey) -> ClipWindow:
        rng = numpy_generator(self.config.seed, "window", key.step, key.rank, key.index)
        return draw_window(self.records[key.index], self.config.num_frames, self.config.max_stride, rng)

    def read(self, index: int, window: ClipWindow) -> RawClip:
        """Decode a window, its reference and their poses (raises ValueError/OSError for an unreadable clip)."""
        record = self.records[index]
        height, width = self.buckets[index]
        timeline = window.frames
        wanted = sorted({*timeline.tolist(), window.reference}) if record.reference is None else timeline.tolist()
        first, last = wanted[0], wanted[-1]
        decoded = {}
        for offset, frame in enumerate(
            iter_video(record.video, fps=record.fps, start=first, max_frames=last - first + 1)
        ):
            if first + offset in wanted:
                decoded[first + offset] = frame
        if len(decoded) < len(wanted):
            raise ValueError(f"video {record.video} ended after {first + len(decoded)} of {last + 1} frames")
        frames = np.stack([decoded[frame] for frame in timeline.tolist()])
        if record.reference is None:
            reference = decoded[window.reference]
        else:
            reference = np.asarray(PIL.Image.open(record.reference).convert("RGB"))
        pose = reference_pose = None
        if record.task == "animation":
            full_pose = PoseSequence.load(record.pose)
            pose = full_pose[_pose_frames(record, full_pose, timeline)]
            if record.reference is None:
                reference_pose = full_pose[_pose_frames(record, full_pose, np.array([window.reference]))]
            else:
                reference_pose = PoseSequence.load(record.reference_pose)[:1]
        return RawClip(
            frames=self._resize(frames, height, width),
            reference=self._resize(reference[None], height, width)[0],
            pose=pose,
            reference_pose=reference_pose,
        )

    def _resize(self, frames: np.ndarray, height: int, width: int) -> np.ndarray:
        """uint8 frames -> uint8 frames at the bucket size, through the pipeline's image processor."""
        video = to_model_range(frames, self.processor, height, width)
        # (3, F, H, W) in [-1, 1] -> (F, H, W, 3) uint8
        return signed_to_uint8(video.permute(1, 2, 3, 0)).numpy()

    def sample(self, raw: RawClip, key: SampleKey) -> dict[str, Any]:
        """The named tensors of one sample from its decoded clip."""
        record = self.records[key.index]
        height, width = self.buckets[key.index]
        sample: dict[str, Any] = {
            # (F, H, W, 3) -> (3, F, H, W), uint8
            "frames": torch.from_numpy(raw.frames).permute(3, 0, 1, 2),
            # (H, W, 3) -> (3, H, W), uint8
            "reference": torch.from_numpy(raw.reference).permute(2, 0, 1),
            "caption": record.caption,
            "task": record.task,
            "key": torch.tensor(key, dtype=torch.int64),
        }
        if record.task == "animation":
            sample.update(pose_inputs(raw.pose, raw.reference_pose, key, self.epi, self.config, height, width))
            sample["driving_frames"] = torch.from_numpy(raw.frames)
        return sample

    def replacement(self, key: SampleKey, attempt: int) -> SampleKey:
        """Another clip of the same task and bucket, drawn from the key and the attempt number."""
        group = [
            index
            for index, (task, bucket) in enumerate(zip(self.tasks, self.buckets, strict=True))
            if task == self.tasks[key.index] and bucket == self.buckets[key.index] and index != key.index
        ]
        if not group:
            group = [key.index]
        rng = numpy_generator(self.config.seed, "replacement", key.step, key.rank, key.index, attempt)
        return SampleKey(key.step, key.rank, int(group[rng.integers(len(group))]))

    def __getitem__(self, key: SampleKey | tuple[int, int, int]) -> dict[str, Any]:
        key = SampleKey(*key)
        wanted = key
        for attempt in range(self.config.max_replacements + 1):
            try:
                raw = self.read(key.index, self.window(key))
            except (ValueError, OSError) as error:
                record = self.records[key.index]
                logger.warning("clip %s (line %d) skipped: %s", record.video, record.line, error)
                key = self.replacement(wanted, attempt)
                continue
            sample = self.sample(raw, key)
            sample["replaced"] = attempt
            return sample
        raise RuntimeError(
            f"{self.config.max_replacements + 1} clips in a row failed to decode (starting with line "
            f"{self.records[wanted.index].line}): check the videos with `animatex-pp data check`"
        )


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack a batch's tensors; its strings become lists; `replaced` becomes a count tensor."""
    tasks = {sample["task"] for sample in samples}
    if len(tasks) != 1:
        raise ValueError(f"a batch mixes tasks {sorted(tasks)}: batches must come from the TaskMixingSampler")
    return default_collate(samples)
