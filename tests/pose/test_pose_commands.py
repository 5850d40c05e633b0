"""`animatex-pp pose extract | render | retarget` end to end, and their exit codes for bad input."""

import numpy as np
import pytest
from PIL import Image

from animatex_pp.cli import main
from animatex_pp.data.video import read_video
from animatex_pp.pose import PoseSequence
from tests.pose.synthetic import HUMAN_LENGTHS, STANDING_ANGLES, body_pixels, make_pose


@pytest.fixture(scope="module")
def extracted(shared_assets, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "walk.pose.npz"
    video = shared_assets / "videos" / "fashion_walk_380f.mp4"
    code = main(["pose", "extract", str(video), "--out", str(out), "--stride", "20", "--max-frames", "5", "--quiet"])
    assert code == 0
    return out


def test_extract_writes_a_pose_file(extracted):
    pose = PoseSequence.load(extracted)
    assert (len(pose), pose.width, pose.height) == (5, 720, 940)
    assert pose.fps == pytest.approx(30000 / 1001 / 20)
    assert (pose.body_conf >= 0.3).mean() > 0.9


def test_render_writes_a_skeleton_video(extracted, tmp_path):
    out = tmp_path / "walk.pose.mp4"
    size = ["--height", "96", "--width", "64"]
    assert main(["pose", "render", str(extracted), "--out", str(out), *size, "--quiet"]) == 0
    frames, fps = read_video(out)
    assert frames.shape == (5, 96, 64, 3)
    assert fps == pytest.approx(30000 / 1001 / 20, rel=1e-3)
    assert (frames.max(axis=(1, 2, 3)) > 100).all()  # a skeleton on every frame
    # Default size: the pose's image size.
    default = tmp_path / "default.mp4"
    assert main(["pose", "render", str(extracted), "--out", str(default), "--fps", "8", "--quiet"]) == 0
    frames, fps = read_video(default)
    assert frames.shape[1:3] == (940, 720) and fps == pytest.approx(8)


def test_retarget_onto_a_reference_pose_file(extracted, tmp_path):
    reference = make_pose([body_pixels(HUMAN_LENGTHS, STANDING_ANGLES, (300, 200))], width=600, height=800)
    reference_path = reference.save(tmp_path / "reference.json")
    out = tmp_path / "moved.pose.json"
    assert main(["pose", "retarget", str(extracted), "--reference", str(reference_path), "--out", str(out)]) == 0
    moved = PoseSequence.load(out)
    assert (len(moved), moved.width, moved.height) == (5, 600, 800)
    # The first frame's neck lands on the reference's neck.
    np.testing.assert_allclose(moved.body[0, 1] * (600, 800), (300, 200), atol=1e-2)


def test_retarget_onto_a_reference_image(extracted, shared_assets, tmp_path):
    out = tmp_path / "on_girl.npz"
    image = shared_assets / "images" / "anime_girl.jpeg"
    assert main(["pose", "retarget", str(extracted), "--reference", str(image), "--out", str(out), "--no-hands"]) == 0
    assert (PoseSequence.load(out).width, PoseSequence.load(out).height) == (832, 1216)
    # Every image suffix that `extract` reads is a reference image here too (one IMAGE_SUFFIXES for both).
    tiff = tmp_path / "girl.tiff"
    Image.open(image).save(tiff)
    assert main(["pose", "retarget", str(extracted), "--reference", str(tiff), "--out", str(out), "--no-hands"]) == 0


def test_bad_input_exits_with_2(extracted, tmp_path, capsys):
    cases = [
        (["pose", "render", str(tmp_path / "missing.npz"), "--out", str(tmp_path / "x.mp4")], "not found"),
        (["pose", "render", str(extracted), "--out", str(tmp_path / "x.gif")], ".mp4"),
        (["pose", "extract", str(extracted), "--out", str(tmp_path / "no_dir" / "p.npz")], "does not exist"),
        (["pose", "extract", str(tmp_path / "missing.mp4"), "--out", str(tmp_path / "p.npz")], "not found"),
        (["pose", "extract", str(extracted), "--out", str(tmp_path / "p.npz"), "--backend", "dwpose"], "--det-model"),
        (["pose", "retarget", str(extracted), "--reference", str(extracted), "--out", str(tmp_path / "r.npz"),
          "--reference-frame", "9"], "out of range"),
    ]  # fmt: skip
    for argv, message in cases:
        assert main(argv) == 2, argv
        assert message in capsys.readouterr().err, argv
    assert main(["pose", "render", str(extracted), "--out", str(tmp_path / "x.mp4"), "--height", "big"]) == 2
    assert main(["pose", "render", str(extracted), "--out", str(tmp_path / "x.mp4"), "--height", "95"]) == 2
    assert "even width and height" in capsys.readouterr().err
