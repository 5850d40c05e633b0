"""`animatex-pp pose extract | render | retarget` end to end, and their exit codes for bad input."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from animatex_pp.cli import main
from animatex_pp.cli.pose import OVERLAY_DIM
from animatex_pp.io.video import read_video
from animatex_pp.pose import PoseSequence
from tests.helpers.poses import HUMAN_LENGTHS, STANDING_ANGLES, body_pixels, make_pose


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
        (["pose", "extract", str(extracted), "--out", str(tmp_path / "p.npz"), "--pose-backend", "dwpose"],
         "--pose-backend dwpose needs --dwpose-dir: the folder of yolox_l.onnx and dw-ll_ucoco_384.onnx"),
        (["pose", "retarget", str(extracted), "--reference", str(extracted), "--out", str(tmp_path / "r.npz"),
          "--reference-frame", "9"], "out of range"),
    ]  # fmt: skip
    for argv, message in cases:
        assert main(argv) == 2, argv
        assert message in capsys.readouterr().err, argv
    assert main(["pose", "render", str(extracted), "--out", str(tmp_path / "x.mp4"), "--height", "big"]) == 2
    assert main(["pose", "render", str(extracted), "--out", str(tmp_path / "x.mp4"), "--height", "95"]) == 2
    assert "even height and width" in capsys.readouterr().err


def test_extract_summary_tells_whole_from_partial(extracted, capsys, tmp_path, shared_assets):
    out = tmp_path / "walk.npz"
    video = shared_assets / "videos" / "fashion_walk_380f.mp4"
    assert main(["pose", "extract", str(video), "--out", str(out), "--max-frames", "2", "--quiet", "--no-hands"]) == 0
    assert "whole body on 2 of 2 frames" in capsys.readouterr().out


def test_extract_reads_still_images_as_a_viewer_shows_them(shared_assets, tmp_path):
    # The sample girl in grey, at half size (for speed), saved three ways that a viewer shows alike.
    with Image.open(shared_assets / "images" / "anime_girl.jpeg") as image:
        grey = np.asarray(image.convert("L").reduce(2))
    Image.fromarray(grey).save(tmp_path / "grey.png")
    # 16 bits: plain PIL clips every level above 255, leaving a white picture.
    Image.fromarray(grey.astype(np.uint16) * 257).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    # Black ink whose opacity draws the girl: plain PIL drops the alpha, leaving a black picture.
    ink = np.zeros((*grey.shape, 4), np.uint8)
    ink[..., 3] = 255 - grey
    Image.fromarray(ink, mode="RGBA").save(tmp_path / "ink.png")
    poses = {}
    for name in ("grey", "deep", "ink"):
        image, out = tmp_path / f"{name}.png", tmp_path / f"{name}.npz"
        assert main(["pose", "extract", str(image), "--out", str(out), "--no-hands", "--quiet"]) == 0
        poses[name] = PoseSequence.load(out)
    assert (poses["grey"].body_conf >= 0.3).mean() > 0.9
    np.testing.assert_array_equal(poses["deep"].body, poses["grey"].body)  # 257 * v is scaled back to v exactly
    # Composited on white, the ink is the grey picture (to a level of rounding).
    np.testing.assert_allclose(poses["ink"].body, poses["grey"].body, atol=0.01)
    assert (poses["ink"].body_conf >= 0.3).mean() > 0.9


def test_extract_finding_nobody_refuses_unless_allowed(shared_assets, tmp_path, capsys):
    image = shared_assets / "images" / "winged_figure.jpeg"
    out = tmp_path / "winged.pose.json"
    assert main(["pose", "extract", str(image), "--out", str(out), "--no-hands"]) == 2
    err = capsys.readouterr().err
    assert f"mediapipe found nobody in {image}, so {out} was not written" in err
    assert "write its skeleton by hand" in err and "--allow-empty-pose" in err
    assert not out.exists()
    assert main(["pose", "extract", str(image), "--out", str(out), "--no-hands", "--allow-empty-pose"]) == 0
    assert "nobody on 1 (frames 0)" in capsys.readouterr().out
    assert out.is_file()


def hand_made_skeleton(tmp_path):
    """A skeleton typed by hand in pixels of a 300x400 picture, as docs/pose.md shows."""
    pose = make_pose([body_pixels(HUMAN_LENGTHS, STANDING_ANGLES, (150, 80))], width=300, height=400, fps=None)
    Image.new("RGB", (300, 400), (200, 180, 160)).save(tmp_path / "character.png")
    return pose.save(tmp_path / "character.pose.json"), tmp_path / "character.png"


def test_render_one_frame_over_the_reference_image(tmp_path):
    pose_path, image = hand_made_skeleton(tmp_path)
    out = tmp_path / "check.png"
    args = ["pose", "render", str(pose_path), "--frame", "0", "--over", str(image), "--out", str(out)]
    assert main([*args, "--color-order", "rgb"]) == 0
    picture = np.asarray(Image.open(out))
    assert picture.shape == (400, 300, 3)
    np.testing.assert_array_equal(picture[5, 5], (100, 90, 80))  # the image, dimmed, where nothing is drawn
    np.testing.assert_array_equal(picture[80, 150], (255, 85, 0))  # the neck's point, in OpenPose's colours


def test_render_over_a_16_bit_picture_prints_its_size_height_first(tmp_path, capsys):
    pose_path, image = hand_made_skeleton(tmp_path)
    deep = tmp_path / "deep.png"
    # the same picture at 16 bits per channel, grey: a viewer shows it as bright as the 8-bit one
    grey = np.asarray(Image.open(image).convert("L"))
    Image.fromarray(grey.astype(np.uint16) * 257).save(deep)
    out = tmp_path / "check.png"
    assert main(["pose", "render", str(pose_path), "--frame", "0", "--over", str(deep), "--out", str(out)]) == 0
    assert "400x300 (HxW)" in capsys.readouterr().out
    picture = np.asarray(Image.open(out))
    assert picture.shape == (400, 300, 3)
    # scaled to 8 bits, then dimmed as any picture behind a skeleton (clipped, it would be white dimmed: 127)
    np.testing.assert_allclose(picture[5, 5], grey[5, 5] * OVERLAY_DIM, atol=2)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--height", "0"], "--height 0: a side must be 1 to 8192 pixels"),
        (["--width", "-4"], "--width -4: a side must be 1 to 8192 pixels"),
        (["--height", "9000"], "--height 9000: a side must be 1 to 8192 pixels"),
        (["--fps", "0"], "argument --fps: must be positive, got 0"),
        (["--fps=-2"], "argument --fps: must be positive, got -2"),
        (["--stick-width", "0"], "argument --stick-width: must be a positive integer, got 0"),
        (["--frame", "3", "--out", "{tmp}/x.png"], "--frame 3 is out of range"),
        (["--frame", "0"], "give --out a .png path"),
        (["--over", "{tmp}/missing.png", "--out", "{tmp}/x.png"], "--over image not found"),
    ],
)
def test_render_refuses_absurd_sizes_and_rates(tmp_path, capsys, extra, message):
    pose_path, _ = hand_made_skeleton(tmp_path)
    extra = [value.format(tmp=tmp_path) for value in extra]
    assert main(["pose", "render", str(pose_path), "--out", str(tmp_path / "x.mp4"), *extra]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x.mp4").exists() and not (tmp_path / "x.png").exists()


def test_render_refuses_a_pose_measured_on_a_huge_image(tmp_path, capsys):
    huge = make_pose([body_pixels(HUMAN_LENGTHS, STANDING_ANGLES, (300, 200))], width=20000, height=800).save(
        tmp_path / "huge.npz"
    )
    assert main(["pose", "render", str(huge), "--out", str(tmp_path / "x.mp4")]) == 2
    assert "the default size 800x20000 (HxW): a side must be 1 to 8192 pixels" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [(["--fps", "0"], "argument --fps: must be positive"),
     (["--stride", "0"], "argument --stride: must be a positive integer"),
     (["--start=-1"], "argument --start: must be >= 0, got -1"),
     (["--max-frames", "0"], "argument --max-frames: must be a positive integer")],
)  # fmt: skip
def test_extract_refuses_zero_and_negative_selections(shared_assets, tmp_path, capsys, extra, message):
    video = shared_assets / "videos" / "dance_anime_32f.mp4"
    assert main(["pose", "extract", str(video), "--out", str(tmp_path / "p.npz"), *extra]) == 2
    assert message in capsys.readouterr().err


def test_retarget_refuses_empty_poses_and_a_face_alone(extracted, shared_assets, tmp_path, capsys):
    pose_path, _ = hand_made_skeleton(tmp_path)
    out = str(tmp_path / "moved.npz")
    winged = shared_assets / "images" / "winged_figure.jpeg"
    assert main(["pose", "retarget", str(extracted), "--reference", str(winged), "--out", out, "--no-hands"]) == 2
    assert "shows no body point: for a character a detector cannot see" in capsys.readouterr().err
    empty = make_pose(np.zeros((2, 18, 2)), width=300, height=400, conf=np.zeros((2, 18))).save(tmp_path / "e.npz")
    assert main(["pose", "retarget", str(empty), "--reference", str(pose_path), "--out", out]) == 2
    assert "shows nobody in any frame" in capsys.readouterr().err
    conf = np.zeros((1, 18))
    conf[0, [0, 14, 15, 16, 17]] = 1.0
    face = make_pose([body_pixels(HUMAN_LENGTHS, STANDING_ANGLES, (150, 80))], 300, 400, conf=conf)
    assert main(["pose", "retarget", str(extracted), "--reference", str(face.save(tmp_path / "f.json")),
                 "--out", out]) == 2  # fmt: skip
    assert "only face bones" in capsys.readouterr().err


def test_the_docs_hand_made_skeleton_renders_over_its_image(shared_assets, tmp_path):
    text = (Path(__file__).resolve().parents[2] / "docs" / "pose.md").read_text()
    start = text.index("```json") + len("```json")
    (tmp_path / "winged.pose.json").write_text(text[start : text.index("```", start)])
    image, out = shared_assets / "images" / "winged_figure.jpeg", tmp_path / "check.png"
    assert main(["pose", "render", str(tmp_path / "winged.pose.json"), "--over", str(image), "--out", str(out)]) == 0
    assert Image.open(out).size == (832, 1216)


def test_dwpose_takes_one_folder_of_its_two_files_in_every_command(tmp_path, monkeypatch, capsys):
    seen = {}

    def fake_extract(source, backend, **options):
        seen.update(options, backend=backend)
        return make_pose([body_pixels(HUMAN_LENGTHS, STANDING_ANGLES, (300, 200))], width=600, height=800)

    monkeypatch.setattr("animatex_pp.pose.extract", fake_extract)
    image = tmp_path / "character.png"
    Image.new("RGB", (60, 80), "pink").save(image)
    dwpose = tmp_path / "dwpose"
    dwpose.mkdir()
    extract = ["pose", "extract", str(image), "--out", str(tmp_path / "p.npz"), "--pose-backend", "dwpose"]
    assert main([*extract, "--dwpose-dir", str(dwpose)]) == 2
    assert f"--dwpose-dir {dwpose} has no yolox_l.onnx: download it from Hugging Face yzd-v/DWPose" in (
        capsys.readouterr().err
    )
    (dwpose / "yolox_l.onnx").write_bytes(b"")
    assert main([*extract, "--dwpose-dir", str(dwpose)]) == 2
    assert "has no dw-ll_ucoco_384.onnx" in capsys.readouterr().err
    (dwpose / "dw-ll_ucoco_384.onnx").write_bytes(b"")
    assert main([*extract, "--dwpose-dir", str(dwpose), "--quiet"]) == 0
    assert seen["backend"] == "dwpose"
    assert (seen["det_model"], seen["pose_model"]) == (dwpose / "yolox_l.onnx", dwpose / "dw-ll_ucoco_384.onnx")
    # The same flags in `retarget`, and options of the other backend are refused rather than ignored.
    pose_path, _ = hand_made_skeleton(tmp_path)
    retarget = ["pose", "retarget", str(pose_path), "--reference", str(image), "--out", str(tmp_path / "r.npz")]
    assert main([*retarget, "--pose-backend", "dwpose", "--dwpose-dir", str(dwpose)]) == 0
    assert seen["det_model"] == dwpose / "yolox_l.onnx"
    assert main([*extract, "--dwpose-dir", str(dwpose), "--no-hands"]) == 2
    assert "--no-hands is a mediapipe option" in capsys.readouterr().err
    assert main([*extract[:-2], "--dwpose-dir", str(dwpose)]) == 2
    assert "--dwpose-dir is for --pose-backend dwpose" in capsys.readouterr().err
