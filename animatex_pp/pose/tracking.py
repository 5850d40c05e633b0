"""Keeping one person when a detector finds several: the most prominent at first, then the same one over time.

Boxes are `(x0, y0, x1, y1)` pixels. Prominence is area times centrality (1 at the image centre, 0 at a corner),
so a large person in the middle wins over a larger one at the edge only when much smaller. Once chosen, a person
is followed by overlap with the previous frame's box; when the overlap is lost, the most prominent is chosen again.
"""

from __future__ import annotations

import numpy as np

__all__ = ["box_iou", "non_max_suppression", "prominence", "select_person"]


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Intersection over union of one box (4,) with each of `boxes` (N, 4): (N,)."""
    top_left = np.maximum(box[:2], boxes[:, :2])
    bottom_right = np.minimum(box[2:], boxes[:, 2:])
    intersection = np.prod(np.clip(bottom_right - top_left, 0, None), axis=1)
    area = np.prod(box[2:] - box[:2])
    areas = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
    return intersection / np.maximum(area + areas - intersection, 1e-12)


def non_max_suppression(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Indices of the boxes kept by greedy NMS, best score first."""
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(best)
        order = rest[box_iou(boxes[best], boxes[rest]) <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def prominence(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """Area fraction times centrality of each box (N, 4): (N,)."""
    areas = np.prod(np.clip(boxes[:, 2:] - boxes[:, :2], 0, None), axis=1) / (width * height)
    centers = (boxes[:, :2] + boxes[:, 2:]) / 2
    half_diagonal = np.hypot(width, height) / 2
    distance = np.linalg.norm(centers - (width / 2, height / 2), axis=1) / half_diagonal
    return areas * np.clip(1.0 - distance, 0.0, None)


def select_person(
    boxes: np.ndarray, width: int, height: int, previous: np.ndarray | None = None, min_iou: float = 0.3
) -> int | None:
    """Index of the box to follow in this frame, or None when there is no box."""
    if len(boxes) == 0:
        return None
    if previous is not None:
        overlaps = box_iou(previous, boxes)
        if overlaps.max() >= min_iou:
            return int(np.argmax(overlaps))
    return int(np.argmax(prominence(boxes, width, height)))
