"""PoseSequence: validation, lossless save/load (.npz and .json), slicing, resampling, the IPI keypoint view."""

import json
from dataclasses import replace

import numpy as np
import pytest

import animatex_pp
from animatex_pp.pose import PoseSequence


def random_pose(num_frames=5, parts=("feet", "hands", "face"), fps=25.0, seed=0) -> PoseSequence:
    rng = np.random.default_rng(seed)
    shapes = {"feet": (6,), "hands": (2, 21), "face": (68,)}
    fields = {name: rng.random((num_frames, *shapes[name], 2), dtype=np.float32) for name in parts}
    fields.update({f"{name}_conf": rng.random((num_frames, *shapes[name]), dtype=np.float32) for name in parts})
    return PoseSequence(
        body=rng.random((num_frames, 18, 2), dtype=np.float32),
        body_conf=rng.random((num_frames, 18), dtype=np.float32),
        width=720,
        height=940,
        fps=fps,
        **fields,
    )


def assert_same(a: PoseSequence, b: PoseSequence):
    assert (a.width, a.height, a.fps, a.parts) == (b.width, b.height, b.fps, b.parts)
    for part in a.parts:
        for name in (part, f"{part}_conf"):
            assert getattr(b, name).dtype == np.float32
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


def test_top_level_import_is_the_same_class():
    assert animatex_pp.PoseSequence is PoseSequence


def test_fields_shapes_and_len():
    pose = random_pose(7)
    assert len(pose) == 7
    assert pose.body.shape == (7, 18, 2) and pose.body_conf.shape == (7, 18)
    assert pose.hands.shape == (7, 2, 21, 2) and pose.face.shape == (7, 68, 2) and pose.feet.shape == (7, 6, 2)
    assert pose.parts == ("body", "feet", "hands", "face")
    assert random_pose(2, parts=()).parts == ("body",)
    # Inputs of other dtypes are stored as float32.
    converted = PoseSequence(body=np.zeros((1, 18, 2)), body_conf=np.ones((1, 18), dtype=int), width=4, height=4)
    assert converted.body.dtype == np.float32 and converted.body_conf.dtype == np.float32


def test_repr_prints_the_size_height_first_and_says_so():
    pose = PoseSequence(body=np.zeros((2, 18, 2)), body_conf=np.ones((2, 18)), width=832, height=1216, fps=8.0)
    assert repr(pose) == "PoseSequence(frames=2, parts=('body',), size=1216x832 (HxW), fps=8)"


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"body": np.zeros((3, 17, 2))}, "body must have shape"),
        ({"body_conf": np.zeros((3, 18, 1))}, "body_conf must have shape"),
        ({"feet": np.zeros((3, 6, 2)), "feet_conf": None}, "both feet and feet_conf"),
        ({"hands": np.zeros((2, 2, 21, 2)), "hands_conf": np.zeros((2, 2, 21))}, "hands has 2 frames"),
        ({"body": np.full((3, 18, 2), np.nan)}, "NaN"),
        ({"width": 0}, "width"),
        ({"height": 2.5}, "height"),
        ({"fps": -1.0}, "fps"),
        ({"body": np.zeros((0, 18, 2)), "body_conf": np.zeros((0, 18))}, "at least one frame"),
    ],
)
def test_validation(changes, message):
    fields = dict(body=np.zeros((3, 18, 2)), body_conf=np.ones((3, 18)), width=64, height=48)
    fields.update(changes)
    with pytest.raises(ValueError, match=message):
        PoseSequence(**fields)


@pytest.mark.parametrize("suffix", [".npz", ".json"])
@pytest.mark.parametrize("parts, fps", [(("feet", "hands", "face"), 29.97), ((), None), (("hands",), 8.0)])
def test_save_load_is_lossless(tmp_path, suffix, parts, fps):
    pose = random_pose(4, parts=parts, fps=fps, seed=3)
    path = pose.save(tmp_path / f"pose{suffix}")
    assert_same(pose, PoseSequence.load(path))
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"pose{suffix}"]  # no temporary left behind


def test_json_is_readable_by_people(tmp_path):
    pose = random_pose(2, parts=())
    data = json.loads(pose.save(tmp_path / "pose.json").read_text())
    assert data["width"] == 720 and data["num_frames"] == 2 and len(data["body"][0]) == 18
    assert data["body"][1][4] == [float(v) for v in pose.body[1, 4]]


def test_load_refuses_pickles_and_foreign_files(tmp_path):
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, body=np.array([{"evil": 1}], dtype=object))
    with pytest.raises(ValueError, match="pickled"):
        PoseSequence.load(pickled)
    other = tmp_path / "other.npz"
    np.savez(other, something=np.zeros(3))
    with pytest.raises(ValueError, match="not a saved PoseSequence"):
        PoseSequence.load(other)
    text = tmp_path / "text.npz"
    text.write_text("hello")
    with pytest.raises(ValueError, match="not an .npz archive"):
        PoseSequence.load(text)
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        PoseSequence.load(bad_json)
    with pytest.raises(ValueError, match=".npz or .json"):
        random_pose(1).save(tmp_path / "pose.pkl")
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        PoseSequence.load(tmp_path / "missing.npz")


def test_slicing():
    pose = random_pose(10, fps=30.0)
    one = pose[3]
    assert len(one) == 1 and one.fps == 30.0
    np.testing.assert_array_equal(one.hands[0], pose.hands[3])
    every_third = pose[1::3]
    assert len(every_third) == 3 and every_third.fps == pytest.approx(10.0)
    np.testing.assert_array_equal(every_third.body, pose.body[[1, 4, 7]])
    picked = pose[[9, 0]]
    np.testing.assert_array_equal(picked.face_conf, pose.face_conf[[9, 0]])
    assert len(pose[-1]) == 1
    with pytest.raises(IndexError):
        pose[10]
    with pytest.raises(ValueError, match="selects no frames"):
        pose[5:5]


def test_resample_to_a_rate_and_to_a_count():
    pose = random_pose(12, fps=30.0)
    slower = pose.resample(fps=10.0)
    assert slower.fps == 10.0
    np.testing.assert_array_equal(slower.body, pose.body[[0, 3, 6, 9]])
    faster = pose.resample(fps=60.0)
    np.testing.assert_array_equal(faster.body, pose.body[np.repeat(np.arange(12), 2)])
    counted = pose.resample(num_frames=4)
    np.testing.assert_array_equal(counted.body, pose.body[[0, 3, 6, 9]])
    assert counted.fps == pytest.approx(10.0)
    stretched = pose.resample(num_frames=18)
    assert len(stretched) == 18 and stretched.fps == pytest.approx(45.0)
    np.testing.assert_array_equal(stretched.body[-1], pose.body[-1])
    with pytest.raises(ValueError, match="exactly one"):
        pose.resample()
    with pytest.raises(ValueError, match="no fps"):
        replace(pose, fps=None).resample(fps=5.0)


def test_ipi_keypoints_marks_undetected_points():
    body = np.arange(2 * 18 * 2, dtype=np.float32).reshape(2, 18, 2) / 100
    conf = np.full((2, 18), 0.9, dtype=np.float32)
    conf[0, 4], conf[1, 0], conf[1, 17] = 0.29, 0.0, 0.3
    pose = PoseSequence(body=body, body_conf=conf, width=10, height=10)
    keypoints = pose.ipi_keypoints()
    assert keypoints.shape == (2, 18, 2) and keypoints.dtype == np.float32
    expected = body.copy()
    expected[0, 4] = expected[1, 0] = -1.0
    np.testing.assert_array_equal(keypoints, expected)
    assert (pose.ipi_keypoints(conf_threshold=0.95) == -1).all()
