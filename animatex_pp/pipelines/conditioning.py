"""The pose streams' inputs, prepared one way for inference and for training.

`AnimateXPipeline` and the training datasets both call `prepare_pose`, so a training sample and an inference call
cannot disagree on what the model sees: the skeleton rendered at the generation size with the stroke widths the
released weights were trained on, the IPI's keypoints, the driving frames whose CLIP features feed the IPI, and the
reference pose, all cut or padded to the frames generated. `clip_pixel_values` is the driving frames' CLIP
preprocessing, shared the same way.
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from transformers.utils.constants import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

from animatex_pp.io.image import read_image
from animatex_pp.io.preview import as_uint8_image, as_uint8_video
from animatex_pp.io.video import IMAGE_SUFFIXES
from animatex_pp.pose.render import render
from animatex_pp.pose.retarget import retarget
from animatex_pp.pose.sequence import PoseSequence

# DWPose draws limbs (half-width) and points (radius) of 4 pixels at the source video's size (`render`'s defaults).
DWPOSE_STROKE_PIXELS = 4


def official_strokes(pose: PoseSequence, height: int, width: int) -> dict[str, int]:
    """Stroke sizes for `render` that match what the released weights were trained on.

    DWPose draws its 4-pixel strokes at the source video's size and the official pipeline then resizes the skeleton
    images to the generation size, so the strokes shrink (or grow) with that resize.
    """
    scale = math.sqrt((height / pose.height) * (width / pose.width))
    stroke = max(1, round(DWPOSE_STROKE_PIXELS * scale))
    return {"stick_width": stroke, "point_radius": stroke}


def resize_frames(frames: np.ndarray, height: int, width: int, chunk: int = 16) -> np.ndarray:
    """uint8 (F, h, w, 3) -> uint8 (F, height, width, 3), bilinear with antialiasing, a few frames at a time."""
    if frames.shape[1:3] == (height, width):
        return frames
    resized = np.empty((len(frames), height, width, 3), np.uint8)
    for start in range(0, len(frames), chunk):
        # (n, h, w, 3) -> (n, 3, h, w)
        batch = torch.from_numpy(np.ascontiguousarray(frames[start : start + chunk])).permute(0, 3, 1, 2).float()
        batch = F.interpolate(batch, size=(height, width), mode="bilinear", antialias=True, align_corners=False)
        # (n, 3, H, W) -> (n, H, W, 3)
        resized[start : start + chunk] = batch.round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()
    return resized


def first_frames(video, count: int):
    """The first `count` frames of a video input, before any conversion ((3, F, H, W) tensors: along axis 1)."""
    return video[:, :count] if isinstance(video, torch.Tensor) else video[:count]


def pad_frames(frames, length: int):
    """Repeat the last frame up to `length` frames (the official script pads short driving videos this way)."""
    missing = length - len(frames)
    if missing <= 0:
        return frames[:length]
    if isinstance(frames, torch.Tensor):
        return torch.cat([frames, frames[-1:].expand(missing, *frames.shape[1:])])
    return np.concatenate([frames, np.repeat(frames[-1:], missing, axis=0)])


def clip_pixel_values(frames: np.ndarray | torch.Tensor, size: int, device=None) -> torch.Tensor:
    """uint8 frames (n, H, W, 3) -> CLIP pixel values (n, 3, size, size), as the official code feeds its CLIP.

    Each frame is squashed to the square input (no crop), scaled to [0, 1] and normalised with CLIP's mean and std.
    """
    frames = torch.as_tensor(frames, device=device)
    mean = torch.tensor(OPENAI_CLIP_MEAN, device=frames.device).view(1, 3, 1, 1)
    std = torch.tensor(OPENAI_CLIP_STD, device=frames.device).view(1, 3, 1, 1)
    # (n, H, W, 3) -> (n, 3, H, W)
    batch = frames.permute(0, 3, 1, 2).float() / 255.0
    batch = F.interpolate(batch, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return (batch - mean) / std


@dataclasses.dataclass
class PreparedPose:
    """Everything the pose streams take, as uint8 frames and float keypoints, for `length` generated frames.

    `pose_frames` and `keypoints` are padded to `length`; `driving_frames` are the real frames only (what CLIP
    encodes; the caller pads the embeddings), so no encoder runs on a repeated frame.
    """

    pose_frames: np.ndarray  # uint8 (length, H, W, 3): the explicit pose video at the generation size
    keypoints: np.ndarray | None  # float32 (length, 18, 2) in [0, 1], -1 where undetected: the IPI input
    driving_frames: np.ndarray | None  # uint8 (n <= length, h, w, 3): the frames whose CLIP features feed the IPI
    reference_pose: np.ndarray | None  # uint8 (H, W, 3): the reference skeleton at the generation size


def read_reference_pose(path: str | os.PathLike, what: str = "reference pose"):
    """A reference skeleton from a file: a saved `PoseSequence` (its first frame is the skeleton) or an image of it.

    `what` names the file in messages."""
    path = Path(path)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return read_image(path, what)
    return PoseSequence.load(path)


def render_reference_pose(reference_pose, height: int, width: int) -> np.ndarray:
    """The reference skeleton (a `PoseSequence`'s first frame, or an image) -> uint8 (H, W, 3), generation size."""
    if isinstance(reference_pose, PoseSequence):
        reference = reference_pose[0]
        return render(reference, height, width, **official_strokes(reference, height, width))[0]
    return resize_frames(as_uint8_image(reference_pose)[None], height, width)[0]


def prepare_pose(
    pose,
    reference_pose,
    length: int,
    height: int,
    width: int,
    driving_video=None,
    use_ipi: bool = True,
    keypoint_conf_threshold: float = 0.3,
    retarget_pose: bool = False,
    keep_missing_parts: bool = False,
) -> PreparedPose:
    """Render or resize the pose video and take the IPI's keypoints and driving frames, for `length` frames.

    `pose` is a `PoseSequence` (rendered; its keypoints feed the IPI) or a rendered pose video (any format
    `as_uint8_video` takes; no keypoints). Without a `driving_video`, CLIP sees the rendered skeletons, which carry
    the motion (docs/pipeline.md). When fewer frames exist than `length`, the last one is repeated. `retarget_pose`
    moves `pose` onto the reference's body first, dropping the parts the reference lacks unless `keep_missing_parts`.
    """
    if retarget_pose:
        pose = retarget(pose, reference_pose[0], keep_missing_parts=keep_missing_parts)
    # A rendered pose video has no keypoints, so the IPI cannot run on it.
    use_ipi = use_ipi and isinstance(pose, PoseSequence)
    keypoints = None
    if isinstance(pose, PoseSequence):
        pose = pose[:length]
        pose_frames = render(pose, height, width, output="np", **official_strokes(pose, height, width))
        if use_ipi:
            keypoints = pad_frames(pose.ipi_keypoints(conf_threshold=keypoint_conf_threshold), length)
    else:
        pose_frames = resize_frames(as_uint8_video(first_frames(pose, length)), height, width)

    driving_frames = None
    if use_ipi:
        driving_frames = pose_frames if driving_video is None else as_uint8_video(first_frames(driving_video, length))
    reference = None if reference_pose is None else render_reference_pose(reference_pose, height, width)
    return PreparedPose(
        pose_frames=pad_frames(pose_frames, length),
        keypoints=keypoints,
        driving_frames=driving_frames,
        reference_pose=reference,
    )
