"""Puppets: drawn parts follow the skeleton, families lack or change what they say, motion keeps each body's bones."""

import numpy as np
import pytest

from animatex_pp.synthx.bodies import FAMILIES, HUMAN, sample_body
from animatex_pp.synthx.draw import draw
from animatex_pp.synthx.motions import ANGLES, MOTIONS, Motion, from_pose, rest
from animatex_pp.synthx.puppet import fit, place, pose_body
from animatex_pp.synthx.textures import LABELS, sample_appearance
from tests.helpers.poses import BONES, HUMAN_LENGTHS, STANDING_ANGLES, body_pixels, make_pose

SIZE = 128
# Arms and legs spread wide (degrees, image axes), so that no limb is drawn over another.
SPREAD = {"spine": 90, "head": 0, "r_upper_arm": 160, "r_forearm": 140, "l_upper_arm": 20, "l_forearm": 40,
          "r_thigh": 110, "r_shin": 115, "l_thigh": 70, "l_shin": 65}  # fmt: skip
LIMBS = {"r_upper_arm": ("r_shoulder", "r_elbow"), "r_forearm": ("r_elbow", "r_wrist"),
         "l_upper_arm": ("l_shoulder", "l_elbow"), "l_forearm": ("l_elbow", "l_wrist"),
         "r_thigh": ("r_hip", "r_knee"), "r_shin": ("r_knee", "r_ankle"), "l_thigh": ("l_hip", "l_knee"),
         "l_shin": ("l_knee", "l_ankle")}  # fmt: skip


def _motion(angles_deg: dict, frames: int = 1) -> Motion:
    angles = np.tile(np.deg2rad([angles_deg[name] for name in ANGLES]), (frames, 1))
    return Motion("test", angles, np.zeros((frames, 2)), np.ones(frames), np.arange(frames) / 16.0)


def _render(family: str, motion: Motion, seed: int = 0):
    rng = np.random.default_rng(seed)
    body = sample_body(FAMILIES[family], rng)
    skeleton = pose_body(body, motion)
    skeleton = place(skeleton, *fit([skeleton], SIZE, rng))
    return skeleton, draw(skeleton, sample_appearance(rng), SIZE, len(motion))


def _distance_to_segment(point, a, b) -> tuple[float, float]:
    """Distance from point to segment ab, and where along ab (0..1) the nearest point lies."""
    t = float(np.clip(np.dot(point - a, b - a) / np.dot(b - a, b - a), 0, 1))
    return float(np.linalg.norm(point - (a + t * (b - a)))), t


@pytest.mark.parametrize("family", ["human", "short_legs", "long_neck", "tail"])
def test_limb_pixel_centroid_lies_on_its_bone(family):
    skeleton, layer = _render(family, _motion(SPREAD))
    for part, (start, end) in LIMBS.items():
        rows, columns = np.nonzero(layer.labels[0] == LABELS.index(part))
        assert len(rows) > 10, f"{family}: {part} has only {len(rows)} pixels"
        centroid = np.array([columns.mean(), rows.mean()]) + 0.5  # pixel centres
        a, b = skeleton.points[start][0], skeleton.points[end][0]
        distance, along = _distance_to_segment(centroid, a, b)
        # Within a quarter of the limb's half-width of the bone, and inside it (the hand or foot pulls it outward;
        # the round cap at the start, one half-width long, pulls it back: a fifth of an upper arm at limb_width 0.17).
        assert distance < 0.25 * skeleton.body["limb_width"] * skeleton.unit + 0.3, (family, part, distance)
        assert 0.15 < along < 0.95, (family, part, along)


def test_families_lack_the_parts_they_say():
    wave = MOTIONS["wave"].generate(9, 16.0, np.random.default_rng(1))
    present = {}
    for family in ("human", "no_arms", "no_legs", "tail", "big_head_no_arms"):
        _, layer = _render(family, wave)
        present[family] = {LABELS[v] for v in np.unique(layer.labels)}
    arms = {"r_upper_arm", "r_forearm", "l_upper_arm", "l_forearm"}
    legs = {"r_thigh", "r_shin", "l_thigh", "l_shin"}
    assert arms <= present["human"] and legs <= present["human"]
    assert not arms & present["no_arms"] and legs <= present["no_arms"]
    assert not arms & present["big_head_no_arms"]
    assert not legs & present["no_legs"] and "fin" in present["no_legs"] and arms <= present["no_legs"]
    assert {"tail", "ears"} <= present["tail"] and "tail" not in present["human"]


def _head_to_torso(family: str, seed: int) -> float:
    _, layer = _render(family, rest(), seed)
    heights = {}
    for part in ("head", "torso"):
        rows = np.nonzero((layer.labels[0] == LABELS.index(part)).any(axis=1))[0]
        heights[part] = rows.max() - rows.min() + 1
    return heights["head"] / heights["torso"]


def test_big_head_is_at_least_twice_the_human_head():
    human = [_head_to_torso("human", seed) for seed in range(6)]
    big = [_head_to_torso("big_head", seed) for seed in range(6)]
    assert min(big) >= 2 * float(np.median(human)), (big, human)


def test_every_body_performs_the_motion_with_its_own_bones():
    motion = MOTIONS["walk"].generate(9, 16.0, np.random.default_rng(2))
    for family in ("human", "short_legs", "big_head"):
        body = sample_body(FAMILIES[family], np.random.default_rng(4))
        points = pose_body(body, motion).points
        for part, (start, end) in LIMBS.items():
            bone = points[end] - points[start]  # (F, 2)
            np.testing.assert_allclose(np.linalg.norm(bone, axis=1), body[part.split("_", 1)[1]], rtol=1e-9)
            np.testing.assert_allclose(np.arctan2(bone[:, 1], bone[:, 0]), motion.angle(part), atol=1e-9)
    short = sample_body(FAMILIES["short_legs"], np.random.default_rng(0))
    assert short["thigh"] <= 0.55 * HUMAN["thigh"] < 0.9 * HUMAN["thigh"]


def test_real_motion_reads_the_angles_a_pose_was_made_with():
    """Poses built by the test's own forward kinematics, with known bone angles, give back those angles."""
    rng = np.random.default_rng(5)
    frames = []
    swings = rng.uniform(-0.4, 0.4, size=(6, len(BONES)))
    for swing in swings:
        angles = {name: STANDING_ANGLES[name] + s for name, s in zip(BONES, swing, strict=True)}
        frames.append(body_pixels(HUMAN_LENGTHS, angles, neck=(300, 200)))
    motion = from_pose(make_pose(np.stack(frames), 640, 720, fps=10.0))
    for limb in LIMBS:  # the test's bone names are the motion's angle names
        expected = np.array([STANDING_ANGLES[limb] + s[list(BONES).index(limb)] for s in swings])
        np.testing.assert_allclose(np.angle(np.exp(1j * (motion.angle(limb) - expected))), 0, atol=1e-5)
    np.testing.assert_allclose(motion.root, 0, atol=1e-6)  # the neck never moved
    assert np.all(motion.facing > 0.5)  # facing the camera: right shoulder on the image's left
