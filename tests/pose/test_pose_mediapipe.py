"""The MediaPipe backend on the shared sample video and image: keypoints found, and anatomically plausible; how
`extract` builds and resets backends."""

import numpy as np
import pytest
from PIL import Image

from animatex_pp.pose import extract

CORE = [0, 1, 2, 5, 8, 9, 10, 11, 12, 13]  # nose, neck, shoulders, hips, knees, ankles


@pytest.fixture(scope="module")
def walk(shared_assets):
    """Every 10th frame of the 380-frame walk (38 frames: front, side and back views)."""
    return extract(shared_assets / "videos" / "fashion_walk_380f.mp4", backend="mediapipe", stride=10, progress=False)


def test_sequence_metadata(walk):
    assert (len(walk), walk.width, walk.height) == (38, 720, 940)
    assert walk.fps == pytest.approx(30000 / 1001 / 10)
    assert walk.parts == ("body", "feet", "hands")


def test_keypoints_on_nearly_every_frame(walk):
    found = (walk.body_conf[:, CORE] >= 0.3).all(axis=1)
    assert found.mean() >= 0.9


def test_anatomically_plausible(walk):
    found = (walk.body_conf[:, CORE] >= 0.3).all(axis=1)
    body = walk.body[found].astype(np.float64) * (walk.width, walk.height)  # (frames, 18, 2) pixels
    y = body[..., 1]
    mid = lambda a, b: (y[:, a] + y[:, b]) / 2  # noqa: E731
    # Head above neck above hips above knees above ankles, in every frame.
    assert (y[:, 0] < y[:, 1]).all()
    assert (y[:, 1] < mid(8, 11)).all()
    assert (mid(8, 11) < mid(9, 12)).all()
    assert (mid(9, 12) < mid(10, 13)).all()
    assert (np.maximum(y[:, 14], y[:, 15]) < y[:, 1]).all()  # eyes above the neck
    # The neck is the shoulder midpoint.
    np.testing.assert_allclose(body[:, 1], (body[:, 2] + body[:, 5]) / 2, atol=1e-3)
    # The figure is a person's height and shape: standing, about as tall as the frame, shoulders narrower than tall.
    height = mid(10, 13) - y[:, 0]
    assert ((height > 0.5 * walk.height) & (height < walk.height)).all()
    assert (np.linalg.norm(body[:, 2] - body[:, 5], axis=-1) < 0.4 * height).all()
    forearms = np.linalg.norm(body[:, [4, 7]] - body[:, [3, 6]], axis=-1)
    assert (forearms < 0.3 * height[:, None]).all()


def test_front_view_has_the_right_side_on_the_left(walk):
    right_shoulder, left_shoulder = walk.body[0, 2], walk.body[0, 5]
    assert right_shoulder[0] < left_shoulder[0]


def test_hands_sit_at_the_wrists(walk):
    size = np.array([walk.width, walk.height])
    found = walk.hands_conf[:, :, 0] >= 0.3  # (frames, 2): left, right
    assert found.any()
    for side, wrist in ((0, 7), (1, 4)):
        frames = found[:, side] & (walk.body_conf[:, wrist] >= 0.3)
        distance = np.linalg.norm((walk.hands[frames, side, 0] - walk.body[frames, wrist]) * size, axis=-1)
        assert (distance < 0.05 * walk.height).all()


def test_single_image(shared_assets):
    pose = extract(shared_assets / "images" / "anime_girl.jpeg", progress=False, hands=False)
    assert (len(pose), pose.width, pose.height, pose.fps) == (1, 832, 1216, None)
    assert pose.parts == ("body", "feet")
    assert (pose.body_conf[0, CORE] >= 0.3).all()
    assert pose.body[0, 0, 1] < pose.body[0, 8, 1] < pose.body[0, 10, 1]


@pytest.mark.parametrize("hands", [False, True])
def test_extract_builds_the_mediapipe_graph_once(hands, monkeypatch):
    from mediapipe.python.solutions import holistic, pose

    module, name = (holistic, "Holistic") if hands else (pose, "Pose")
    real = getattr(module, name)
    built = []

    def counting(*args, **kwargs):
        built.append(name)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, counting)
    extract(np.zeros((64, 48, 3), np.uint8), backend="mediapipe", hands=hands, progress=False)
    assert built == [name]


class Recording:
    """A backend that finds nobody and records what it is called with and the frames it is shown."""

    name = "recording"

    def __init__(self):
        self.calls = []
        self.frames = []

    def __call__(self, frame):
        self.calls.append("frame")
        self.frames.append(frame)
        return {"body": np.zeros((18, 2), np.float32), "body_conf": np.zeros(18, np.float32)}

    def reset(self):
        self.calls.append("reset")

    def close(self):
        self.calls.append("close")


def test_a_backend_passed_in_is_reset_before_use():
    backend = Recording()
    extract([np.zeros((8, 8, 3), np.uint8)] * 2, backend=backend, progress=False)
    assert backend.calls == ["reset", "frame", "frame"]  # not closed: the caller owns it


def test_a_pil_image_is_shown_to_the_backend_as_a_viewer_shows_it():
    ink = np.zeros((8, 8, 4), np.uint8)
    ink[..., 3] = 64  # black at a quarter opacity: light grey on white, not black
    backend = Recording()
    extract(Image.fromarray(ink, mode="RGBA"), backend=backend, progress=False)
    np.testing.assert_array_equal(backend.frames[0], np.full((8, 8, 3), 255 - 64, np.uint8))
