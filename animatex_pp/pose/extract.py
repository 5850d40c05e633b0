"""`extract`: a video, an image or frames in, a `PoseSequence` of one tracked person out.

Backends share one small interface (`PoseBackend`): called on an RGB uint8 frame they return that frame's
`PoseSequence` fields (normalised coordinates and confidences); `reset()` forgets the tracked person; `close()`
releases resources. `extract` accepts a backend name or any object with that interface, and runs it through
`views.MultiScaleBackend` (each frame at a size the backend works at, retried at another scale and in crops when
nobody is found); frames where nobody is found are logged as a warning naming the input. Still images, from a file
or as PIL images, are seen as a viewer shows them (`animatex_pp.io.image`: upright, 16-bit levels scaled rather
than clipped, transparency composited on white), so the backend looks at the picture the user sees.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from animatex_pp.io.image import read_image, to_rgb
from animatex_pp.io.video import (
    IMAGE_SUFFIXES,
    check_selection,
    count_selected,
    iter_video,
    selected_fps,
    video_info,
)
from animatex_pp.pose.report import warn_missing
from animatex_pp.pose.sequence import PoseSequence
from animatex_pp.pose.views import MultiScaleBackend

__all__ = ["BACKENDS", "PoseBackend", "extract", "make_backend"]

BACKENDS = ("dwpose", "mediapipe")


class PoseBackend(Protocol):
    name: str

    def __call__(self, frame: np.ndarray) -> dict[str, np.ndarray]: ...

    def reset(self) -> None: ...

    def close(self) -> None: ...


def make_backend(name: str, **options) -> PoseBackend:
    """A backend by name: `dwpose` (options det_model, pose_model, providers, ...) or `mediapipe` (hands, ...)."""
    if name == "dwpose":
        missing = [key for key in ("det_model", "pose_model") if options.get(key) is None]
        if missing:
            raise ValueError(
                f"the dwpose backend needs {' and '.join(missing)}: paths of yolox_l.onnx and dw-ll_ucoco_384.onnx"
            )
        from animatex_pp.pose.dwpose import DWPoseBackend

        return DWPoseBackend(**options)
    if name == "mediapipe":
        from animatex_pp.pose.mediapipe_backend import MediaPipeBackend

        return MediaPipeBackend(**options)
    raise ValueError(f"unknown pose backend {name!r}: choose one of {', '.join(BACKENDS)}")


def _as_rgb(frame, index: int) -> np.ndarray:
    if isinstance(frame, Image.Image):
        return np.asarray(to_rgb(frame))
    frame = np.asarray(frame)
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(
            f"frame {index} must be an RGB uint8 array (height, width, 3), got {frame.dtype} {frame.shape}"
        )
    return frame


def _frames_source(
    video_or_frames, fps: float | None, stride: int, start: int, max_frames: int | None
) -> tuple[Iterator[np.ndarray], int | None, float | None, bool]:
    """(frames, how many if known, fps of those frames, whether the input is one still image)."""
    if isinstance(video_or_frames, (str, os.PathLike)):
        path = Path(video_or_frames)
        if not path.exists():
            raise FileNotFoundError(f"input not found: {path}")
        if path.suffix.lower() in IMAGE_SUFFIXES:
            return iter([np.asarray(read_image(path))]), 1, None, True
        frames = iter_video(path, fps=fps, stride=stride, start=start, max_frames=max_frames)
        info = video_info(path)
        # The header's frame count may be missing (0): then the progress bar just counts.
        total = count_selected(info.num_frames, info.fps, fps, stride, start, max_frames) if info.num_frames else None
        return frames, total, selected_fps(info.fps, fps, stride), False
    if isinstance(video_or_frames, Image.Image) or (
        isinstance(video_or_frames, np.ndarray) and video_or_frames.ndim == 3
    ):
        return iter([_as_rgb(video_or_frames, 0)]), 1, fps, True
    if isinstance(video_or_frames, (np.ndarray, Sequence)):
        check_selection(fps, stride, start, max_frames)
        selected = video_or_frames[start::stride][:max_frames]
        return (_as_rgb(f, i) for i, f in enumerate(selected)), len(selected), fps and fps / stride, False
    raise TypeError(
        "extract takes a video or image path, an RGB uint8 array (H, W, 3) or (F, H, W, 3), a PIL image, "
        f"or a sequence of frames; got {type(video_or_frames).__name__}"
    )


def extract(
    video_or_frames: str | os.PathLike | np.ndarray | Image.Image | Sequence[np.ndarray | Image.Image],
    backend: str | PoseBackend = "mediapipe",
    *,
    fps: float | None = None,
    stride: int = 1,
    start: int = 0,
    max_frames: int | None = None,
    progress: bool = True,
    name: str | None = None,
    **backend_options,
) -> PoseSequence:
    """Keypoints of one person in every selected frame.

    `video_or_frames`: a video file, an image file, an RGB uint8 image or frames array, a PIL image, or a list of
    frames. `fps`: for a video file, the rate to resample to (None keeps the file's); for frames in memory, their
    rate (stored in the result). `stride`, `start`, `max_frames` select frames as `read_video` does. `backend`:
    `"mediapipe"` (default; option `hands=True`) or `"dwpose"` (options `det_model=`, `pose_model=` paths), or a
    backend object. When several people appear, one is followed throughout: the largest, most central at first.
    `name`: what the warning about frames with nobody calls the input (default: its path, else "the frames given").
    Frames are shown to the backend at most `views.MAX_SIDE` pixels long; a frame where nobody is found is tried
    again at another scale and in crops, and points are mapped back to the frame's own coordinates.
    """
    frames, total, out_fps, still = _frames_source(video_or_frames, fps, stride, start, max_frames)
    if isinstance(backend, str):
        if backend == "mediapipe":
            backend_options.setdefault("static_image_mode", still)
        # A new backend tracks no one yet: no reset (for MediaPipe a reset would build its graph a second time).
        backend_object, owned = make_backend(backend, **backend_options), True
    else:
        if backend_options:
            raise ValueError(f"backend options {sorted(backend_options)} apply only to a backend given by name")
        backend_object, owned = backend, False
        # A backend passed in may still follow the person of its previous input.
        backend_object.reset()
    try:
        pose = _run(MultiScaleBackend(backend_object), frames, total, out_fps, progress)
    finally:
        if owned:
            backend_object.close()
    if name is None:
        name = str(video_or_frames) if isinstance(video_or_frames, (str, os.PathLike)) else "the frames given"
    warn_missing(pose, name, backend_object.name)
    return pose


def _run(backend: PoseBackend, frames: Iterable[np.ndarray], total: int | None, fps, progress: bool) -> PoseSequence:
    per_frame: list[dict[str, np.ndarray]] = []
    size = None
    for index, frame in enumerate(tqdm(frames, total=total, desc=f"pose ({backend.name})", unit="frame",
                                       disable=not progress)):  # fmt: skip
        if size is None:
            size = frame.shape[:2]
        elif frame.shape[:2] != size:
            raise ValueError(f"frame {index} is {frame.shape[:2]} but frame 0 is {size}: all frames need one size")
        per_frame.append(backend(frame))
    if not per_frame:
        raise ValueError("no frames to extract poses from: the input is empty or the selection skips every frame")
    # F x (points..., 2) or (points...) per field -> (F, points..., 2) or (F, points...)
    stacked = {name: np.stack([frame[name] for frame in per_frame]) for name in per_frame[0]}
    height, width = size
    return PoseSequence(**stacked, width=width, height=height, fps=fps)
