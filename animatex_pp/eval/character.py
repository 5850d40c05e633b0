"""Metrics of the character itself, from ground truth that SynthX has and real data does not: the character's mask in
every frame, and the background plate (the scene without the character).

- `character_psnr`: PSNR over the pixels of the character's mask, dilated a little so that an output drawn a pixel
  off is still compared where it is drawn. A frame's PSNR is dominated by the background (most of the frame, and
  easy), so this is the number that says whether the character survives.
- `foreground_iou`: the output's foreground (pixels that differ from the background plate) against the character's
  mask, intersection over union per frame. It says whether the output draws a body where the pose puts it.
- `spurious_share`: the output's foreground outside the dilated mask, over the mask's area: parts drawn where the
  character has none (a human's arms forced onto an armless character is Animate-X's failure case).

Frames are (F, H, W, 3), uint8 or float in [0, 1] (`animatex_pp.io.frames`); masks (F, H, W) bool.
"""

from __future__ import annotations

import numpy as np
import torch

from animatex_pp.io.frames import to_unit_float

# Dilation of the character's mask, in pixels: an output a pixel or two off is still scored on the character.
MASK_DILATION = 2
# A pixel is foreground when some channel differs from the background plate by more than this (in [0, 1] units,
# 0.12 ~ 31/255): above a good codec's background error, below the contrast between the puppets and their scenes.
FOREGROUND_THRESHOLD = 0.12


def _masks(masks: np.ndarray, frames: np.ndarray, name: str = "masks") -> np.ndarray:
    masks = np.asarray(masks, dtype=bool)
    if masks.shape != frames.shape[:3]:
        raise ValueError(f"{name} must be (F, H, W) = {frames.shape[:3]}, got {masks.shape}")
    return masks


def dilate(masks: np.ndarray, radius: int = MASK_DILATION) -> np.ndarray:
    """(F, H, W) bool masks grown by `radius` pixels (a square neighbourhood)."""
    if radius <= 0:
        return np.asarray(masks, dtype=bool)
    # Max pooling with stride 1 is a binary dilation; torch has it, numpy does not.
    tensor = torch.from_numpy(np.asarray(masks, dtype=np.float32))[:, None]  # (F, H, W) -> (F, 1, H, W)
    grown = torch.nn.functional.max_pool2d(tensor, kernel_size=2 * radius + 1, stride=1, padding=radius)
    return grown[:, 0].numpy() > 0.5  # (F, 1, H, W) -> (F, H, W)


def character_psnr(prediction, target, masks, dilation: int = MASK_DILATION) -> float:
    """Mean over frames of the PSNR (dB, peak 1) over the dilated mask's pixels; frames without the character are
    left out, and a clip without it in any frame scores NaN."""
    prediction = to_unit_float(prediction, "prediction", "(F, H, W, 3)")
    target = to_unit_float(target, "target", "(F, H, W, 3)")
    if prediction.shape != target.shape:
        raise ValueError(f"prediction {prediction.shape} and target {target.shape} must have one shape")
    region = dilate(_masks(masks, target), dilation)
    scores = []
    for frame in range(len(target)):
        if not region[frame].any():
            continue
        error = float(np.mean((prediction[frame][region[frame]] - target[frame][region[frame]]) ** 2))
        scores.append(10.0 * np.log10(1.0 / max(error, 1e-10)))
    return float(np.mean(scores)) if scores else float("nan")


def foreground(frames, plate, threshold: float = FOREGROUND_THRESHOLD) -> np.ndarray:
    """(F, H, W) bool: pixels of `frames` that differ from the background plate (same shape) in some channel by
    more than `threshold`."""
    frames = to_unit_float(frames, "frames", "(F, H, W, 3)")
    plate = to_unit_float(plate, "plate", "(F, H, W, 3)")
    if frames.shape != plate.shape:
        raise ValueError(f"frames {frames.shape} and the background plate {plate.shape} must have one shape")
    return np.abs(frames - plate).max(axis=-1) > threshold


def foreground_iou(prediction, plate, masks, threshold: float = FOREGROUND_THRESHOLD) -> float:
    """Mean over frames of IoU(foreground of `prediction`, the character's mask); a frame where both are empty is
    left out (NaN when every frame is)."""
    drawn = foreground(prediction, plate, threshold)
    masks = _masks(masks, drawn[..., None])
    union = (drawn | masks).sum(axis=(1, 2))
    intersection = (drawn & masks).sum(axis=(1, 2))
    kept = union > 0
    return float(np.mean(intersection[kept] / union[kept])) if kept.any() else float("nan")


def spurious_share(
    prediction, plate, masks, dilation: int = MASK_DILATION, threshold: float = FOREGROUND_THRESHOLD
) -> float:
    """Foreground pixels outside the dilated mask, summed over frames, over the mask's pixels summed over frames
    (NaN without a character)."""
    drawn = foreground(prediction, plate, threshold)
    masks = _masks(masks, drawn[..., None])
    area = int(masks.sum())
    if area == 0:
        return float("nan")
    return float((drawn & ~dilate(masks, dilation)).sum() / area)
