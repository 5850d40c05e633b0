"""EPI augmentation (Animate-X section 3.2): training poses whose body shape differs from the video's person.

With probability λ a driving sequence is (1) realigned to an anchor pose drawn from a pool (it keeps its motion
and place but takes the anchor's bone proportions), then (2) reshaped by a random combination of rescale ops, and
(3) may lose a part or gain a mirrored one. One plan is drawn per sequence and applied to all of its frames, so the
body stays consistent over time. Every op is also a public function, with the geometric property it claims in its
docstring and a test of it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from animatex_pp.pose import kinematics as kin
from animatex_pp.pose import skeleton as sk
from animatex_pp.pose.retarget import realign
from animatex_pp.pose.sequence import PoseSequence

__all__ = [
    "ADDABLE_PARTS",
    "DROPPABLE_PARTS",
    "EPIAugment",
    "EPIPlan",
    "RESCALE_OPS",
    "add_part",
    "drop_part",
    "rescale",
]

# The bones (named by their child point) each rescale op lengthens or shortens.
RESCALE_BONES = {
    "body": np.array([sk.R_HIP, sk.L_HIP]),
    "legs": np.array([sk.R_KNEE, sk.R_ANKLE, sk.L_KNEE, sk.L_ANKLE]),
    "arms": np.array([sk.R_ELBOW, sk.R_WRIST, sk.L_ELBOW, sk.L_WRIST]),
    "neck": np.array([sk.NOSE]),
    "shoulders": np.array([sk.R_SHOULDER, sk.L_SHOULDER]),
    "face": np.concatenate([[sk.R_EYE, sk.L_EYE, sk.R_EAR, sk.L_EAR], kin.FACE_POINTS]),  # (4 + NUM_FACE,)
}
RESCALE_OPS = tuple(RESCALE_BONES)
DEFAULT_SCALE_RANGES = {
    "body": (0.8, 1.25),
    "legs": (0.6, 1.3),
    "arms": (0.6, 1.3),
    "neck": (0.5, 1.6),
    "shoulders": (0.6, 1.4),
    "face": (0.7, 2.0),
}

# Parts by the point their subtree starts at; shoulders and hips stay, they carry the neck and the torso.
PART_ROOTS = {"left_arm": sk.L_ELBOW, "right_arm": sk.R_ELBOW, "left_leg": sk.L_KNEE, "right_leg": sk.R_KNEE,
              "head": sk.NOSE}  # fmt: skip
PART_POINTS = {name: kin.subtree(root) for name, root in PART_ROOTS.items()}
PART_POINTS["hands"] = np.concatenate([kin.hand_points(sk.LEFT), kin.hand_points(sk.RIGHT)])  # 2 x (21,) -> (42,)
PART_POINTS["feet"] = np.concatenate([kin.foot_points(sk.LEFT), kin.foot_points(sk.RIGHT)])  # 2 x (3,) -> (6,)
DROPPABLE_PARTS = tuple(PART_POINTS)
ADDABLE_PARTS = ("left_arm", "right_arm", "left_leg", "right_leg")


def rescale(pose: PoseSequence, op: str, factor: float) -> PoseSequence:
    """Multiply the length of the bones of `op` by `factor`, keeping every bone's direction.

    body: neck-hip bones (torso length and hip width); legs: thighs and shins; arms: upper arms and forearms;
    neck: neck-nose; shoulders: neck-shoulder bones; face: the head about the nose (eyes, ears, face points). Every
    other bone keeps its length; what hangs below a scaled bone moves with it. The neck does not move.
    """
    if op not in RESCALE_BONES:
        raise ValueError(f"unknown rescale op {op!r}: choose one of {', '.join(RESCALE_OPS)}")
    if not (math.isfinite(factor) and factor > 0):
        raise ValueError(f"rescale factor must be a positive number, got {factor}")
    points, conf = kin.to_points(pose)
    scale = np.ones(kin.NUM_POINTS)
    scale[RESCALE_BONES[op]] = factor
    return kin.from_points(pose, kin.scale_bones(points, conf >= sk.CONF_THRESHOLD, scale))


def drop_part(pose: PoseSequence, part: str) -> PoseSequence:
    """Remove a part in every frame (confidence 0): an arm (elbow, wrist, hand), a leg (knee, ankle, foot), the
    head (nose, eyes, ears, face), both hands or both feet. Nothing else changes."""
    if part not in PART_POINTS:
        raise ValueError(f"unknown part {part!r}: choose one of {', '.join(DROPPABLE_PARTS)}")
    points, conf = kin.to_points(pose)
    conf = conf.copy()
    conf[:, PART_POINTS[part]] = 0.0
    return kin.from_points(pose, points, conf)


def _body_axis(points: np.ndarray, visible: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per frame, a point on the body's midline (the neck) and its unit direction (towards the mid-hip, else down)."""
    neck = points[:, sk.NECK]
    hips_shown = visible[:, sk.R_HIP] & visible[:, sk.L_HIP]
    direction = np.where(hips_shown[:, None], (points[:, sk.R_HIP] + points[:, sk.L_HIP]) / 2 - neck, (0.0, 1.0))
    length = np.linalg.norm(direction, axis=-1, keepdims=True)
    direction = np.where(length > 1e-9, direction / np.maximum(length, 1e-9), (0.0, 1.0))
    return neck, direction


def add_part(pose: PoseSequence, part: str) -> PoseSequence:
    """Give a missing arm or leg: in each frame where the part's first joint (elbow or knee) is missing and the
    other side's is shown, the other side's limb (with its hand or foot) mirrored across the body's midline
    (neck to mid-hip), attached at this side's shoulder or hip. Frames where the part is shown are unchanged."""
    if part not in ADDABLE_PARTS:
        raise ValueError(f"part {part!r} cannot be added: choose one of {', '.join(ADDABLE_PARTS)}")
    points, conf = kin.to_points(pose)
    visible = conf >= sk.CONF_THRESHOLD
    target, source = PART_POINTS[part], kin.MIRROR[PART_POINTS[part]]
    root = PART_ROOTS[part]
    attach, source_attach = kin.PARENTS[root], kin.PARENTS[kin.MIRROR[root]]
    frames = ~visible[:, root] & visible[:, kin.MIRROR[root]] & visible[:, attach] & visible[:, sk.NECK]
    if not frames.any():
        return pose
    neck, direction = _body_axis(points, visible)
    # neck, direction (F, 2) -> (F, 1, 2) to broadcast over the part's points
    relative = points[:, source] - neck[:, None]  # (F, part points, 2)
    along = (relative * direction[:, None]).sum(-1, keepdims=True) * direction[:, None]  # (F, part points, 2)
    mirrored = neck[:, None] + 2 * along - relative  # (F, part points, 2)
    # Mirrored limbs hang from the mirrored attachment; move them onto this side's real shoulder or hip.
    attach_relative = points[:, source_attach] - neck  # (F, 2)
    attach_along = (attach_relative * direction).sum(-1, keepdims=True) * direction  # (F, 2)
    mirrored_attach = neck + 2 * attach_along - attach_relative  # (F, 2)
    mirrored += (points[:, attach] - mirrored_attach)[:, None]  # (F, 2) -> (F, 1, 2), one shift for the whole part
    points, conf = points.copy(), conf.copy()
    points[np.ix_(frames, target)] = mirrored[frames]
    conf[np.ix_(frames, target)] = conf[np.ix_(frames, source)]
    return kin.from_points(pose, points, conf)


@dataclass(frozen=True)
class EPIPlan:
    """One draw of the augmentation: anchor (pool entry, frame) or None, rescale factors, parts dropped and added."""

    anchor: tuple[int, int] | None = None
    factors: Mapping[str, float] = field(default_factory=dict)
    drop: tuple[str, ...] = ()
    add: tuple[str, ...] = ()


class EPIAugment:
    """Random EPI augmentation of driving pose sequences for training; deterministic under `seed`.

    pose_pool: anchor poses for realignment (a PoseSequence whose frames are anchors, or a list of them); frames
        without a full torso (neck, shoulders, hips) are not used as anchors. None: no realignment.
    probability: λ, the chance a sequence is augmented at all (Animate-X: at least 0.98).
    rescale_probability: the chance of each rescale op, independently; its factor is log-uniform in
        `scale_ranges[op]` (defaults in `DEFAULT_SCALE_RANGES`; give a partial mapping to override some).
    drop_probability / add_probability: the chance of dropping one random part / adding one missing limb.
    """

    def __init__(
        self,
        pose_pool: PoseSequence | Sequence[PoseSequence] | None = None,
        probability: float = 0.98,
        rescale_probability: float = 0.5,
        scale_ranges: Mapping[str, tuple[float, float]] | None = None,
        drop_probability: float = 0.1,
        add_probability: float = 0.1,
        seed: int | None = None,
    ):
        for name, value in (("probability", probability), ("rescale_probability", rescale_probability),
                            ("drop_probability", drop_probability), ("add_probability", add_probability)):  # fmt: skip
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        unknown = set(scale_ranges or {}) - set(RESCALE_OPS)
        if unknown:
            raise ValueError(f"unknown rescale ops {sorted(unknown)} in scale_ranges: choose from {RESCALE_OPS}")
        self.scale_ranges = {**DEFAULT_SCALE_RANGES, **(scale_ranges or {})}
        for op, (low, high) in self.scale_ranges.items():
            if not 0 < low <= high:
                raise ValueError(f"scale range of {op} must satisfy 0 < low <= high, got ({low}, {high})")
        self.pool = [pose_pool] if isinstance(pose_pool, PoseSequence) else list(pose_pool or [])
        self.anchors = self._anchor_frames()
        self.probability, self.rescale_probability = probability, rescale_probability
        self.drop_probability, self.add_probability = drop_probability, add_probability
        self.rng = np.random.default_rng(seed)

    def _anchor_frames(self) -> list[tuple[int, int]]:
        torso = [sk.NECK, sk.R_SHOULDER, sk.L_SHOULDER, sk.R_HIP, sk.L_HIP]
        anchors = []
        for entry, pose in enumerate(self.pool):
            if not isinstance(pose, PoseSequence):
                raise TypeError(f"pose_pool entry {entry} is a {type(pose).__name__}, not a PoseSequence")
            full = (pose.body_conf[:, torso] >= sk.CONF_THRESHOLD).all(axis=1)
            anchors.extend((entry, int(frame)) for frame in np.flatnonzero(full))
        if self.pool and not anchors:
            raise ValueError("no frame of pose_pool shows a full torso (neck, shoulders, hips) to use as an anchor")
        return anchors

    def sample(self, rng: np.random.Generator | int | None = None) -> EPIPlan | None:
        """Draw a plan, or None when this sequence is left as it is (probability 1 - λ)."""
        rng = self.rng if rng is None else np.random.default_rng(rng)
        if rng.random() >= self.probability:
            return None
        anchor = self.anchors[rng.integers(len(self.anchors))] if self.anchors else None
        factors = {}
        for op in RESCALE_OPS:
            low, high = self.scale_ranges[op]
            if rng.random() < self.rescale_probability:
                factors[op] = float(math.exp(rng.uniform(math.log(low), math.log(high))))
        drop = (DROPPABLE_PARTS[rng.integers(len(DROPPABLE_PARTS))],) if rng.random() < self.drop_probability else ()
        add = (ADDABLE_PARTS[rng.integers(len(ADDABLE_PARTS))],) if rng.random() < self.add_probability else ()
        return EPIPlan(anchor=anchor, factors=factors, drop=drop, add=add)

    def apply(self, pose: PoseSequence, plan: EPIPlan | None) -> PoseSequence:
        """Apply a plan: realign to its anchor, rescale, drop, then add."""
        if plan is None:
            return pose
        if plan.anchor is not None:
            entry, frame = plan.anchor
            try:
                pose = realign(pose, self.pool[entry][frame])
            except ValueError:
                pass  # the driving sequence shows no bone the anchor shows: there is no shape to transfer
        for op, factor in plan.factors.items():
            pose = rescale(pose, op, factor)
        for part in plan.drop:
            pose = drop_part(pose, part)
        for part in plan.add:
            pose = add_part(pose, part)
        return pose

    def __call__(self, pose: PoseSequence, rng: np.random.Generator | int | None = None) -> PoseSequence:
        """Augment one driving sequence (from this object's seeded generator, or from `rng` when given)."""
        return self.apply(pose, self.sample(rng))
