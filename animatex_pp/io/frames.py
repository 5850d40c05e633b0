"""The one frame layout every metric takes, checked and converted at the edge.

Frames are RGB, channels last, as `animatex_pp.data.read_video` gives them and the pipeline's ``output_type="np"``
returns per video: uint8 in [0, 255] or float in [0, 1], as numpy arrays or torch tensors.
"""

from __future__ import annotations

import numpy as np
import torch


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
