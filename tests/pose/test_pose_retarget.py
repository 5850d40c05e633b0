"""Retargeting on synthetic skeletons of known proportions: lengths from the reference, angles and motion from the
driving sequence; missing points tolerated."""

import logging

import numpy as np
import pytest

from animatex_pp.pose import realign, render, retarget
from animatex_pp.pose.kinematics import swap_sides
from animatex_pp.pose.retarget import MAX_BODY_EXTENT, bone_ratios
from tests.helpers.poses import (
    BONES,
    HUMAN_LENGTHS,
    STANDING_ANGLES,
    body_pixels,
    bone_angle,
    bone_length,
    make_pose,
    pixels_of,
)

# The reference character: a big head, long arms, short legs, a torso 1.5x the driving person's.
CHARACTER_LENGTHS = {
    **{name: 1.5 * length for name, length in HUMAN_LENGTHS.items()},
    "neck_nose": 110.0, "r_upper_arm": 150.0, "l_upper_arm": 150.0, "r_forearm": 140.0, "l_forearm": 140.0,
    "r_thigh": 90.0, "l_thigh": 90.0, "r_shin": 80.0, "l_shin": 80.0, "r_eye": 40.0, "l_eye": 40.0,
}  # fmt: skip
TORSO_RATIO = 1.5  # every torso bone (neck to shoulders and hips) is 1.5x in the character
REF_NECK = np.array([420.0, 300.0])
NUM_FRAMES = 6


def driving_angles(frame: int) -> dict:
    """Waving arms, stepping legs and a nodding head: every bone turns over time."""
    t = frame / (NUM_FRAMES - 1)
    angles = dict(STANDING_ANGLES)
    angles["r_upper_arm"] += 1.2 * t
    angles["r_forearm"] += 2.0 * t
    angles["l_upper_arm"] -= 0.9 * t
    angles["l_thigh"] -= 0.5 * t
    angles["r_shin"] += 0.4 * t
    angles["neck_nose"] += 0.3 * t
    angles["r_torso"] += 0.1 * t
    return angles


def driving_neck(frame: int) -> np.ndarray:
    return np.array([300.0 + 25 * frame, 200.0 - 4 * frame])


def driving_pose(conf=None):
    frames = [body_pixels(HUMAN_LENGTHS, driving_angles(f), driving_neck(f)) for f in range(NUM_FRAMES)]
    return make_pose(frames, width=720, height=940, fps=29.97, conf=conf)


def reference_pose(conf=None):
    return make_pose([body_pixels(CHARACTER_LENGTHS, STANDING_ANGLES, REF_NECK)], width=832, height=1216, conf=conf)


def test_lengths_from_reference_angles_and_motion_from_driving():
    result = retarget(driving_pose(), reference_pose())
    assert (result.width, result.height, result.fps, len(result)) == (832, 1216, 29.97, NUM_FRAMES)
    pixels = pixels_of(result)
    for name in BONES:
        np.testing.assert_allclose(bone_length(pixels, name), CHARACTER_LENGTHS[name], rtol=1e-5)
        expected_angles = [driving_angles(f)[name] for f in range(NUM_FRAMES)]
        np.testing.assert_allclose(np.cos(bone_angle(pixels, name) - expected_angles), 1.0, atol=1e-9)
    # The neck starts on the reference's neck and moves as the driving neck does, scaled by the torso ratio.
    expected_neck = REF_NECK + TORSO_RATIO * (np.stack([driving_neck(f) for f in range(NUM_FRAMES)]) - driving_neck(0))
    np.testing.assert_allclose(pixels[:, 1], expected_neck, atol=1e-3)


def test_first_frame_matches_the_reference_pose():
    reference = reference_pose()
    result = retarget(driving_pose(), reference)
    # Frame 0 stands as the reference does, so retargeting gives back the reference skeleton itself.
    np.testing.assert_allclose(pixels_of(result)[0], pixels_of(reference)[0], atol=1e-3)


def test_confidences_are_the_driving_ones():
    conf = np.ones((NUM_FRAMES, 18))
    conf[2, 7] = 0.1
    result = retarget(driving_pose(conf), reference_pose())
    np.testing.assert_array_equal(result.body_conf, conf.astype(np.float32))


def test_bone_missing_in_the_reference_takes_its_mirror_ratio():
    conf = np.ones((1, 18))
    conf[0, [6, 7]] = 0.0  # the reference's left elbow and wrist are not seen
    result = pixels_of(retarget(driving_pose(), reference_pose(conf), keep_missing_parts=True))
    # Left upper arm and forearm scale as the right ones do.
    for name, mirror in (("l_upper_arm", "r_upper_arm"), ("l_forearm", "r_forearm")):
        ratio = CHARACTER_LENGTHS[mirror] / HUMAN_LENGTHS[mirror]
        np.testing.assert_allclose(bone_length(result, name), ratio * HUMAN_LENGTHS[name], rtol=1e-5)


def test_bone_missing_on_both_sides_takes_the_global_scale():
    conf = np.ones((1, 18))
    conf[0, [9, 12]] = 0.0  # no knees in the reference: neither thigh nor shin can be measured
    result = pixels_of(retarget(driving_pose(), reference_pose(conf), keep_missing_parts=True))
    for name in ("r_thigh", "l_thigh", "r_shin", "l_shin"):
        np.testing.assert_allclose(bone_length(result, name), TORSO_RATIO * HUMAN_LENGTHS[name], rtol=1e-5)


def test_bone_missing_in_the_first_driving_frame_is_measured_later():
    conf = np.ones((NUM_FRAMES, 18))
    conf[:2, 4] = 0.0  # the right wrist appears from frame 2
    result = retarget(driving_pose(conf), reference_pose())
    pixels = pixels_of(result)
    np.testing.assert_allclose(bone_length(pixels[2:], "r_forearm"), CHARACTER_LENGTHS["r_forearm"], rtol=1e-5)
    # Other bones are unaffected by the gap.
    np.testing.assert_allclose(bone_length(pixels, "l_forearm"), CHARACTER_LENGTHS["l_forearm"], rtol=1e-5)


def test_a_missing_driving_point_does_not_break_its_children():
    conf = np.ones((NUM_FRAMES, 18))
    conf[3, 3] = 0.0  # right elbow lost in frame 3: the wrist follows the shoulder
    result = pixels_of(retarget(driving_pose(conf), reference_pose()))
    assert np.isfinite(result).all()
    # The wrist moves with the shoulder, keeping its offset from the driving frame scaled by the torso ratio.
    driving = pixels_of(driving_pose())
    offset = TORSO_RATIO * (driving[3, 4] - driving[3, 2])
    np.testing.assert_allclose(result[3, 4] - result[3, 2], offset, atol=1e-3)


def test_hands_feet_and_face_follow_their_limbs():
    driving = pixels_of(driving_pose())
    hands = np.zeros((NUM_FRAMES, 2, 21, 2))
    hands[:, 1] = driving[:, None, 4] + np.linspace(0, 20, 21)[:, None] * np.array([1.0, 0.5])  # right hand
    hands[:, 0] = driving[:, None, 7] + 5.0
    feet = driving[:, [13, 13, 13, 10, 10, 10]] + np.array([10.0, 15.0])  # left foot by the left ankle, ...
    face = driving[:, None, 0] + np.linspace(-10, 10, 68)[:, None]
    pose = make_pose(
        driving, 720, 940, hands=(hands, np.ones((NUM_FRAMES, 2, 21))), feet=(feet, np.ones((NUM_FRAMES, 6))),
        face=(face, np.ones((NUM_FRAMES, 68))),
    )  # fmt: skip
    result = retarget(pose, reference_pose())
    body = pixels_of(result)
    forearm_ratio = CHARACTER_LENGTHS["r_forearm"] / HUMAN_LENGTHS["r_forearm"]
    new_hand = result.hands[:, 1].astype(float) * (832, 1216)
    np.testing.assert_allclose(
        new_hand - body[:, None, 4], forearm_ratio * (hands[:, 1] - driving[:, None, 4]), atol=2e-3
    )
    shin_ratio = CHARACTER_LENGTHS["l_shin"] / HUMAN_LENGTHS["l_shin"]
    new_feet = result.feet.astype(float) * (832, 1216)
    np.testing.assert_allclose(new_feet[:, 0] - body[:, 13], shin_ratio * (feet[:, 0] - driving[:, 13]), atol=2e-3)
    eye_ratio = CHARACTER_LENGTHS["r_eye"] / HUMAN_LENGTHS["r_eye"]
    new_face = result.face.astype(float) * (832, 1216)
    np.testing.assert_allclose(new_face - body[:, None, 0], eye_ratio * (face - driving[:, None, 0]), atol=2e-3)


def test_realign_keeps_place_and_size_and_takes_proportions():
    anchor = reference_pose()
    result = realign(driving_pose(), anchor)
    assert (result.width, result.height) == (720, 940)
    pixels = pixels_of(result)
    np.testing.assert_allclose(pixels[:, 1], pixels_of(driving_pose())[:, 1], atol=1e-3)  # the neck stays
    # Every bone is the anchor's length divided by the anchor/driving torso ratio: the anchor's proportions at the
    # driving person's size.
    for name in BONES:
        np.testing.assert_allclose(bone_length(pixels, name), CHARACTER_LENGTHS[name] / TORSO_RATIO, rtol=1e-5)


def test_a_legless_character_gets_no_legs():
    conf = np.ones((1, 18))
    conf[0, [9, 10, 12, 13]] = 0.0  # a mermaid: hips, no knees or ankles
    feet = np.zeros((NUM_FRAMES, 6, 2)), np.ones((NUM_FRAMES, 6))
    driving = make_pose(pixels_of(driving_pose()), 720, 940, feet=feet)
    result = retarget(driving, reference_pose(conf))
    assert (result.body_conf[:, [9, 10, 12, 13]] == 0).all() and (result.feet_conf == 0).all()
    assert (result.body_conf[:, [8, 11]] == 1).all()  # the hips stay: the reference shows them
    drawn = render(result, 1216, 832)
    assert drawn[:, 900:].max() == 0  # nothing drawn below the tail's start (the hips are at y ~ 540)
    kept = retarget(driving, reference_pose(conf), keep_missing_parts=True)
    assert (kept.body_conf == 1).all() and (kept.feet_conf == 1).all()


def test_an_armless_character_gets_no_arms_but_an_occluded_elbow_is_kept(caplog):
    conf = np.ones((1, 18))
    conf[0, [3, 4, 6, 7]] = 0.0  # no elbows or wrists
    hands = np.zeros((NUM_FRAMES, 2, 21, 2)), np.ones((NUM_FRAMES, 2, 21))
    driving = make_pose(pixels_of(driving_pose()), 720, 940, hands=hands)
    with caplog.at_level(logging.WARNING, logger="animatex_pp.pose"):
        result = retarget(driving, reference_pose(conf))
    assert (result.body_conf[:, [3, 4, 6, 7]] == 0).all() and (result.hands_conf == 0).all()
    assert "no right elbow, right wrist, left elbow, left wrist" in caplog.text and "keep_missing_parts" in caplog.text
    conf = np.ones((1, 18))
    conf[0, 3] = 0.0  # the right elbow hidden behind the body, the wrist seen: the arm is there
    assert (retarget(driving, reference_pose(conf)).body_conf == 1).all()


def test_a_face_alone_cannot_size_the_body():
    conf = np.zeros((1, 18))
    conf[0, [0, 14, 15, 16, 17]] = 1.0  # a portrait: nose, eyes, ears
    with pytest.raises(ValueError, match="only face bones"):
        retarget(driving_pose(), reference_pose(conf))


def test_a_scale_the_other_bones_do_not_support_is_clamped(caplog):
    # The reference's torso bones are 7x the driving ones (a torso seen through a fisheye), every other bone 1.2x.
    lengths = {name: 1.2 * length for name, length in HUMAN_LENGTHS.items()}
    lengths.update({name: 7 * HUMAN_LENGTHS[name] for name in ("r_shoulder", "l_shoulder", "r_torso", "l_torso")})
    reference = make_pose([body_pixels(lengths, STANDING_ANGLES, (2000, 1000))], width=4000, height=4000)
    with caplog.at_level(logging.WARNING, logger="animatex_pp.pose"):
        _, scale = bone_ratios(driving_pose(), reference)
    assert scale == pytest.approx(1.2 * 2.0)  # the median of the shared body bones times SCALE_BAND
    assert "clamped" in caplog.text


def test_a_body_far_larger_than_the_image_is_clamped(caplog):
    # A skeleton about 6x too tall for its 300x400 image (hand-made in the wrong pixel units).
    lengths = {name: 5 * length for name, length in CHARACTER_LENGTHS.items()}
    reference = make_pose([body_pixels(lengths, STANDING_ANGLES, (150, 100))], width=300, height=400)
    with caplog.at_level(logging.WARNING, logger="animatex_pp.pose"):
        result = pixels_of(retarget(driving_pose(), reference))
    extent = result[0].max(axis=0) - result[0].min(axis=0)
    assert np.max(extent / (300, 400)) == pytest.approx(MAX_BODY_EXTENT)
    assert "would span" in caplog.text


def test_swapped_left_and_right_are_flagged_or_fixed(caplog):
    reference = reference_pose()
    swapped = swap_sides(reference)  # the character faces the camera but is labelled as facing away
    with caplog.at_level(logging.WARNING, logger="animatex_pp.pose"):
        retarget(driving_pose(), swapped)
    assert "faces away from the camera but the first driving frame faces the camera" in caplog.text
    assert "match_sides=True" in caplog.text
    fixed = retarget(driving_pose(), swapped, match_sides=True)
    np.testing.assert_allclose(pixels_of(fixed), pixels_of(retarget(driving_pose(), reference)), atol=1e-4)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="animatex_pp.pose"):
        retarget(driving_pose(), reference)
    assert "faces" not in caplog.text  # both face the camera: nothing to say


def test_errors():
    with pytest.raises(ValueError, match="1 frame"):
        retarget(driving_pose(), driving_pose())
    with pytest.raises(ValueError, match="no visible bone"):
        retarget(driving_pose(), reference_pose(conf=np.zeros((1, 18))))
    with pytest.raises(TypeError, match="PoseSequence"):
        retarget(np.zeros((3, 18, 2)), reference_pose())
