"""Retargeting: move a driving pose sequence onto a reference character's body proportions and place.

For each of the 17 body bones, the ratio of its length in the reference pose to its length in the first driving
frame; every driving frame then has each bone scaled by its ratio (directions, hence joint angles, kept), and the
result is mapped into the reference image by a global scale and offset that put the first frame's neck on the
reference's neck. Feet follow their shin's ratio, hands their forearm's, the face the eyes' bones.

Missing points are tolerated: a bone missing from the first driving frame is measured on the first frame that
shows it; a bone missing from the reference takes its mirror bone's ratio, else the global scale; points missing
in a driving frame simply follow their parent and stay marked missing.
"""

from __future__ import annotations

import numpy as np

from animatex_pp.pose import kinematics as kin
from animatex_pp.pose import skeleton as sk
from animatex_pp.pose.sequence import PoseSequence

__all__ = ["bone_ratios", "realign", "retarget"]

BODY_BONES = np.array(sorted(kin.BODY_PARENTS))  # a bone is named by its child point
TORSO_BONES = np.array([sk.R_SHOULDER, sk.L_SHOULDER, sk.R_HIP, sk.L_HIP])


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
    or of all shared bones when the torso is not shown; a ValueError when the poses share no bone.
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
    torso = body_ratio[TORSO_BONES]
    shared = torso[~np.isnan(torso)] if not np.isnan(torso).all() else body_ratio[~np.isnan(body_ratio)]
    if shared.size == 0:
        raise ValueError(
            "the reference and driving poses share no visible bone, so their proportions cannot be compared: "
            "extract the reference pose from an image that shows the character's body"
        )
    scale = float(np.median(shared))
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


def _reshape(driving: PoseSequence, reference: PoseSequence) -> tuple[np.ndarray, np.ndarray, float]:
    """Driving points in driving pixels with each bone scaled by ratio / global scale, their confidence, scale."""
    ratios, scale = bone_ratios(driving, reference)
    points, conf = kin.to_points(driving)
    reshaped = kin.scale_bones(points, conf >= sk.CONF_THRESHOLD, ratios / scale)
    return reshaped, conf, scale


def retarget(driving: PoseSequence, reference: PoseSequence) -> PoseSequence:
    """The driving motion on the reference's body: a sequence in the reference image's frame and size.

    On the first frame every visible bone has the reference's length and the neck sits on the reference's neck;
    over time bone directions and the body's motion (scaled by the global scale) follow the driving sequence.
    Confidences and fps are the driving sequence's.
    """
    reshaped, conf, scale = _reshape(driving, reference)
    ref_points, ref_conf = kin.to_points(reference)
    anchor = _shared_anchor(conf[0], ref_conf[0])
    offset = ref_points[0, anchor].mean(axis=0) - scale * reshaped[0, anchor].mean(axis=0)  # (2,)
    return kin.from_points(driving, scale * reshaped + offset, width=reference.width, height=reference.height)


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
