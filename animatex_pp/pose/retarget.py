"""Retargeting: move a driving pose sequence onto a reference character's body proportions and place.

For each of the 17 body bones, the ratio of its length in the reference pose to its length in the first driving
frame; every driving frame then has each bone scaled by its ratio (directions, hence joint angles, kept), and the
result is mapped into the reference image by a global scale and offset that put the first frame's neck on the
reference's neck. Feet follow their shin's ratio, hands their forearm's, the face the eyes' bones.

Missing points are tolerated: a bone missing from the first driving frame is measured on the first frame that
shows it; a bone missing from the reference takes its mirror bone's ratio, else the global scale; points missing
in a driving frame simply follow their parent and stay marked missing.

The character's own body plan wins: a body point the reference shows neither itself nor anything hanging from
(a mermaid's knees, an armless character's elbows) is dropped from the result with everything below it, unless
`keep_missing_parts=True`. The global scale must rest on the body: face bones alone never set it (a portrait
reference is refused), a scale more than `SCALE_BAND` times off the median of the shared body bones is clamped,
and so is one that would make the first frame's body more than `MAX_BODY_EXTENT` times the reference image, each
with a warning. A reference that faces the other way than the first driving frame (its left/right labels swapped,
as a hand-made skeleton often has them) is warned about, or fixed with `match_sides=True`.
"""

from __future__ import annotations

import logging

import numpy as np

from animatex_pp.pose import kinematics as kin
from animatex_pp.pose import skeleton as sk
from animatex_pp.pose.sequence import PoseSequence

__all__ = ["bone_ratios", "realign", "retarget"]

logger = logging.getLogger(__name__)

BODY_BONES = np.array(sorted(kin.BODY_PARENTS))  # a bone is named by its child point
TORSO_BONES = np.array([sk.R_SHOULDER, sk.L_SHOULDER, sk.R_HIP, sk.L_HIP])
FACE_BONES = np.array([sk.R_EYE, sk.L_EYE, sk.R_EAR, sk.L_EAR])
SIZING_BONES = np.setdiff1d(BODY_BONES, FACE_BONES)  # torso, limbs and neck-nose: the bones that show body size
SCALE_BAND = 2.0  # the global scale stays within this factor of the shared body bones' median ratio
MAX_BODY_EXTENT = 3.0  # the first retargeted frame's body spans at most this many times the reference image
SIDE_PAIRS = ((sk.R_SHOULDER, sk.L_SHOULDER), (sk.R_HIP, sk.L_HIP))
MIN_SIDE_SPREAD = 0.1  # left and right this far apart (share of the torso length) tell which way a body faces


def _check_pair(driving: PoseSequence, reference: PoseSequence) -> None:
    if not isinstance(driving, PoseSequence) or not isinstance(reference, PoseSequence):
        raise TypeError("driving and reference must be PoseSequence objects (see animatex_pp.pose.extract)")
    if len(reference) != 1:
        raise ValueError(
            f"the reference pose must have 1 frame (the reference image's pose), got {len(reference)}: "
            "pick one with reference[i]"
        )


def bone_ratios(driving: PoseSequence, reference: PoseSequence) -> tuple[np.ndarray, float]:
    """Per-point bone length ratios reference / driving (NUM_POINTS,), and the global scale.

    The global scale is the median ratio of the torso bones (neck to shoulders and hips) that both poses show,
    or of the shared limb and neck bones when the torso is not shown, kept within `SCALE_BAND` of the shared body
    bones' median; a ValueError when the poses share no bone, or only face bones.
    """
    _check_pair(driving, reference)
    ref_points, ref_conf = kin.to_points(reference)
    drv_points, drv_conf = kin.to_points(driving)
    ref_lengths = kin.bone_lengths(ref_points, ref_conf >= sk.CONF_THRESHOLD)[0]  # (NUM_POINTS,)
    drv_lengths = kin.bone_lengths(drv_points, drv_conf >= sk.CONF_THRESHOLD)  # (F, NUM_POINTS)
    # The first frame that shows each bone (frame 0 when it does).
    shown = ~np.isnan(drv_lengths)
    first = np.argmax(shown, axis=0)
    drv_first = np.where(shown.any(axis=0), drv_lengths[first, np.arange(kin.NUM_POINTS)], np.nan)

    body_ratio = np.full(sk.NUM_BODY, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        measured = ref_lengths[BODY_BONES] / drv_first[BODY_BONES]
    body_ratio[BODY_BONES] = np.where(np.isfinite(measured) & (measured > 0), measured, np.nan)
    scale = _global_scale(body_ratio)
    mirrored = body_ratio[list(kin.BODY_MIRROR)]
    body_ratio = np.where(np.isnan(body_ratio), mirrored, body_ratio)
    body_ratio = np.where(np.isnan(body_ratio), scale, body_ratio)

    ratios = np.full(kin.NUM_POINTS, scale)
    ratios[: sk.NUM_BODY] = body_ratio
    for side, wrist, ankle in ((sk.LEFT, sk.L_WRIST, sk.L_ANKLE), (sk.RIGHT, sk.R_WRIST, sk.R_ANKLE)):
        ratios[kin.hand_points(side)] = body_ratio[wrist]
        ratios[kin.foot_points(side)] = body_ratio[ankle]
    ratios[kin.FACE_POINTS] = (body_ratio[sk.R_EYE] + body_ratio[sk.L_EYE]) / 2
    ratios[kin.ROOT] = 1.0
    return ratios, scale


def _global_scale(body_ratio: np.ndarray) -> float:
    """The global scale from the body bones' ratios (NUM_BODY,), NaN where a bone is not shared by both poses."""
    sizing = body_ratio[SIZING_BONES]
    sizing = sizing[~np.isnan(sizing)]
    if sizing.size == 0:
        face_only = not np.isnan(body_ratio[FACE_BONES]).all()
        raise ValueError(
            "the reference and the first driving frame share only face bones, and a face cannot tell the body's size: "
            "give a reference that shows the shoulders or hips, or write its skeleton by hand (docs/pose.md)"
            if face_only
            else "the reference and driving poses share no visible bone, so their proportions cannot be compared: "
            "extract the reference pose from an image that shows the character's body"
        )
    torso = body_ratio[TORSO_BONES]
    torso = torso[~np.isnan(torso)]
    scale = float(np.median(torso if torso.size else sizing))
    median = float(np.median(sizing))
    clamped = float(np.clip(scale, median / SCALE_BAND, median * SCALE_BAND))
    if clamped != scale:
        logger.warning(
            "the torso gives a scale of %.3g but the other shared bones %.3g: the scale is clamped to %.3g (is the "
            "torso of the reference or of the first driving frame seen edge-on?)",
            scale,
            median,
            clamped,
        )
    return clamped


def _facing(points: np.ndarray, visible: np.ndarray) -> int:
    """Which way one frame's labels say the body faces: 1 the camera (its right on the image's left), -1 away,
    0 unknown (sideways, or no neck, shoulders or hips). points (NUM_POINTS, 2) pixels, visible (NUM_POINTS,)."""
    pairs = [(right, left) for right, left in SIDE_PAIRS if visible[right] and visible[left]]
    if not pairs or not visible[sk.NECK]:
        return 0
    spread = np.mean([points[left, 0] - points[right, 0] for right, left in pairs])
    size = max(np.linalg.norm(points[p] - points[sk.NECK]) for pair in pairs for p in pair)
    return 0 if abs(spread) < MIN_SIDE_SPREAD * size else int(np.sign(spread))


def _matched_sides(driving: PoseSequence, reference: PoseSequence, match_sides: bool) -> PoseSequence:
    """The reference, its left/right labels swapped when it faces the other way than the first driving frame and
    `match_sides` asks for it; otherwise such a mismatch is a warning."""
    directions = []
    for pose in (reference, driving[0]):
        points, conf = kin.to_points(pose)
        directions.append(_facing(points[0], conf[0] >= sk.CONF_THRESHOLD))
    if 0 in directions or directions[0] == directions[1]:
        return reference
    if match_sides:
        logger.warning("the reference faces the other way than the first driving frame: its left and right labels "
                       "are swapped to match (match_sides=True)")  # fmt: skip
        return kin.swap_sides(reference)
    way = {1: "the camera", -1: "away from the camera"}
    logger.warning(
        "the reference skeleton faces %s but the first driving frame faces %s: if the character faces the same way "
        "as the driver, its left and right labels are swapped (the right side is the character's own right, on "
        "the image's left when it faces the camera); swap them with match_sides=True (--match-sides)",
        way[directions[0]], way[directions[1]],
    )  # fmt: skip
    return reference


def _missing_parts(reference: PoseSequence) -> np.ndarray:
    """Unified indices of the parts the reference lacks: each body point that neither it nor anything hanging
    from it is shown, with everything hanging from it."""
    shown = kin.to_points(reference)[1][0] >= sk.CONF_THRESHOLD
    lacking = [point for point in BODY_BONES if not shown[kin.subtree(point)].any()]
    if not lacking:
        return np.zeros(0, dtype=np.int64)
    return np.unique(np.concatenate([kin.subtree(point) for point in lacking]))


def _reshape(driving: PoseSequence, reference: PoseSequence) -> tuple[np.ndarray, np.ndarray, float]:
    """Driving points in driving pixels with each bone scaled by ratio / global scale, their confidence, scale."""
    ratios, scale = bone_ratios(driving, reference)
    points, conf = kin.to_points(driving)
    reshaped = kin.scale_bones(points, conf >= sk.CONF_THRESHOLD, ratios / scale)
    return reshaped, conf, scale


def retarget(
    driving: PoseSequence, reference: PoseSequence, *, keep_missing_parts: bool = False, match_sides: bool = False
) -> PoseSequence:
    """The driving motion on the reference's body: a sequence in the reference image's frame and size.

    On the first frame every visible bone has the reference's length and the neck sits on the reference's neck;
    over time bone directions and the body's motion (scaled by the global scale) follow the driving sequence.
    Confidences and fps are the driving sequence's, except that parts the reference lacks get confidence 0
    (`keep_missing_parts=True` keeps them, sized by their mirror bone or the global scale). `match_sides=True`
    swaps the reference's left and right labels when it faces the other way than the first driving frame.
    """
    _check_pair(driving, reference)
    reference = _matched_sides(driving, reference, match_sides)
    reshaped, conf, scale = _reshape(driving, reference)
    ref_points, ref_conf = kin.to_points(reference)
    first_visible = conf[0] >= sk.CONF_THRESHOLD
    if not keep_missing_parts:
        missing = _missing_parts(reference)
        if missing.size:
            conf = conf.copy()
            conf[:, missing] = 0.0
            names = ", ".join(sk.BODY_NAMES[p] for p in missing if p < sk.NUM_BODY)
            logger.warning("the reference skeleton has no %s: the retargeted poses leave them out "
                           "(keep_missing_parts=True, --keep-missing-parts, keeps them)", names)  # fmt: skip
    scale = _fitted_scale(reshaped[0, : sk.NUM_BODY][first_visible[: sk.NUM_BODY]], scale, reference)
    anchor = _shared_anchor(conf[0], ref_conf[0])
    offset = ref_points[0, anchor].mean(axis=0) - scale * reshaped[0, anchor].mean(axis=0)  # (2,)
    return kin.from_points(driving, scale * reshaped + offset, conf, width=reference.width, height=reference.height)


def _fitted_scale(first_body: np.ndarray, scale: float, reference: PoseSequence) -> float:
    """`scale`, reduced so that the first frame's body (visible points (N, 2), before scaling) spans at most
    `MAX_BODY_EXTENT` times the reference image's width and height."""
    if len(first_body) == 0:
        return scale
    extent = first_body.max(axis=0) - first_body.min(axis=0)  # (2,) pixels
    times = float(np.max(scale * extent / (reference.width, reference.height)))
    if times <= MAX_BODY_EXTENT:
        return scale
    logger.warning(
        "the retargeted body would span %.1f times the reference image: its scale is clamped to span %g times "
        "(does the reference skeleton show the whole character?)", times, MAX_BODY_EXTENT,
    )  # fmt: skip
    return scale * MAX_BODY_EXTENT / times


def realign(driving: PoseSequence, anchor: PoseSequence) -> PoseSequence:
    """EPI pose realignment: the driving sequence with the anchor pose's body proportions, in place.

    Like `retarget`, but the bone ratios are divided by the global scale and no offset is applied, so the result
    keeps the driving sequence's image, size and position and only takes the anchor's body shape.
    """
    reshaped, _, _ = _reshape(driving, anchor)
    return kin.from_points(driving, reshaped)


def _shared_anchor(driving_conf: np.ndarray, reference_conf: np.ndarray) -> np.ndarray:
    """Points to align on: the neck when both poses show it, else every body point both show."""
    both = (driving_conf[: sk.NUM_BODY] >= sk.CONF_THRESHOLD) & (reference_conf[: sk.NUM_BODY] >= sk.CONF_THRESHOLD)
    if both[kin.ROOT]:
        return np.array([kin.ROOT])
    if not both.any():
        raise ValueError(
            "the reference pose and the first driving frame show no body point in common, so they cannot be "
            "aligned: trim the driving sequence to start on a frame where the person is visible"
        )
    return np.flatnonzero(both)
