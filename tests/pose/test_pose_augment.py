"""EPI augmentation: each op's geometric property, and the seeded random combination with probability λ."""

import numpy as np
import pytest

from animatex_pp.pose import EPIAugment, EPIPlan
from animatex_pp.pose.augment import add_part, drop_part, rescale
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

WIDTH, HEIGHT = 720, 940
NECK = np.array([360.0, 250.0])
OP_BONES = {
    "body": ["r_torso", "l_torso"],
    "legs": ["r_thigh", "r_shin", "l_thigh", "l_shin"],
    "arms": ["r_upper_arm", "r_forearm", "l_upper_arm", "l_forearm"],
    "neck": ["neck_nose"],
    "shoulders": ["r_shoulder", "l_shoulder"],
    "face": ["r_eye", "l_eye", "r_ear", "l_ear"],
}
# Points of each part in the whole-body layout: body indices, then feet, hands (side, index) and face.
LEFT_HAND, RIGHT_HAND = 0, 1


def rotated(angles: dict, radians: float) -> dict:
    return {name: angle + radians for name, angle in angles.items()}


def full_pose(angles=STANDING_ANGLES, frames=3) -> "PoseSequence":  # noqa: F821
    """A standing figure with hands, feet and face, swaying a little over the frames."""
    body = np.stack([body_pixels(HUMAN_LENGTHS, rotated(angles, 0.05 * f), NECK + (5 * f, 0)) for f in range(frames)])
    # Fingers fan out along each forearm; the left hand is the right one's mirror image (mirroring flips the
    # perpendicular), so the whole figure stays mirror-symmetric about its midline at any tilt.
    along, across = np.linspace(4, 30, 21)[:, None], np.linspace(-8, 8, 21)[:, None]

    def hand(wrist, elbow, handedness):
        direction = (body[:, wrist] - body[:, elbow]) / HUMAN_LENGTHS["r_forearm"]  # (F, 2) unit forearm
        normal = np.stack([-direction[:, 1], direction[:, 0]], axis=-1)
        return body[:, wrist, None] + along * direction[:, None] + handedness * across * normal[:, None]

    hands = np.stack([hand(7, 6, -1.0), hand(4, 3, 1.0)], axis=1)  # (F, 2, 21, 2): left, right
    feet = body[:, [13, 13, 13, 10, 10, 10]] + np.array([[12, 10], [18, 8], [-6, 4], [-12, 10], [-18, 8], [6, 4]])
    face = body[:, 0, None] + np.stack([np.linspace(-12, 12, 68), np.cos(np.linspace(0, 6, 68)) * 10], axis=-1)
    return make_pose(
        body, WIDTH, HEIGHT,
        hands=(hands, np.ones((frames, 2, 21))), feet=(feet, np.ones((frames, 6))), face=(face, np.ones((frames, 68))),
    )  # fmt: skip


def pixels(points, pose):
    return points.astype(np.float64) * (pose.width, pose.height)


@pytest.mark.parametrize("op", sorted(OP_BONES))
@pytest.mark.parametrize("factor", [0.6, 1.45])
def test_rescale_changes_exactly_its_bones(op, factor):
    pose = full_pose()
    result = rescale(pose, op, factor)
    before, after = pixels_of(pose), pixels_of(result)
    for name in BONES:
        expected = bone_length(before, name) * (factor if name in OP_BONES[op] else 1.0)
        np.testing.assert_allclose(bone_length(after, name), expected, rtol=1e-5, err_msg=name)
        np.testing.assert_allclose(np.cos(bone_angle(after, name) - bone_angle(before, name)), 1.0, atol=1e-9)
    np.testing.assert_allclose(after[:, 1], before[:, 1], atol=1e-4)  # the neck stays
    np.testing.assert_array_equal(result.body_conf, pose.body_conf)


def test_rescale_carries_hands_and_feet_with_their_limbs():
    pose = full_pose()
    arms, legs = rescale(pose, "arms", 1.3), rescale(pose, "legs", 0.7)
    for result, wrist_or_ankle, part, index in ((arms, 4, "hands", RIGHT_HAND), (legs, 13, "feet", slice(0, 3))):
        offset_before = pixels(getattr(pose, part)[:, index], pose) - pixels_of(pose)[:, wrist_or_ankle, None]
        offset_after = pixels(getattr(result, part)[:, index], pose) - pixels_of(result)[:, wrist_or_ankle, None]
        np.testing.assert_allclose(offset_after, offset_before, atol=1e-3)


def test_rescale_face_scales_the_head_about_the_nose():
    pose = full_pose()
    result = rescale(pose, "face", 1.8)
    nose_before, nose_after = pixels_of(pose)[:, 0, None], pixels_of(result)[:, 0, None]
    np.testing.assert_allclose(nose_after, nose_before, atol=1e-4)  # the neck bone is not touched
    np.testing.assert_allclose(
        pixels(result.face, pose) - nose_after, 1.8 * (pixels(pose.face, pose) - nose_before), atol=1e-3
    )
    head = [14, 15, 16, 17]
    np.testing.assert_allclose(
        pixels_of(result)[:, head] - nose_after, 1.8 * (pixels_of(pose)[:, head] - nose_before), atol=1e-3
    )


DROPPED = {
    "left_arm": ([6, 7], "hands", (slice(None), LEFT_HAND)),
    "right_arm": ([3, 4], "hands", (slice(None), RIGHT_HAND)),
    "left_leg": ([12, 13], "feet", (slice(None), slice(0, 3))),
    "right_leg": ([9, 10], "feet", (slice(None), slice(3, 6))),
    "head": ([0, 14, 15, 16, 17], "face", (slice(None),)),
    "hands": ([], "hands", (slice(None),)),
    "feet": ([], "feet", (slice(None),)),
}


@pytest.mark.parametrize("part", sorted(DROPPED))
def test_drop_part_removes_exactly_that_part(part):
    pose = full_pose()
    result = drop_part(pose, part)
    body_points, other_part, index = DROPPED[part]
    expected_body = np.ones((3, 18), np.float32)
    expected_body[:, body_points] = 0.0
    np.testing.assert_array_equal(result.body_conf, expected_body)
    for name in ("hands", "feet", "face"):
        expected = np.ones_like(getattr(pose, f"{name}_conf"))
        if name == other_part:
            expected[index] = 0.0
        np.testing.assert_array_equal(getattr(result, f"{name}_conf"), expected, err_msg=name)
        np.testing.assert_array_equal(getattr(result, name), getattr(pose, name))  # coordinates untouched
    np.testing.assert_array_equal(result.body, pose.body)


@pytest.mark.parametrize("tilt", [0.0, 0.5])
@pytest.mark.parametrize("side", ["left", "right"])
def test_add_part_restores_a_symmetric_limb(tilt, side):
    # The figure is mirror-symmetric about its neck-to-mid-hip line (also when tilted): a dropped limb, added back
    # from the other side, comes back where it was.
    pose = full_pose(rotated(STANDING_ANGLES, tilt), frames=1)
    for part, points in ((f"{side}_arm", [6, 7] if side == "left" else [3, 4]),
                         (f"{side}_leg", [12, 13] if side == "left" else [9, 10])):  # fmt: skip
        result = add_part(drop_part(pose, part), part)
        np.testing.assert_allclose(pixels_of(result)[:, points], pixels_of(pose)[:, points], atol=1e-3)
        np.testing.assert_array_equal(result.body_conf, pose.body_conf)
    hand = LEFT_HAND if side == "left" else RIGHT_HAND
    result = add_part(drop_part(pose, f"{side}_arm"), f"{side}_arm")
    np.testing.assert_allclose(pixels(result.hands[:, hand], pose), pixels(pose.hands[:, hand], pose), atol=1e-3)


def test_add_part_mirrors_the_other_limb_onto_this_shoulder():
    angles = dict(STANDING_ANGLES, r_upper_arm=200 * np.pi / 180, r_forearm=250 * np.pi / 180)  # right arm raised
    pose = drop_part(full_pose(angles, frames=1), "left_arm")
    result = pixels_of(add_part(pose, "left_arm"))
    original = pixels_of(pose)
    # The body's midline is vertical here, so mirroring flips x: the left elbow and wrist sit off the left
    # shoulder as the right ones sit off the right shoulder, flipped left-right.
    flip = np.array([-1.0, 1.0])
    np.testing.assert_allclose(result[0, 6] - result[0, 5], flip * (original[0, 3] - original[0, 2]), atol=1e-3)
    np.testing.assert_allclose(result[0, 7] - result[0, 5], flip * (original[0, 4] - original[0, 2]), atol=1e-3)


def test_add_part_leaves_present_parts_alone():
    pose = full_pose()
    for part in ("left_arm", "right_arm", "left_leg", "right_leg"):
        result = add_part(pose, part)
        np.testing.assert_array_equal(result.body, pose.body)
        np.testing.assert_array_equal(result.hands, pose.hands)


def test_op_errors():
    pose = full_pose()
    with pytest.raises(ValueError, match="unknown rescale op"):
        rescale(pose, "tail", 1.2)
    with pytest.raises(ValueError, match="positive"):
        rescale(pose, "legs", 0.0)
    with pytest.raises(ValueError, match="unknown part"):
        drop_part(pose, "wings")
    with pytest.raises(ValueError, match="cannot be added"):
        add_part(pose, "head")


def anchor_pool():
    lengths = dict(HUMAN_LENGTHS, r_thigh=200.0, l_thigh=200.0, r_shin=180.0, l_shin=180.0)  # long legs
    conf = np.ones((2, 18))
    conf[0, 8] = 0.0  # frame 0 has no right hip: not an anchor
    frames = [body_pixels(lengths, STANDING_ANGLES, NECK), body_pixels(lengths, STANDING_ANGLES, NECK)]
    return make_pose(frames, WIDTH, HEIGHT, conf=conf), lengths


def test_realignment_takes_the_anchor_proportions():
    pool, lengths = anchor_pool()
    augment = EPIAugment(pose_pool=pool, seed=0)
    assert augment.anchors == [(0, 1)]
    result = pixels_of(augment.apply(full_pose(), EPIPlan(anchor=(0, 1))))
    # Same torso as the driving figure, so the anchor's bone lengths come over unchanged.
    for name in BONES:
        np.testing.assert_allclose(bone_length(result, name), lengths[name], rtol=1e-5, err_msg=name)


def test_same_seed_same_augmentation():
    pool, _ = anchor_pool()
    pose = full_pose()
    first = EPIAugment(pose_pool=pool, probability=1.0, drop_probability=0.5, add_probability=0.5, seed=7)
    second = EPIAugment(pose_pool=pool, probability=1.0, drop_probability=0.5, add_probability=0.5, seed=7)
    outputs = [(first(pose), second(pose)) for _ in range(5)]
    for a, b in outputs:
        np.testing.assert_array_equal(a.body, b.body)
        np.testing.assert_array_equal(a.body_conf, b.body_conf)
    assert any(not np.array_equal(outputs[0][0].body, a.body) for a, _ in outputs[1:])
    np.testing.assert_array_equal(first(pose, rng=3).body, second(pose, rng=3).body)


def test_probability_lambda():
    augment = EPIAugment(probability=0.7, seed=0)
    plans = [augment.sample() for _ in range(4000)]
    assert abs(np.mean([plan is not None for plan in plans]) - 0.7) < 0.03
    pose = full_pose()
    assert EPIAugment(probability=0.0, seed=0)(pose) is pose


def test_rescale_draws_stay_in_their_ranges():
    ranges = {"legs": (0.5, 0.9), "face": (1.2, 2.5)}
    augment = EPIAugment(probability=1.0, rescale_probability=0.4, scale_ranges=ranges, seed=1)
    plans = [augment.sample() for _ in range(3000)]
    for op in OP_BONES:
        factors = [plan.factors[op] for plan in plans if op in plan.factors]
        assert abs(len(factors) / len(plans) - 0.4) < 0.03, op
        low, high = ranges.get(op, augment.scale_ranges[op])
        assert low <= min(factors) and max(factors) <= high, op
    legs = np.log([plan.factors["legs"] for plan in plans if "legs" in plan.factors])
    assert abs(np.mean(legs) - (np.log(0.5) + np.log(0.9)) / 2) < 0.02  # log-uniform: centred in log space


def test_augmented_sequence_keeps_frames_size_and_motion():
    pose = full_pose(frames=4)
    augment = EPIAugment(probability=1.0, rescale_probability=1.0, seed=2)
    result = augment(pose)
    assert (len(result), result.width, result.height, result.fps) == (4, WIDTH, HEIGHT, pose.fps)
    # The neck moves exactly as the driving neck: rescaling never moves the root.
    np.testing.assert_allclose(pixels_of(result)[:, 1], pixels_of(pose)[:, 1], atol=1e-3)


def test_configuration_errors():
    with pytest.raises(ValueError, match="probability"):
        EPIAugment(probability=1.5)
    with pytest.raises(ValueError, match="unknown rescale ops"):
        EPIAugment(scale_ranges={"tail": (0.5, 1.0)})
    with pytest.raises(ValueError, match="low <= high"):
        EPIAugment(scale_ranges={"legs": (1.2, 0.8)})
    headless = make_pose([body_pixels(HUMAN_LENGTHS, STANDING_ANGLES, NECK)], WIDTH, HEIGHT, conf=np.zeros((1, 18)))
    with pytest.raises(ValueError, match="full torso"):
        EPIAugment(pose_pool=[headless])
