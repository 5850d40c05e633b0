"""Keypoint layouts, limbs and colours: the one place that knows which index is which joint.

Body: OpenPose-18. Feet, face and hands: COCO-WholeBody's order (as DWPose predicts them). Hands are stored left
then right, each 21 points in the usual hand order (wrist, thumb 1-4, index 5-8, middle 9-12, ring 13-16, little
17-20), which MediaPipe's hand landmarks share.
"""

from __future__ import annotations

import colorsys

import numpy as np

# Visibility threshold: a point counts as detected when its confidence is >= this (DWPose's 0.3, as the official
# code uses it for the implicit pose indicator and for drawing).
CONF_THRESHOLD = 0.3

NOSE, NECK = 0, 1
R_SHOULDER, R_ELBOW, R_WRIST, L_SHOULDER, L_ELBOW, L_WRIST = 2, 3, 4, 5, 6, 7
R_HIP, R_KNEE, R_ANKLE, L_HIP, L_KNEE, L_ANKLE = 8, 9, 10, 11, 12, 13
R_EYE, L_EYE, R_EAR, L_EAR = 14, 15, 16, 17

BODY_NAMES = (
    "nose", "neck", "right shoulder", "right elbow", "right wrist", "left shoulder", "left elbow", "left wrist",
    "right hip", "right knee", "right ankle", "left hip", "left knee", "left ankle", "right eye", "left eye",
    "right ear", "left ear",
)  # fmt: skip

NUM_BODY, NUM_FEET, NUM_HAND, NUM_FACE = 18, 6, 21, 68
LEFT, RIGHT = 0, 1  # index of a hand in the (2, 21) hand axis

# The 17 body limbs OpenPose/DWPose draw (the shoulder-ear pairs of the original 19 are never drawn).
BODY_LIMBS = (
    (NECK, R_SHOULDER), (NECK, L_SHOULDER), (R_SHOULDER, R_ELBOW), (R_ELBOW, R_WRIST), (L_SHOULDER, L_ELBOW),
    (L_ELBOW, L_WRIST), (NECK, R_HIP), (R_HIP, R_KNEE), (R_KNEE, R_ANKLE), (NECK, L_HIP), (L_HIP, L_KNEE),
    (L_KNEE, L_ANKLE), (NECK, NOSE), (NOSE, R_EYE), (R_EYE, R_EAR), (NOSE, L_EYE), (L_EYE, L_EAR),
)  # fmt: skip

# DWPose draws each foot as one limb from the ankle to the midpoint of the big and small toes; the two toe midpoints
# are points 18 (left) and 19 (right) of its 20-point body, after the 18 body points.
TOE_PAIRS = ((0, 1), (3, 4))  # feet indices of (big toe, small toe), left then right
FOOT_LIMBS = ((L_ANKLE, 18), (R_ANKLE, 19))

# OpenPose colours (RGB), one per limb in BODY_LIMBS + FOOT_LIMBS order, and one per point of the 20-point body.
PALETTE = np.array(
    [
        [255, 0, 0], [255, 85, 0], [255, 170, 0], [255, 255, 0], [170, 255, 0], [85, 255, 0], [0, 255, 0],
        [0, 255, 85], [0, 255, 170], [0, 255, 255], [0, 170, 255], [0, 85, 255], [0, 0, 255], [85, 0, 255],
        [170, 0, 255], [255, 0, 255], [255, 0, 170], [255, 0, 85], [170, 255, 255], [255, 255, 0],
    ],
    dtype=np.uint8,
)  # fmt: skip
LIMB_COLORS = PALETTE[:19]  # 17 body limbs, then left foot, right foot
POINT_COLORS = PALETTE  # 18 body points, then left toes, right toes

HAND_EDGES = (
    (0, 1), (1, 2), (2, 3), (3, 4), (0, 5), (5, 6), (6, 7), (7, 8), (0, 9), (9, 10),
    (10, 11), (11, 12), (0, 13), (13, 14), (14, 15), (15, 16), (0, 17), (17, 18), (18, 19), (19, 20),
)  # fmt: skip
# Hand edges are coloured around the hue circle; hand points are pure blue (RGB), as OpenPose draws them.
HAND_EDGE_COLORS = np.array(
    [np.round(np.array(colorsys.hsv_to_rgb(i / len(HAND_EDGES), 1.0, 1.0)) * 255) for i in range(len(HAND_EDGES))],
    dtype=np.uint8,
)
HAND_POINT_COLOR = np.array([0, 0, 255], dtype=np.uint8)

# COCO-17 index for each OpenPose-18 body point; the neck (-1) is the shoulder midpoint, computed separately.
COCO_TO_OPENPOSE = (0, -1, 6, 8, 10, 5, 7, 9, 12, 14, 16, 11, 13, 15, 2, 1, 4, 3)
# COCO-WholeBody 133-point layout.
WHOLEBODY_FEET = slice(17, 23)
WHOLEBODY_FACE = slice(23, 91)
WHOLEBODY_LEFT_HAND = slice(91, 112)
WHOLEBODY_RIGHT_HAND = slice(112, 133)
COCO_LEFT_SHOULDER, COCO_RIGHT_SHOULDER = 5, 6

# BlazePose (MediaPipe Pose, 33 landmarks) index for each OpenPose-18 body point; the neck (-1) as above.
BLAZEPOSE_TO_OPENPOSE = (0, -1, 12, 14, 16, 11, 13, 15, 24, 26, 28, 23, 25, 27, 5, 2, 8, 7)
BLAZEPOSE_LEFT_SHOULDER, BLAZEPOSE_RIGHT_SHOULDER = 11, 12
# BlazePose has one toe point per foot (foot index) and a heel: it fills both toe slots, so the toe midpoint that
# the renderer draws is that point.
BLAZEPOSE_TO_FEET = (31, 31, 29, 32, 32, 30)


def neck_from_shoulders(
    right: np.ndarray, left: np.ndarray, right_conf: np.ndarray, left_conf: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The neck as OpenPose-18 defines it: the shoulder midpoint, detected (confidence 1) only when both are.

    Works on any leading shape: points `(..., 2)`, confidences `(...)`.
    """
    both = (right_conf >= CONF_THRESHOLD) & (left_conf >= CONF_THRESHOLD)
    return (right + left) / 2.0, both.astype(np.float32)
