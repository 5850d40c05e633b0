"""What a pose holds: the share of body points detected in each frame, frames with nobody, and the words for both.

An extraction that finds nobody must never pass silently: `extract` warns through `warn_missing`, the command line
prints `summary`, and `generate` refuses a pose for which `has_body` is False.
"""

from __future__ import annotations

import logging

import numpy as np

from animatex_pp.pose.sequence import PoseSequence
from animatex_pp.pose.skeleton import CONF_THRESHOLD, NUM_BODY

__all__ = ["detected_share", "frame_ranges", "has_body", "summary", "warn_missing"]

logger = logging.getLogger("animatex_pp.pose")

HAND_MADE_HINT = (
    "for a character a detector cannot see, write its skeleton by hand (docs/pose.md, 'A skeleton by hand') and "
    "check it with `animatex-pp pose render POSE --frame 0 --over IMAGE --out check.png`"
)


def detected_share(pose: PoseSequence) -> np.ndarray:
    """Share of the 18 body points detected in each frame: float (F,), 0 where nobody was found."""
    return (pose.body_conf >= CONF_THRESHOLD).sum(axis=1) / NUM_BODY


def has_body(pose: PoseSequence) -> bool:
    """Whether any frame shows any body point."""
    return bool((pose.body_conf >= CONF_THRESHOLD).any())


def frame_ranges(frames: np.ndarray) -> str:
    """Sorted frame indices as short ranges: [0, 1, 2, 5, 7, 8] -> '0-2, 5, 7-8'."""
    frames = [int(f) for f in frames]
    ranges, start = [], 0
    for index in range(1, len(frames) + 1):
        if index == len(frames) or frames[index] != frames[index - 1] + 1:
            first, last = frames[start], frames[index - 1]
            ranges.append(str(first) if first == last else f"{first}-{last}")
            start = index
    return ", ".join(ranges)


def summary(pose: PoseSequence) -> str:
    """One line: how many frames show the whole body, part of it or nobody, and the share of points per frame."""
    share = detected_share(pose)
    full, nobody = share == 1, share == 0
    partial = ~full & ~nobody
    words = [f"whole body on {full.sum()} of {len(pose)} frames"]
    if partial.any():
        words.append(f"part of it on {partial.sum()} ({share[partial].min():.0%}-{share[partial].max():.0%} of the "
                     f"points; frames {frame_ranges(np.flatnonzero(partial))})")  # fmt: skip
    if nobody.any():
        words.append(f"nobody on {nobody.sum()} (frames {frame_ranges(np.flatnonzero(nobody))})")
    return "; ".join(words)


def warn_missing(pose: PoseSequence, source: str, backend: str) -> None:
    """Log a warning naming `source` and the frames when some or all frames show nobody."""
    nobody = np.flatnonzero(detected_share(pose) == 0)
    if len(nobody) == len(pose):
        where = source if len(pose) == 1 else f"any of the {len(pose)} frames of {source}"
        logger.warning("%s found nobody in %s: %s", backend, where, HAND_MADE_HINT)
    elif len(nobody):
        logger.warning("%s found nobody in frames %s of %s (%d of %d frames): those frames have no pose",
                       backend, frame_ranges(nobody), source, len(nobody), len(pose))  # fmt: skip
