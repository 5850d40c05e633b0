"""Frame fidelity against ground truth (PSNR, PSNR*, SSIM, L1) and character keypoint error.

Every video metric takes one clip as two (F, H, W, 3) RGB videos — uint8 in [0, 255] or float in [0, 1], numpy or
torch (``animatex_pp.io.frames``) — scores each frame against its ground-truth frame and returns the mean over
frames. Averages over clips are the caller's (the mean of per-clip means).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

from animatex_pp.io.frames import to_unit_float
from animatex_pp.pose.sequence import PoseSequence
from animatex_pp.pose.skeleton import CONF_THRESHOLD, L_HIP, NECK, R_HIP

# An exact frame scores this instead of infinity (DisCo's convention), so one exact frame — a copied reference equal
# to the first ground-truth frame — does not make a clip's mean infinite.
MAX_PSNR_DB = 100.0
SSIM_KERNEL = 11  # torchmetrics' default Gaussian window (sigma 1.5), that of Wang et al. 2004


def _video_pair(prediction, target) -> tuple[torch.Tensor, torch.Tensor]:
    """Two (F, H, W, 3) videos -> two float64 (F, 3, H, W) tensors in [0, 1]."""
    prediction = to_unit_float(prediction, "prediction", "(F, H, W, 3)")
    target = to_unit_float(target, "target", "(F, H, W, 3)")
    if prediction.shape != target.shape:
        raise ValueError(
            f"prediction {prediction.shape} and target {target.shape} must have one shape (F, H, W, 3): "
            "resize or trim the prediction to the ground truth first"
        )
    return _channels_first(prediction), _channels_first(target)


def _channels_first(video: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(video).double().permute(0, 3, 1, 2)  # (F, H, W, 3) -> (F, 3, H, W)


def _mean_frame_psnr(prediction: torch.Tensor, target: torch.Tensor, data_range: float) -> float:
    per_frame = peak_signal_noise_ratio(prediction, target, data_range=data_range, reduction="none", dim=(1, 2, 3))
    return float(per_frame.clamp(max=MAX_PSNR_DB).mean())  # (F,) -> mean


def psnr(prediction, target) -> float:
    """PSNR in dB, per frame over all pixels and channels of float frames in [0, 1] (peak 1), then the mean over
    frames: ``10 log10(1 / MSE)``, an exact frame counting ``MAX_PSNR_DB``. torchmetrics' implementation."""
    prediction, target = _video_pair(prediction, target)
    return _mean_frame_psnr(prediction, target, data_range=1.0)


def psnr_star(prediction, target) -> float:
    """PSNR*, the corrected PSNR of DisCo (Wang et al., arXiv 2307.00040) that MagicAnimate and Animate-X report.

    Both videos are quantised to 8 bits (``round(255 x)``, as saved frames are), and per frame
    ``PSNR* = 20 log10(255 / sqrt(MSE))`` with the MSE over H x W x 3 in float64; an exact frame scores 100 dB;
    then the mean over frames. Source: github.com/Wangt-CN/DisCo, ``tool/metrics/ssim_l1_lpips_psnr.py``
    ``psnr_eval`` at commit 6190108, which fixed the earlier version's numerical overflow (it squared the difference
    of uint8 arrays, which wraps modulo 256); the star marks the fixed metric. Animate-X ships no evaluation code.
    On float frames it differs from ``psnr`` only by the quantisation.
    """
    prediction, target = _video_pair(prediction, target)
    return _mean_frame_psnr((prediction * 255.0).round(), (target * 255.0).round(), data_range=255.0)


def ssim(prediction, target) -> float:
    """SSIM (Wang et al. 2004) per frame on RGB in [0, 1] — an 11 x 11 Gaussian window of sigma 1.5, K1 = 0.01,
    K2 = 0.03, the mean over channels and pixels — then the mean over frames. torchmetrics' implementation.

    (DisCo's tables computed SSIM on grayscale with scikit-image's 7 x 7 uniform window: close, not identical.)
    """
    prediction, target = _video_pair(prediction, target)
    if min(prediction.shape[-2:]) < SSIM_KERNEL:
        raise ValueError(
            f"ssim needs frames of at least {SSIM_KERNEL}x{SSIM_KERNEL} pixels; got {prediction.shape[-2:]}"
        )
    per_frame = structural_similarity_index_measure(prediction, target, data_range=1.0, reduction="none")
    return float(per_frame.mean())  # (F,) -> mean


def l1(prediction, target) -> float:
    """Mean absolute error per frame over pixels and channels in [0, 1] units, then the mean over frames.

    DisCo's and Animate-X's tables report ``l1 * 255 / (H * W)`` (their ``l1_eval`` divides 0-255 differences by the
    pixel count before the mean), hence their values near 1e-4.
    """
    prediction, target = _video_pair(prediction, target)
    return float((prediction - target).abs().mean(dim=(1, 2, 3)).mean())  # (F, 3, H, W) -> (F,) -> mean


@dataclass
class KeypointError:
    """``mean_error``: mean L2 distance of the matched points over the normalising length; ``pck``: fraction of
    ground-truth points predicted within ``threshold`` of it (a missing prediction counts as a miss);
    ``num_points``: ground-truth points scored; ``num_missing``: of those, how many had no prediction.
    ``mean_error`` is NaN when no point was predicted."""

    mean_error: float
    pck: float
    threshold: float
    num_points: int
    num_missing: int


def keypoint_error(
    predicted: np.ndarray,
    target: np.ndarray,
    target_visible: np.ndarray,
    predicted_visible: np.ndarray | None = None,
    image_size: tuple[int, int] | None = None,
    normalize: str = "diagonal",
    threshold: float = 0.05,
) -> KeypointError:
    """Character keypoint error against ground truth, with PCK.

    Args:
        predicted, target: (N, K, 2) keypoint (x, y) in pixels, e.g. N frames of the 18 OpenPose body points.
        target_visible: (N, K) bool, True where the ground-truth point exists (the renderer knows it).
        predicted_visible: optional (N, K) bool, True where the prediction found the point (default: all).
        image_size: (height, width) in pixels; required for ``normalize="diagonal"``.
        normalize: ``"diagonal"`` divides distances by the image diagonal (the same ruler for every body plan, which
            suits characters without a torso); ``"torso"`` by each frame's ground-truth neck-to-mid-hip length
            (OpenPose indices 1 and 8/11; frames without all three are left out).
        threshold: PCK radius as a fraction of the normalising length.
    """
    predicted, target = np.asarray(predicted, dtype=np.float64), np.asarray(target, dtype=np.float64)
    if predicted.ndim != 3 or predicted.shape[-1] != 2 or predicted.shape != target.shape:
        raise ValueError(
            f"predicted and target must be (N, K, 2) pixel coordinates of one shape; got {predicted.shape}, "
            f"{target.shape}"
        )
    target_visible = np.asarray(target_visible)
    if predicted_visible is None:
        predicted_visible = np.ones(target.shape[:2], dtype=bool)
    predicted_visible = np.asarray(predicted_visible)
    for name, mask in (("target_visible", target_visible), ("predicted_visible", predicted_visible)):
        if mask.shape != target.shape[:2] or mask.dtype != np.bool_:
            raise ValueError(f"{name} must be (N, K) = {target.shape[:2]} bool; got {mask.dtype} {mask.shape}")
    if normalize == "diagonal":
        if image_size is None:
            raise ValueError('normalize="diagonal" needs image_size=(height, width) in pixels')
        scale = np.full(target.shape[0], float(np.hypot(*image_size)))  # (N,)
    elif normalize == "torso":
        mid_hip = (target[:, R_HIP] + target[:, L_HIP]) / 2  # (N, 2)
        scale = np.linalg.norm(target[:, NECK] - mid_hip, axis=-1)  # (N,)
        has_torso = target_visible[:, [NECK, R_HIP, L_HIP]].all(axis=1) & (scale > 0)
        target_visible = target_visible & has_torso[:, None]
    else:
        raise ValueError(f'normalize must be "diagonal" or "torso"; got {normalize!r}')
    num_points = int(target_visible.sum())
    if num_points == 0:
        raise ValueError("keypoint_error: no ground-truth point to score (all invisible, or no torso to normalise by)")
    matched = target_visible & predicted_visible  # (N, K)
    distance = np.linalg.norm(predicted - target, axis=-1) / np.where(scale > 0, scale, 1.0)[:, None]  # (N, K)
    hits = matched & (distance <= threshold)
    return KeypointError(
        mean_error=float(distance[matched].mean()) if matched.any() else float("nan"),
        pck=float(hits.sum() / num_points),
        threshold=threshold,
        num_points=num_points,
        num_missing=int((target_visible & ~predicted_visible).sum()),
    )


def pose_keypoint_error(
    predicted: PoseSequence, target: PoseSequence, normalize: str = "diagonal", threshold: float = 0.05
) -> KeypointError:
    """``keypoint_error`` of two body ``PoseSequence`` (e.g. poses extracted from the output against the rendered
    ground truth), measured in the target's pixels; a point counts when its confidence is >= 0.3."""
    if predicted.body.shape != target.body.shape:
        raise ValueError(f"pose sequences must have as many frames: {predicted.body.shape} vs {target.body.shape}")
    pixels = np.array([target.width, target.height], dtype=np.float64)  # normalised (x, y) -> pixels
    return keypoint_error(
        predicted.body * pixels,
        target.body * pixels,
        target_visible=target.body_conf >= CONF_THRESHOLD,
        predicted_visible=predicted.body_conf >= CONF_THRESHOLD,
        image_size=(target.height, target.width),
        normalize=normalize,
        threshold=threshold,
    )
