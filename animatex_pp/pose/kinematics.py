"""The skeleton as a tree: every keypoint of a `PoseSequence` hangs from the neck, so a pose can be reshaped by
scaling bones while keeping their directions, which is what retargeting and EPI augmentation both do.

All parts are laid out in one point axis of `NUM_POINTS` in pixel coordinates: body 0-17, feet 18-23, left hand
24-44, right hand 45-65, face 66-133. Feet hang from their ankle, a hand from its wrist along the hand's own
bones, and face points from the nose.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from animatex_pp.pose import skeleton as sk
from animatex_pp.pose.sequence import PoseSequence

FEET_START = sk.NUM_BODY
HANDS_START = FEET_START + sk.NUM_FEET
FACE_START = HANDS_START + 2 * sk.NUM_HAND
NUM_POINTS = FACE_START + sk.NUM_FACE
PART_STARTS = (("body", 0), ("feet", FEET_START), ("hands", HANDS_START), ("face", FACE_START))
ROOT = sk.NECK

BODY_PARENTS = {
    sk.NOSE: sk.NECK, sk.R_SHOULDER: sk.NECK, sk.R_ELBOW: sk.R_SHOULDER, sk.R_WRIST: sk.R_ELBOW,
    sk.L_SHOULDER: sk.NECK, sk.L_ELBOW: sk.L_SHOULDER, sk.L_WRIST: sk.L_ELBOW, sk.R_HIP: sk.NECK,
    sk.R_KNEE: sk.R_HIP, sk.R_ANKLE: sk.R_KNEE, sk.L_HIP: sk.NECK, sk.L_KNEE: sk.L_HIP, sk.L_ANKLE: sk.L_KNEE,
    sk.R_EYE: sk.NOSE, sk.L_EYE: sk.NOSE, sk.R_EAR: sk.R_EYE, sk.L_EAR: sk.L_EYE,
}  # fmt: skip
# Body point of the other side (itself for the midline), for mirroring bones and parts.
BODY_MIRROR = (0, 1, 5, 6, 7, 2, 3, 4, 11, 12, 13, 8, 9, 10, 15, 14, 17, 16)


def hand_points(side: int) -> np.ndarray:
    """Unified indices of one hand's 21 points (side 0 left, 1 right)."""
    return np.arange(sk.NUM_HAND) + HANDS_START + side * sk.NUM_HAND


def foot_points(side: int) -> np.ndarray:
    """Unified indices of one foot's 3 points (big toe, small toe, heel; side 0 left, 1 right)."""
    return np.arange(3) + FEET_START + 3 * side


FACE_POINTS = np.arange(sk.NUM_FACE) + FACE_START
# iBUG-68 point of the other side of the face: jaw, brows, nose, eyes, outer lips, inner lips.
FACE_MIRROR = (
    *range(16, -1, -1), *range(26, 16, -1), 27, 28, 29, 30, 35, 34, 33, 32, 31, 45, 44, 43, 42, 47, 46, 39, 38,
    37, 36, 41, 40, 54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55, 64, 63, 62, 61, 60, 67, 66, 65,
)  # fmt: skip


def _mirror_points() -> np.ndarray:
    """The unified index of each point's counterpart on the other side of the body."""
    mirror = np.arange(NUM_POINTS)
    mirror[: sk.NUM_BODY] = BODY_MIRROR
    for a, b in ((hand_points(sk.LEFT), hand_points(sk.RIGHT)), (foot_points(sk.LEFT), foot_points(sk.RIGHT))):
        mirror[a], mirror[b] = b, a
    mirror[FACE_POINTS] = np.asarray(FACE_MIRROR) + FACE_START
    return mirror


MIRROR = _mirror_points()


def _build_parents() -> np.ndarray:
    parents = np.full(NUM_POINTS, -1, dtype=np.int64)
    for child, parent in BODY_PARENTS.items():
        parents[child] = parent
    for side, ankle in ((sk.LEFT, sk.L_ANKLE), (sk.RIGHT, sk.R_ANKLE)):
        parents[foot_points(side)] = ankle
    for side, wrist in ((sk.LEFT, sk.L_WRIST), (sk.RIGHT, sk.R_WRIST)):
        points = hand_points(side)
        parents[points[0]] = wrist
        for parent, child in sk.HAND_EDGES:
            parents[points[child]] = points[parent]
    parents[FACE_POINTS] = sk.NOSE
    return parents


PARENTS = _build_parents()


def _topological_order() -> np.ndarray:
    order, frontier = [], [ROOT]
    while frontier:
        order.extend(frontier)
        frontier = [int(c) for p in frontier for c in np.flatnonzero(PARENTS == p)]
    return np.asarray(order, dtype=np.int64)


ORDER = _topological_order()  # parents before children, root first


def to_points(pose: PoseSequence) -> tuple[np.ndarray, np.ndarray]:
    """All keypoints in pixels of the pose's image: points float64 (F, NUM_POINTS, 2), confidence (F, NUM_POINTS).

    Absent parts have confidence 0.
    """
    num_frames = len(pose)
    points = np.zeros((num_frames, NUM_POINTS, 2), dtype=np.float64)
    conf = np.zeros((num_frames, NUM_POINTS), dtype=np.float64)
    for name, start in PART_STARTS:
        part = getattr(pose, name)
        if part is None:
            continue
        part_points = part.reshape(num_frames, -1, 2)  # (F, points in part, 2): hands' (2, 21) flattened, left first
        points[:, start : start + part_points.shape[1]] = part_points
        # (F, points in part) confidences, flattened as the points are
        conf[:, start : start + part_points.shape[1]] = getattr(pose, f"{name}_conf").reshape(num_frames, -1)
    points *= (pose.width, pose.height)
    return points, conf


def from_points(
    pose: PoseSequence,
    points: np.ndarray,
    conf: np.ndarray | None = None,
    width: int | None = None,
    height: int | None = None,
) -> PoseSequence:
    """A copy of `pose` with keypoints (F, NUM_POINTS, 2) in pixels of a `width` x `height` image (default: the
    pose's own size), and optionally new confidences. Parts absent from `pose` stay absent."""
    width, height = width or pose.width, height or pose.height
    normalised = points / (width, height)
    changes = {"width": width, "height": height}
    for name, start in PART_STARTS:
        part = getattr(pose, name)
        if part is None:
            continue
        count = int(np.prod(part.shape[1:-1]))
        changes[name] = normalised[:, start : start + count].reshape(part.shape)  # back to the part's own shape
        if conf is not None:
            # (F, points in part) -> the part's own confidence shape, e.g. (F, 2, 21) for hands
            changes[f"{name}_conf"] = conf[:, start : start + count].reshape(part.shape[:-1])
    return replace(pose, **changes)


def scale_bones(points: np.ndarray, visible: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Scale every bone (parent -> child) by `scale[child]`, keeping its direction; the root stays in place.

    points (F, NUM_POINTS, 2), visible bool (F, NUM_POINTS), scale (NUM_POINTS,) or (F, NUM_POINTS). Each point moves
    with its parent; a bone whose two ends are not both visible is not scaled (its child just follows the parent),
    so missing points never pull the skeleton.
    """
    scale = np.broadcast_to(scale, visible.shape)
    shift = np.zeros_like(points)
    for child in ORDER[1:]:
        parent = PARENTS[child]
        bone = points[:, child] - points[:, parent]
        both = visible[:, child] & visible[:, parent]
        # both (F,) and scale (F,) -> (F, 1) against the bone (F, 2)
        shift[:, child] = shift[:, parent] + np.where(both[:, None], (scale[:, child, None] - 1.0) * bone, 0.0)
    return points + shift


def bone_lengths(points: np.ndarray, visible: np.ndarray) -> np.ndarray:
    """Length of the bone ending at each point, NaN where the bone is not fully visible: (F, NUM_POINTS)."""
    parents = np.where(PARENTS < 0, ROOT, PARENTS)
    lengths = np.linalg.norm(points - points[:, parents], axis=-1)
    both = visible & visible[:, parents] & (PARENTS >= 0)
    return np.where(both, lengths, np.nan)


def swap_sides(pose: PoseSequence) -> PoseSequence:
    """The pose with every left and right label exchanged (body, feet, hands and face); positions unchanged."""
    points, conf = to_points(pose)
    return from_points(pose, points[:, MIRROR], conf[:, MIRROR])


def subtree(point: int) -> np.ndarray:
    """A point and all its descendants (unified indices)."""
    members = {point}
    for child in ORDER:
        if PARENTS[child] in members:
            members.add(int(child))
    return np.asarray(sorted(members), dtype=np.int64)
