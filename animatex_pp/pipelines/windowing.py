"""Long videos: overlapping windows over latent frames.

A video longer than one window is generated as windows of a fixed number of latent frames that overlap their
neighbours. Two strategies share the same window plan:

- `"blend"` (default): every denoising step runs the transformer on each window and blends the windows' velocity
  predictions into one prediction for the whole latent video, with weights that ramp linearly across each overlap so
  that no seam has a hard edge (a later window's first, reference-conditioned frames are left to the earlier
  window, as the official long-video pipeline does); the scheduler then steps the whole video once. All windows are
  denoised together, as UniAnimate-DiT's long-video pipeline and AnimateDiff's context windows do.
- `"carry"`: windows are denoised one after another and each window's frames shared with earlier windows are carried
  over: at every step they are replaced by the already generated latents re-noised to the current noise level (latent
  inpainting), so the new window continues the old one. This is the latent-space analogue of the carried-over frames
  of Wan-Animate; it needs no training, unlike Wan-Animate's pixel-space conditioning.

Only latents of the whole video are kept (they are 4 x 8 x 8 = 256 times smaller than the pixels); the transformer
and the pose encoders run one window at a time, so the denoising's working memory does not grow with the video's
length. What does grow, linearly and unavoidably, is the video itself: the uint8 pose frames kept for the windows
and the decoded output frames.

Frame bookkeeping: Wan's VAE maps pixel frames 0 | 1-4 | 5-8 | ... to latent frames 0 | 1 | 2 | ... (temporal factor
4). A window of latent frames [start, stop) takes the pixel frames [4 * start, 4 * (stop - 1) + 1): a 4k+1 clip whose
first frame stands for its first latent frame, which is how the pose-video encoder reads any clip (it repeats frame 0).

`plan_frames` turns a call's frame arguments into a `FramePlan` from configs alone, so the pipeline and a command line
that checks its arguments before loading a model plan the same frames.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from animatex_pp.pipelines.geometry import VaeFactors

WINDOW_STRATEGIES = ("blend", "carry")
# Wan2.1 was trained on 81-frame clips, and the official pipelines generate 81 frames per window.
WAN_WINDOW_FRAMES = 81

# The official long-video pipeline overlaps 21-latent-frame windows by 4 latent frames; other window lengths keep
# that ratio unless told otherwise.
OFFICIAL_WINDOW_LATENT_FRAMES = 21
OFFICIAL_OVERLAP_LATENT_FRAMES = 4
# Leading latent frames of each later window left out of the blend (see `conditioned_frames`).
SEAM_CONDITIONED_LATENT_FRAMES = 2


@dataclass(frozen=True)
class LatentWindow:
    """Latent frames [start, stop) of the whole video."""

    start: int
    stop: int

    @property
    def length(self) -> int:
        return self.stop - self.start

    def pixel_slice(self, temporal_factor: int) -> slice:
        """The 4k+1 pixel frames that condition this window (see the module docstring)."""
        return slice(temporal_factor * self.start, temporal_factor * (self.stop - 1) + 1)


def default_overlap(window_latent_frames: int) -> int:
    """The official overlap ratio (4 of 21 latent frames), at least one frame, always less than the window."""
    overlap = round(window_latent_frames * OFFICIAL_OVERLAP_LATENT_FRAMES / OFFICIAL_WINDOW_LATENT_FRAMES)
    return min(max(overlap, 1), window_latent_frames - 1)


def plan_windows(num_latent_frames: int, window_latent_frames: int, overlap_latent_frames: int) -> list[LatentWindow]:
    """Windows of `window_latent_frames` covering `num_latent_frames`, overlapping by at least the given overlap.

    The first window starts at 0 and the last one ends at the last frame; the windows in between are spread evenly,
    so every overlap is as long as or longer than asked (never a short last window, which the IPI could not take).
    """
    if window_latent_frames < 1:
        raise ValueError(f"a window needs at least one latent frame, got {window_latent_frames}")
    if num_latent_frames <= window_latent_frames:
        return [LatentWindow(0, num_latent_frames)]
    if not 0 < overlap_latent_frames < window_latent_frames:
        raise ValueError(
            f"the window overlap must be between 1 and {window_latent_frames - 1} latent frames for windows of "
            f"{window_latent_frames} latent frames, got {overlap_latent_frames}"
        )
    stride = window_latent_frames - overlap_latent_frames
    num_windows = math.ceil((num_latent_frames - overlap_latent_frames) / stride)
    last_start = num_latent_frames - window_latent_frames
    starts = [round(index * last_start / (num_windows - 1)) for index in range(num_windows)]
    return [LatentWindow(start, start + window_latent_frames) for start in starts]


def conditioned_frames(windows: list[LatentWindow], index: int) -> int:
    """Leading latent frames of window `index` that the blend leaves to the previous window.

    Every window is conditioned on the reference image as its first latent frame, so a later window's first frames
    are pulled towards the reference; the official long-video pipeline keeps the first 2 of every later window out
    of the blend. Never more than the overlap, so every frame stays covered.
    """
    if index == 0:
        return 0
    return min(SEAM_CONDITIONED_LATENT_FRAMES, windows[index - 1].stop - windows[index].start)


def blend_weights(windows: list[LatentWindow], num_latent_frames: int) -> list[torch.Tensor]:
    """Per-window weights (one per latent frame) that sum to 1 over the windows covering each frame.

    Inside a window the weight is 1. A later window's first `conditioned_frames` get 0 (the earlier window owns
    them); over the rest of each overlap the weight ramps linearly, down from the earlier window and up into the later
    one, so each seam fades from one window to the next.
    """
    raw = []
    for index, window in enumerate(windows):
        left = windows[index - 1].stop - window.start if index > 0 else 0
        right = window.stop - windows[index + 1].start if index + 1 < len(windows) else 0
        skip = conditioned_frames(windows, index)
        next_skip = conditioned_frames(windows, index + 1) if index + 1 < len(windows) else 0
        position = torch.arange(window.length, dtype=torch.float64)
        ramp_up = (position - skip + 1) / (left - skip + 1)
        ramp_down = (window.length - position) / (right - next_skip + 1)
        raw.append(torch.clamp(torch.minimum(ramp_up, ramp_down), min=0.0, max=1.0))

    total = torch.zeros(num_latent_frames, dtype=torch.float64)
    for window, weight in zip(windows, raw, strict=True):
        total[window.start : window.stop] += weight
    return [(weight / total[window.start : window.stop]).float() for window, weight in zip(windows, raw, strict=True)]


def carried_frames(windows: list[LatentWindow], index: int) -> int:
    """How many leading latent frames of window `index` earlier windows have already generated (the carry strategy)."""
    if index == 0:
        return 0
    return max(0, max(window.stop for window in windows[:index]) - windows[index].start)


@dataclass(frozen=True)
class FrameArguments:
    """How `plan_frames`' messages name its arguments: the Python API's parameters by default, or a command line's
    options when it plans the frames before loading a model."""

    num_frames: str = "`num_frames`"
    window_frames: str = "`window_frames`"
    window_overlap: str = "`window_overlap`"


@dataclass(frozen=True)
class FramePlan:
    """How a call's frames are generated: `num_frames` are returned, `generation_frames` (at least one IPI window)
    are denoised in `windows` of latent frames. `note` says how a count that is not 4k+1 was rounded, for the
    caller to show."""

    num_frames: int
    generation_frames: int
    windows: list[LatentWindow]
    use_ipi: bool
    note: str | None = None

    @property
    def num_latent_frames(self) -> int:
        return self.windows[-1].stop


def plan_frames(
    num_frames: int | None,
    input_lengths: Mapping[str, int],
    factors: VaeFactors,
    ipi_frames: int | None = None,
    window_frames: int | None = None,
    window_overlap: int | None = None,
    names: FrameArguments = FrameArguments(),
) -> FramePlan:
    """Resolve a call's frame count and windows from configs alone; a `ValueError` for what cannot be generated.

    Args:
        num_frames: the frames asked for, or None for the default: the first input's length as 4k+1 (81 without
            inputs). A count that is not 4k+1 is rounded up, as the official code does, unless that would pass an
            input's end: then it is rounded down.
        input_lengths: the frame counts of the inputs the video follows (driving poses first, then driving frames),
            by the names the messages give them; each must cover the frames generated.
        factors: the VAE's factors (`VaeFactors.of(vae)`).
        ipi_frames: the implicit pose indicator's window when it runs (`PipelineGeometry.ipi_frames`), else None.
            The IPI takes whole windows only, so a shorter video is generated at one window's length and trimmed.
        window_frames, window_overlap: pixel frames per window (default: the IPI's, else 81) and shared by
            neighbouring windows (a multiple of the VAE's temporal factor; default: the official ratio).
        names: how the messages name `num_frames`, `window_frames` and `window_overlap`.
    """
    temporal = factors.temporal
    for name, length in input_lengths.items():
        if length < 1:
            raise ValueError(f"{name} has no frames: give at least one")
    shortest = min(input_lengths.values(), default=None)
    note = None
    if num_frames is None:
        source = next(iter(input_lengths), None)
        frames = WAN_WINDOW_FRAMES if source is None else factors.round_down(input_lengths[source])
        asked = f"the default {names.num_frames} {frames}" + ("" if source is None else f" (the length of {source})")
    elif not isinstance(num_frames, int) or num_frames < 1:
        raise ValueError(f"{names.num_frames} must be a positive int, got {num_frames!r}")
    else:
        frames, asked = num_frames, f"{names.num_frames} {num_frames}"
        if not factors.is_valid_frame_count(num_frames):
            frames, direction = factors.round_up(num_frames), "up"
            # Rounding up past an input's end would only be refused below: round down to what the inputs have.
            if shortest is not None and frames > shortest >= num_frames:
                frames, direction = factors.round_down(num_frames), "down"
            note = (
                f"{names.num_frames} {num_frames} is not {temporal}k+1 (the VAE packs {temporal} frames into one "
                f"latent frame): rounding {direction} to {frames}"
            )
            asked += f" (as {temporal}k+1: {frames})"
    for name, length in input_lengths.items():
        if length < frames:
            raise ValueError(
                f"{asked} needs {frames} frames but {name} has {length}: use {names.num_frames} "
                f"{factors.round_down(length)} or less, or a longer input"
            )

    if window_frames is None:
        window_frames = ipi_frames or WAN_WINDOW_FRAMES
    if not factors.is_valid_frame_count(window_frames):
        raise ValueError(f"{names.window_frames} must be a {temporal}k+1 int, got {window_frames!r}")
    if ipi_frames is not None and window_frames != ipi_frames:
        raise ValueError(
            f"{names.window_frames} {window_frames}: the implicit pose indicator only takes windows of {ipi_frames} "
            "frames (its temporal Conv1d is tied to `ipi_num_frames`): leave it unset"
        )
    if window_overlap is not None and not (
        isinstance(window_overlap, int)
        and window_overlap % temporal == 0
        and temporal <= window_overlap <= window_frames - 1
    ):
        raise ValueError(
            f"{names.window_overlap} {window_overlap}: frames shared by windows of {window_frames} must be a multiple "
            f"of {temporal} from {temporal} to {window_frames - 1}"
        )
    # The IPI takes whole windows only: a shorter video is generated at one window's length (the pose padded with its
    # last frame, as the official script pads it) and trimmed.
    generation_frames = max(frames, window_frames) if ipi_frames is not None else frames
    window_latent_frames = factors.latent_frames(window_frames)
    if window_overlap is None:
        overlap = default_overlap(window_latent_frames) if window_latent_frames > 1 else 0
    else:
        overlap = window_overlap // temporal
    windows = plan_windows(factors.latent_frames(generation_frames), window_latent_frames, overlap)
    return FramePlan(frames, generation_frames, windows, ipi_frames is not None, note)
