"""Video files in and out, through PyAV (its wheels carry FFmpeg and libx264, so no system FFmpeg is needed).

Frames are RGB uint8 arrays `(frames, height, width, 3)`. Reading streams: frames are decoded one at a time and only
the selected ones are kept, so a long video costs the memory of what is returned, not of the whole file.

Frames come out upright, as a player shows them: a rotation in the file's display matrix (phone videos shot in
portrait are stored landscape with a 90-degree rotation) is applied when decoding, and `video_info` reports the
displayed size.

Frame selection, in this order: resample to `fps` (the source frame on screen at each output time; repeats frames
when `fps` exceeds the source rate), skip the first `start` frames of that sequence, keep every `stride`-th, stop
after `max_frames`.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from animatex_pp.io.files import atomic_output

__all__ = [
    "DEFAULT_FPS",
    "IMAGE_SUFFIXES",
    "VideoInfo",
    "check_selection",
    "count_selected",
    "iter_video",
    "read_video",
    "selected_fps",
    "source_frame_index",
    "video_info",
    "write_video",
]

# Still-image files that the commands take where a video is also accepted (everything else is read as a video).
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"})
# Frame rate for frames that have none of their own (a single image, a pose without fps): Wan2.1's rate, at which
# the base model was trained and generates.
DEFAULT_FPS = 16.0


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about a video's first video stream (`num_frames` may be an estimate)."""

    num_frames: int
    fps: float
    height: int
    width: int


def source_frame_index(index: int, source_fps: float, target_fps: float) -> int:
    """The source frame shown at output frame `index` when a `source_fps` video is played at `target_fps`.

    The frame on screen at that moment, as a player shows it: each source frame lasts 1 / source_fps, so halving
    the rate keeps every other frame and doubling it shows each frame twice. Pose sequences resample with the same
    rule, which keeps poses and video frames aligned.
    """
    # The small epsilon keeps exact multiples (3.0 computed as 2.9999999) on their frame.
    return int(math.floor(index * source_fps / target_fps + 1e-6))


def _check_readable(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"video file not found: {path}")
    if not path.is_file():
        raise ValueError(f"{path} is not a file: give the path of a video file")
    if path.stat().st_size == 0:
        raise ValueError(f"video file {path} is empty (0 bytes): re-export or re-download it")
    return path


def _open(path: Path) -> av.container.InputContainer:
    try:
        container = av.open(str(path))
    except av.FFmpegError as error:
        raise ValueError(f"cannot read video file {path}: it is corrupt or not a video ({error})") from error
    if not container.streams.video:
        container.close()
        raise ValueError(f"{path} has no video stream")
    if container.streams.video[0].codec_context is None:
        container.close()
        raise ValueError(f"cannot read video file {path}: its video stream is corrupt or truncated (no codec)")
    return container


def _upright(image: np.ndarray, rotation: float) -> np.ndarray:
    """Apply a frame's display rotation (degrees counter-clockwise, PyAV's `VideoFrame.rotation`) to its pixels."""
    quarter_turns = round(rotation / 90) % 4
    # np.rot90 turns counter-clockwise, as the display matrix does.
    return np.ascontiguousarray(np.rot90(image, quarter_turns)) if quarter_turns else image


def _stream_fps(stream: av.video.stream.VideoStream, path: Path) -> float:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    if not rate or float(rate) <= 0:
        raise ValueError(f"{path} does not state its frame rate: re-encode it with a constant frame rate")
    return float(rate)


def video_info(path: str | os.PathLike) -> VideoInfo:
    """Frame count, frame rate and displayed size of a video, from its header and its first frame's rotation."""
    path = _check_readable(path)
    container = _open(path)
    with container:
        stream = container.streams.video[0]
        fps = _stream_fps(stream, path)
        num_frames = stream.frames
        if not num_frames and stream.duration is not None:
            num_frames = round(float(stream.duration * stream.time_base) * fps)
        height, width = stream.codec_context.height, stream.codec_context.width
        # The display matrix reaches the frames, not the header PyAV exposes: decode one frame to read it.
        try:
            rotation = next(container.decode(stream)).rotation
        except (StopIteration, av.FFmpegError):
            rotation = 0  # nothing decodable: the readers report that when they are asked for frames
        if round(rotation / 90) % 2:
            height, width = width, height
        return VideoInfo(num_frames=int(num_frames or 0), fps=fps, height=height, width=width)


def check_selection(fps: float | None, stride: int, start: int, max_frames: int | None) -> None:
    """Raise a ValueError naming the first frame-selection argument out of range."""
    if fps is not None and not fps > 0:
        raise ValueError(f"fps must be a positive number or None (the video's own rate), got {fps}")
    # numbers.Integral also admits numpy integers (a frame count computed with numpy).
    if not isinstance(stride, numbers.Integral) or stride < 1:
        raise ValueError(f"stride must be an integer >= 1, got {stride!r}")
    if not isinstance(start, numbers.Integral) or start < 0:
        raise ValueError(f"start must be an integer >= 0, got {start!r}")
    if max_frames is not None and (not isinstance(max_frames, numbers.Integral) or max_frames < 1):
        raise ValueError(f"max_frames must be an integer >= 1 or None, got {max_frames!r}")


def count_selected(
    num_frames: int, source_fps: float, fps: float | None, stride: int, start: int, max_frames: int | None
) -> int:
    """How many frames `iter_video` yields from a video of `num_frames` frames for these selection arguments."""
    target_fps = fps or source_fps
    resampled = math.ceil(num_frames * target_fps / source_fps) + 1
    while resampled > 0 and source_frame_index(resampled - 1, source_fps, target_fps) >= num_frames:
        resampled -= 1
    count = max(0, -(-(resampled - start) // stride))
    return count if max_frames is None else min(count, max_frames)


def selected_fps(source_fps: float, fps: float | None, stride: int) -> float:
    """The frame rate of the frames `iter_video`/`read_video` return for these selection arguments."""
    return (fps or source_fps) / stride


def iter_video(
    path: str | os.PathLike,
    fps: float | None = None,
    stride: int = 1,
    start: int = 0,
    max_frames: int | None = None,
) -> Iterator[np.ndarray]:
    """Yield the selected frames of a video as RGB uint8 arrays `(height, width, 3)`, decoding as it goes.

    Arguments are checked and the file's header is read before the first frame is asked for, so that a bad call fails
    at once rather than inside a consumer's loop. The file stays open only while frames are being read: a generator
    that is never iterated holds nothing open.
    """
    check_selection(fps, stride, start, max_frames)
    source_fps = video_info(path).fps
    return _decode_selected(Path(path), source_fps, fps, stride, start, max_frames)


def _decode_selected(
    path: Path, source_fps: float, fps: float | None, stride: int, start: int, max_frames: int | None
) -> Iterator[np.ndarray]:
    target_fps = fps or source_fps

    # Output frame k shows resampled frame start + k * stride, which is source frame source_frame_index(...).
    def wanted(k: int) -> int:
        return source_frame_index(start + k * stride, source_fps, target_fps)

    # Opened here, in the generator body, so the `with` closes it when the generator ends, is closed or is collected.
    with _open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        returned = 0
        decoded = 0
        next_source = wanted(0)
        try:
            for source_index, frame in enumerate(container.decode(stream)):
                decoded = source_index + 1
                if source_index < next_source:
                    continue
                image = _upright(frame.to_ndarray(format="rgb24"), frame.rotation)
                # Upsampling can show one source frame at several output frames.
                while next_source == source_index:
                    yield image
                    returned += 1
                    if max_frames is not None and returned >= max_frames:
                        return
                    next_source = wanted(returned)
        except av.FFmpegError as error:
            raise ValueError(
                f"video file {path} is corrupt: decoding failed after {returned} frames ({error})"
            ) from error
        # A file cut short can decode without an error: its header's frame count is the only sign (0 when unknown).
        if stream.frames:
            expected = count_selected(stream.frames, source_fps, fps, stride, start, max_frames)
            if returned < expected:
                raise ValueError(
                    f"video file {path} decoded {returned} of {expected} frames: the file is truncated or corrupt "
                    f"(its header lists {stream.frames} frames, {decoded} could be decoded); re-export or "
                    "re-download it"
                )


def read_video(
    path: str | os.PathLike,
    fps: float | None = None,
    stride: int = 1,
    start: int = 0,
    max_frames: int | None = None,
) -> tuple[np.ndarray, float]:
    """Read a video into RGB uint8 frames `(frames, height, width, 3)` and the frame rate of those frames.

    `fps` resamples in time (None keeps the video's rate); then `start` frames are skipped, every `stride`-th frame
    is kept, up to `max_frames`. The returned rate is `(fps or the video's rate) / stride`. A missing file raises
    FileNotFoundError; an empty, corrupt or non-video file, or a selection with no frames, raises ValueError.
    """
    check_selection(fps, stride, start, max_frames)
    source_fps = video_info(path).fps
    frames = list(_decode_selected(Path(path), source_fps, fps, stride, start, max_frames))
    if not frames:
        raise ValueError(
            f"no frames selected from {path}: start={start} is past the end of the video "
            f"(resampled to {fps or source_fps:g} fps); use a smaller start"
        )
    return np.stack(frames), selected_fps(source_fps, fps, stride)


def _as_frame_array(frame: np.ndarray, index: int, size: tuple[int, int] | None) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(
            f"frame {index} must be an RGB uint8 array (height, width, 3), got {frame.dtype} {frame.shape}: "
            "convert with (frame * 255).round().astype(np.uint8) if it holds floats in [0, 1]"
        )
    if size is not None and frame.shape[:2] != size:
        raise ValueError(f"frame {index} is {frame.shape[:2]} but frame 0 is {size}: all frames need one size")
    return frame


def write_video(path: str | os.PathLike, frames: np.ndarray | Iterable[np.ndarray], fps: float, crf: int = 18) -> Path:
    """Write RGB uint8 frames to an H.264 MP4 (yuv420p, plays everywhere), atomically.

    The video is written to a temporary file beside `path` and renamed over it when complete, so a reader never
    sees a half-written file and an interrupted write leaves the old file (if any) in place. `crf` is x264's
    quality (0 lossless-ish, 18 visually lossless, 23 its default). Returns the path written.
    """
    path = Path(path)
    if not fps > 0:
        raise ValueError(f"fps must be a positive number, got {fps}")
    if path.suffix.lower() != ".mp4":
        raise ValueError(f"write_video writes MP4 files: give a path ending in .mp4, got {path}")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"folder {path.parent} does not exist: create it before writing {path.name}")
    if isinstance(frames, np.ndarray) and (frames.ndim != 4 or len(frames) == 0):
        raise ValueError(f"frames must be a non-empty array (frames, height, width, 3), got shape {frames.shape}")

    with atomic_output(path) as temporary:
        count = _encode(temporary, frames, fps, crf)
        if count == 0:
            raise ValueError(f"no frames given to write to {path}")
    return path


def _encode(path: Path, frames: np.ndarray | Iterable[np.ndarray], fps: float, crf: int) -> int:
    # x264 wants a rational rate; 1001-denominators cover the NTSC rates (29.97 = 30000/1001).
    rate = Fraction(fps).limit_denominator(1001)
    size = None
    count = 0
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = None
        for index, frame in enumerate(frames):
            frame = _as_frame_array(frame, index, size)
            if stream is None:
                size = frame.shape[:2]
                height, width = size
                if height % 2 or width % 2:
                    raise ValueError(
                        f"H.264 (yuv420p) needs an even height and width, got {height}x{width} (HxW): crop or pad "
                        "the frames by one pixel"
                    )
                stream = container.add_stream("libx264", rate=rate)
                stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
                stream.options = {"crf": str(crf)}
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
            count += 1
        if stream is not None:
            for packet in stream.encode():
                container.mux(packet)
    return count
