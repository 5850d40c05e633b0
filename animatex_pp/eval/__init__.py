"""Evaluation metrics (DESIGN §8): frame fidelity, background motion against a caption, keypoint error, FID/FVD."""

from animatex_pp.eval.motion import (
    BackgroundMotion,
    background_motion_accuracy,
    estimate_background_motion,
    expected_motion_label,
    masked_correlation,
    phase_correlation,
)

__all__ = [
    "BackgroundMotion",
    "background_motion_accuracy",
    "estimate_background_motion",
    "expected_motion_label",
    "masked_correlation",
    "phase_correlation",
]
