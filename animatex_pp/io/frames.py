"""Every conversion between the value ranges frames take, in one place.

Three ranges meet in this library: uint8 in [0, 255] (decoded video, images, rendered skeletons, written output),
float in [0, 1] (the pose streams' inputs, the pipeline's ``output_type="np"``, the metrics) and float in [-1, 1]
(what the VAE encodes and decodes). Each function takes numpy arrays or torch tensors and returns the same kind, any
layout: the permutes between channels-last frames and channels-first tensors stay at the call site, where the
shapes are named. Going to uint8 always clips and rounds, so a value a hair outside its range does not wrap.
"""

from __future__ import annotations

import numpy as np
import torch

UINT8_MAX = 255.0


def to_unit(frames: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """uint8 in [0, 255] -> float32 in [0, 1]."""
    if isinstance(frames, torch.Tensor):
        return frames.float() / UINT8_MAX
    return np.asarray(frames, dtype=np.float32) / UINT8_MAX


def to_signed(frames: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """uint8 in [0, 255] -> float32 in [-1, 1]."""
    return to_unit(frames) * 2.0 - 1.0


def unit_to_uint8(frames: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """float in [0, 1] -> uint8 in [0, 255], clipped and rounded."""
    if isinstance(frames, torch.Tensor):
        return (frames.float() * UINT8_MAX).round().clamp(0, 255).to(torch.uint8)
    return np.clip(np.round(np.asarray(frames, dtype=np.float32) * UINT8_MAX), 0, 255).astype(np.uint8)


def signed_to_uint8(frames: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """float in [-1, 1] -> uint8 in [0, 255], clipped and rounded."""
    return unit_to_uint8((frames + 1.0) / 2.0)


def to_unit_float(frames: np.ndarray | torch.Tensor, name: str, layout: str) -> np.ndarray:
    """``frames`` (..., H, W, 3) as float32 in [0, 1]; ValueError naming ``name`` and ``layout`` when they are not.

    Args:
        frames: uint8 in [0, 255] or float in [0, 1].
        name: what the caller calls the argument, for the error message.
        layout: the full layout the caller expects, e.g. "(F, H, W, 3)", checked for its number of dimensions.
    """
    if isinstance(frames, torch.Tensor):
        frames = frames.detach().cpu().numpy()
    frames = np.asarray(frames)
    ndim = layout.count(",") + 1
    if frames.ndim != ndim or frames.shape[-1] != 3:
        raise ValueError(f"{name} must be RGB frames {layout}, channels last; got shape {frames.shape}")
    if frames.dtype == np.uint8:
        return frames.astype(np.float32) / 255.0
    if not np.issubdtype(frames.dtype, np.floating):
        raise ValueError(f"{name} must be uint8 in [0, 255] or float in [0, 1]; got dtype {frames.dtype}")
    low, high = float(frames.min()), float(frames.max())
    if low < 0.0 or high > 1.0:
        raise ValueError(
            f"{name} holds floats in [{low:.3g}, {high:.3g}]; pass floats in [0, 1] (e.g. (x + 1) / 2 for [-1, 1]) "
            "or uint8 in [0, 255]"
        )
    return frames.astype(np.float32)
