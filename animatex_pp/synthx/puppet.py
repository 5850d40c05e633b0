"""Forward kinematics: a body plan performs a motion with its own bones, and is placed in the frame.

`pose_body` hangs the body's bone lengths on the motion's angles from the neck, giving named points per frame in
body units; `place` scales and moves them into a frame (one transform for the whole clip, so the puppet never
leaves it); `Skeleton.keypoints` gives the OpenPose-18 points with a confidence of 0 for parts the body lacks.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from animatex_pp.pose import skeleton as sk
from animatex_pp.synthx.bodies import BodyPlan
from animatex_pp.synthx.motions import Motion

__all__ = ["OPENPOSE_NAMES", "Skeleton", "fit", "place", "pose_body"]

# Point names in OpenPose-18 order (skeleton.py's indices).
OPENPOSE_NAMES = ("nose", "neck", "r_shoulder", "r_elbow", "r_wrist", "l_shoulder", "l_elbow", "l_wrist", "r_hip",
                  "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle", "r_eye", "l_eye", "r_ear", "l_ear")  # fmt: skip
TAIL_SEGMENTS = 6
# The share of the frame (inside the margin) the puppet's whole-clip bounding box fills, and the margin: the
# character as big as the frame allows, so its parts are as many pixels wide as they can be.
FILL = (0.85, 1.0)
MARGIN = 0.02


def _unit(angle: np.ndarray) -> np.ndarray:
    return np.stack([np.cos(angle), np.sin(angle)], axis=-1)  # (..., 2)


@dataclass(frozen=True)
class Skeleton:
    """Named points (F, 2) and part axis angles (F,) of one puppet over a clip; `unit` = pixels per body unit."""

    body: BodyPlan
    points: dict[str, np.ndarray]
    axes: dict[str, np.ndarray]
    facing: np.ndarray
    unit: float = 1.0

    def __len__(self) -> int:
        return len(self.facing)

    def keypoints(self) -> tuple[np.ndarray, np.ndarray]:
        """OpenPose-18 points (F, 18, 2) and confidences (F, 18): 0 where the body lacks the part, and for the nose
        and eyes when the puppet faces away."""
        points = np.stack([self.points[name] for name in OPENPOSE_NAMES], axis=1)  # (F, 18, 2)
        conf = np.ones(points.shape[:2], dtype=np.float32)
        if "r_forearm" not in self.body.parts:
            conf[:, [sk.R_ELBOW, sk.R_WRIST, sk.L_ELBOW, sk.L_WRIST]] = 0
        if "r_shin" not in self.body.parts:
            conf[:, [sk.R_KNEE, sk.R_ANKLE, sk.L_KNEE, sk.L_ANKLE]] = 0
        away = self.facing < 0
        conf[np.ix_(away, [sk.NOSE, sk.R_EYE, sk.L_EYE])] = 0
        return points, conf

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Corners (min, max) of a box holding every drawn part over the whole clip, in the points' units."""
        pad = max(self.body["limb_width"], self.body["neck_width"]) * 2 * self.unit
        stacked = np.concatenate([p for name, p in self.points.items() if name != "head_centre"])
        radius = self.body["head"] * self.unit * (1 + ("ears" in self.body.parts) * self.body["ears"])
        centre = self.points["head_centre"]
        low = np.minimum(stacked.min(axis=0) - pad, (centre - radius).min(axis=0))
        high = np.maximum(stacked.max(axis=0) + pad, (centre + radius).max(axis=0))
        return low, high


def pose_body(body: BodyPlan, motion: Motion) -> Skeleton:
    """The motion performed by this body, in body units with the neck at the motion's root."""
    angle = {name: motion.angle(name) for name in ("spine", "head", "r_upper_arm", "r_forearm", "l_upper_arm",
                                                   "l_forearm", "r_thigh", "r_shin", "l_thigh", "l_shin")}  # fmt: skip
    facing = motion.facing[:, None]  # (F, 1): scales every left-right width
    neck = motion.root.astype(np.float64)
    spine = angle["spine"]
    side = _unit(spine - np.pi / 2)  # toward the puppet's left (the image's right when facing the camera)
    pelvis = neck + body["torso"] * _unit(spine)
    points = {"neck": neck, "pelvis": pelvis}
    for sign, name in ((-1, "r"), (1, "l")):
        points[f"{name}_shoulder"] = neck + sign * body["shoulders"] * facing * side
        points[f"{name}_hip"] = pelvis + sign * body["hips"] * facing * side
    for limb, joint, end, first, second in (("r", "elbow", "wrist", "upper_arm", "forearm"),
                                            ("l", "elbow", "wrist", "upper_arm", "forearm"),
                                            ("r", "knee", "ankle", "thigh", "shin"),
                                            ("l", "knee", "ankle", "thigh", "shin")):  # fmt: skip
        root = points[f"{limb}_shoulder" if joint == "elbow" else f"{limb}_hip"]
        points[f"{limb}_{joint}"] = root + body[first] * _unit(angle[f"{limb}_{first}"])
        points[f"{limb}_{end}"] = points[f"{limb}_{joint}"] + body[second] * _unit(angle[f"{limb}_{second}"])

    head_axis = spine + np.pi + angle["head"]  # pointing from the chin to the crown
    up, head_side = _unit(head_axis), _unit(head_axis + np.pi / 2)
    radius = body["head"]
    centre = neck + (body["neck"] + radius) * up
    points["head_centre"] = centre
    points["nose"] = centre - 0.2 * radius * up
    for sign, name in ((-1, "r"), (1, "l")):
        points[f"{name}_eye"] = centre + 0.1 * radius * up + sign * 0.38 * radius * facing * head_side
        points[f"{name}_ear"] = centre + sign * 0.95 * radius * facing * head_side

    axes = {"torso": spine, "neck": head_axis, "head": head_axis, "eyes": head_axis, "ears": head_axis}
    for name in ("r_upper_arm", "r_forearm", "l_upper_arm", "l_forearm", "r_thigh", "r_shin", "l_thigh", "l_shin"):
        axes[name] = angle[name]
    if "tail" in body.parts:
        # The tail leaves the pelvis toward the puppet's left and curls up; it wags on its own clock.
        wag = 0.45 * np.sin(2 * np.pi * 1.3 * motion.time)
        base = spine - np.sign(motion.facing) * 65 * np.pi / 180
        tail = [pelvis]
        for k in range(1, TAIL_SEGMENTS + 1):
            direction = base - np.sign(motion.facing) * (0.2 * k - wag * k / TAIL_SEGMENTS)
            tail.append(tail[-1] + body["tail"] / TAIL_SEGMENTS * _unit(direction))
        points.update({f"tail_{k}": p for k, p in enumerate(tail)})
        axes["tail"] = base
    if "fin" in body.parts:
        # One tapering lower body in place of the legs, bending as the mean of the two legs would.
        thigh = np.angle(np.exp(1j * angle["r_thigh"]) + np.exp(1j * angle["l_thigh"]))
        shin = np.angle(np.exp(1j * angle["r_shin"]) + np.exp(1j * angle["l_shin"]))
        points["fin_mid"] = pelvis + body["thigh"] * _unit(thigh)
        points["fin_tip"] = points["fin_mid"] + body["shin"] * _unit(shin)
        axes["fin"], axes["fin_tip"] = thigh, shin
    return Skeleton(body=body, points=points, axes=axes, facing=motion.facing.astype(np.float64))


def place(skeleton: Skeleton, scale: float, offset: np.ndarray) -> Skeleton:
    """The skeleton in pixels: every point `p -> p * scale + offset`; part sizes follow through `unit`."""
    points = {name: p * scale + offset for name, p in skeleton.points.items()}
    return replace(skeleton, points=points, unit=skeleton.unit * scale)


def fit(
    skeletons: list[Skeleton], size: int, rng: np.random.Generator, margin: float | None = None
) -> tuple[float, np.ndarray]:
    """A scale and offset that keep all of `skeletons` (in body units, one puppet) inside a size x size frame.

    The puppet fills `FILL` (85-100%) of the room left by the margin, at a random place in what is left over.
    """
    margin = MARGIN if margin is None else margin
    lows, highs = zip(*(s.bounds() for s in skeletons), strict=True)
    low, high = np.min(lows, axis=0), np.max(highs, axis=0)
    room = size * (1 - 2 * margin)
    scale = room / float(np.max(high - low)) * float(rng.uniform(*FILL))
    slack = room - (high - low) * scale
    offset = size * margin + slack * rng.uniform(0, 1, size=2) - low * scale
    return scale, offset
