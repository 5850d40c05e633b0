"""The driving pose an evaluation feeds the pipeline, and how far it lies from the character's own skeleton.

A cross-driven clip's pose is another body's: in SynthX's test splits a human-like puppet performs the motion, as a
user's driving video would. `"retargeted"` (the default, what a user is told to do, docs/pose.md) moves it onto the
clip's reference pose with `animatex_pp.pose.retarget.retarget`, dropping the parts the reference lacks; `"raw"`
feeds it as it is, the stress test the explicit pose indicator's augmentation trains for. A clip without a reference
pose (or one retargeting refuses) cannot be retargeted: it is fed raw, and its record says why.

With SynthX's ground truth (`truth.keypoints`), each clip records the mean keypoint distance of both poses to the
character's own skeleton, in pixels of the clip: the retargeted pose should sit on it, the raw one not.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from animatex_pp.pose.retarget import logger as retarget_logger
from animatex_pp.pose.retarget import retarget
from animatex_pp.pose.sequence import PoseSequence
from animatex_pp.pose.skeleton import BODY_NAMES, CONF_THRESHOLD

if TYPE_CHECKING:
    from animatex_pp.synthx.truth import ClipTruth

__all__ = ["DRIVING", "drive", "keypoint_error_px"]

DRIVING = ("retargeted", "raw")


class _Collected(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def _collected_warnings(logger: logging.Logger) -> Iterator[list[str]]:
    """`logger`'s warnings kept in a list instead of printed: an evaluation retargets every clip, and the record
    of each clip is where they belong (their hints name `generate`'s flags, which `eval` does not have)."""
    handler, propagate = _Collected(), logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def keypoint_error_px(pose: PoseSequence, truth: ClipTruth, height: int, width: int) -> float | None:
    """Mean distance, in pixels of a `height` x `width` clip, between the pose's body points and the ground truth's
    over the frames and points both show; None when they share none."""
    frames = min(len(pose), len(truth.keypoints))
    pixels = np.array([width, height], dtype=np.float64)  # normalised (x, y) -> pixels
    offset = (pose.body[:frames].astype(np.float64) - truth.keypoints[:frames]) * pixels  # (F, 18, 2)
    distance = np.linalg.norm(offset, axis=-1)  # (F, 18)
    shown = (pose.body_conf[:frames] >= CONF_THRESHOLD) & (truth.keypoints_conf[:frames] >= CONF_THRESHOLD)
    return float(distance[shown].mean()) if shown.any() else None


def _dropped_parts(raw: PoseSequence, retargeted: PoseSequence) -> list[str]:
    """Body points the raw pose shows in some frame and the retargeted pose in none (parts the reference lacks)."""
    before = (raw.body_conf >= CONF_THRESHOLD).any(axis=0)  # (18,)
    after = (retargeted.body_conf >= CONF_THRESHOLD).any(axis=0)
    return [BODY_NAMES[point] for point in np.flatnonzero(before & ~after)]


def drive(
    pose: PoseSequence,
    reference_pose: PoseSequence | None,
    driving: str,
    truth: ClipTruth | None,
    height: int,
    width: int,
) -> tuple[PoseSequence, dict[str, Any]]:
    """The pose to feed for `driving` ("retargeted" or "raw") and the clip's record of it: what was asked and used,
    why a retargeted run fell back to raw, the parts retargeting dropped, its warnings, and both poses' keypoint
    error to the ground truth (px; None without ground truth)."""
    if driving not in DRIVING:
        raise ValueError(f"driving must be one of {', '.join(DRIVING)}, got {driving!r}")
    retargeted, failure, warnings = None, None, []
    if reference_pose is None:
        failure = "the clip has no reference pose"
    else:
        try:
            with _collected_warnings(retarget_logger) as warnings:
                retargeted = retarget(pose, reference_pose[0])
        except ValueError as error:
            failure = f"retargeting failed ({error})"
    fed = retargeted if driving == "retargeted" and retargeted is not None else pose
    errors = {"raw": None, "retargeted": None}
    if truth is not None:
        errors["raw"] = keypoint_error_px(pose, truth, height, width)
        if retargeted is not None:
            errors["retargeted"] = keypoint_error_px(retargeted, truth, height, width)
    record = {
        "requested": driving,
        "used": "retargeted" if fed is retargeted else "raw",
        "fallback": failure if driving == "retargeted" else None,
        "dropped_parts": [] if retargeted is None else _dropped_parts(pose, retargeted),
        "retarget_warnings": warnings,
        "keypoint_error_px": errors,
    }
    return fed, record
