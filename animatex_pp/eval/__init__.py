"""Evaluation metrics: frame fidelity, the character's region against SynthX's ground truth, background motion against
a caption, keypoint error, FID/FVD.

Videos are (F, H, W, 3) RGB, uint8 in [0, 255] or float in [0, 1] (``frames``). docs/evaluation.md defines each
metric and gives its source.
"""

from animatex_pp.eval.character import character_psnr, foreground_iou, spurious_share
from animatex_pp.eval.features import (
    FeatureExtractor,
    fid,
    frechet_distance,
    frechet_distance_from_stats,
    fvd,
    load_i3d,
    load_inception,
)
from animatex_pp.eval.metrics import KeypointError, keypoint_error, l1, pose_keypoint_error, psnr, psnr_star, ssim
from animatex_pp.eval.motion import (
    LABELS,
    BackgroundMotion,
    background_motion_accuracy,
    estimate_background_motion,
    expected_motion_label,
    masked_correlation,
    phase_correlation,
)

__all__ = [
    "LABELS",
    "BackgroundMotion",
    "FeatureExtractor",
    "KeypointError",
    "background_motion_accuracy",
    "character_psnr",
    "estimate_background_motion",
    "expected_motion_label",
    "fid",
    "foreground_iou",
    "frechet_distance",
    "frechet_distance_from_stats",
    "fvd",
    "keypoint_error",
    "l1",
    "load_i3d",
    "load_inception",
    "masked_correlation",
    "phase_correlation",
    "pose_keypoint_error",
    "psnr",
    "psnr_star",
    "spurious_share",
    "ssim",
]
