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
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

WINDOW_STRATEGIES = ("blend", "carry")

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
