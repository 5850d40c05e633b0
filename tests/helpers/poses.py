"""Synthetic skeletons of known proportions, built by forward kinematics written here independently of the library.

Bones are given by name, as (parent, child) OpenPose-18 indices; a pose is bone lengths and bone angles (radians,
image axes: x right, y down) hung from a neck position.
"""

import numpy as np

from animatex_pp.pose import PoseSequence

# OpenPose-18: 0 nose, 1 neck, 2 r-shoulder, 3 r-elbow, 4 r-wrist, 5 l-shoulder, 6 l-elbow, 7 l-wrist, 8 r-hip,
# 9 r-knee, 10 r-ankle, 11 l-hip, 12 l-knee, 13 l-ankle, 14 r-eye, 15 l-eye, 16 r-ear, 17 l-ear.
BONES = {
    "neck_nose": (1, 0),
    "r_shoulder": (1, 2),
    "r_upper_arm": (2, 3),
    "r_forearm": (3, 4),
    "l_shoulder": (1, 5),
    "l_upper_arm": (5, 6),
    "l_forearm": (6, 7),
    "r_torso": (1, 8),
    "r_thigh": (8, 9),
    "r_shin": (9, 10),
    "l_torso": (1, 11),
    "l_thigh": (11, 12),
    "l_shin": (12, 13),
    "r_eye": (0, 14),
    "l_eye": (0, 15),
    "r_ear": (14, 16),
    "l_ear": (15, 17),
}
DEG = np.pi / 180
# A person facing the camera: their right side on the image's left.
STANDING_ANGLES = {
    "neck_nose": -90 * DEG, "r_shoulder": 180 * DEG, "r_upper_arm": 100 * DEG, "r_forearm": 95 * DEG,
    "l_shoulder": 0.0, "l_upper_arm": 80 * DEG, "l_forearm": 85 * DEG, "r_torso": 100 * DEG, "r_thigh": 92 * DEG,
    "r_shin": 90 * DEG, "l_torso": 80 * DEG, "l_thigh": 88 * DEG, "l_shin": 90 * DEG, "r_eye": -130 * DEG,
    "l_eye": -50 * DEG, "r_ear": 170 * DEG, "l_ear": 10 * DEG,
}  # fmt: skip
HUMAN_LENGTHS = {
    "neck_nose": 50.0, "r_shoulder": 60.0, "r_upper_arm": 80.0, "r_forearm": 70.0, "l_shoulder": 60.0,
    "l_upper_arm": 80.0, "l_forearm": 70.0, "r_torso": 160.0, "r_thigh": 120.0, "r_shin": 110.0, "l_torso": 160.0,
    "l_thigh": 120.0, "l_shin": 110.0, "r_eye": 15.0, "l_eye": 15.0, "r_ear": 15.0, "l_ear": 15.0,
}  # fmt: skip


def body_pixels(lengths: dict, angles: dict, neck) -> np.ndarray:
    """(18, 2) pixel positions from bone lengths and angles (parents are placed before children in BONES order)."""
    points = np.zeros((18, 2))
    points[1] = neck
    for name, (parent, child) in BONES.items():
        points[child] = points[parent] + lengths[name] * np.array([np.cos(angles[name]), np.sin(angles[name])])
    return points


def make_pose(frames_pixels, width: int, height: int, fps: float | None = 10.0, conf=None, **parts) -> PoseSequence:
    """A PoseSequence from body pixel positions (F, 18, 2); optional parts given in pixels too."""
    frames_pixels = np.asarray(frames_pixels, dtype=np.float64)
    size = np.array([width, height])
    conf = np.ones(frames_pixels.shape[:2]) if conf is None else conf
    extra = {}
    for name, (points, part_conf) in parts.items():
        extra[name] = np.asarray(points) / size
        extra[f"{name}_conf"] = part_conf
    return PoseSequence(body=frames_pixels / size, body_conf=conf, width=width, height=height, fps=fps, **extra)


def bone_length(pixels: np.ndarray, name: str) -> np.ndarray:
    parent, child = BONES[name]
    return np.linalg.norm(pixels[..., child, :] - pixels[..., parent, :], axis=-1)


def bone_angle(pixels: np.ndarray, name: str) -> np.ndarray:
    parent, child = BONES[name]
    delta = pixels[..., child, :] - pixels[..., parent, :]
    return np.arctan2(delta[..., 1], delta[..., 0])


def pixels_of(pose: PoseSequence) -> np.ndarray:
    return pose.body.astype(np.float64) * (pose.width, pose.height)
