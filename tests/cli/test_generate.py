"""`animatex-pp generate` and `animatex-pp convert` on the tiny pipeline, in-process, plus `--help` as a process."""

import os
import shutil
import stat
import subprocess
import sys

import numpy as np
import PIL.Image
import pytest
import torch
from diffusers import WanTransformer3DModel

from animatex_pp.cli import EXIT_BAD_INPUT, EXIT_INTERRUPTED, main
from animatex_pp.io.video import read_video, write_video
from animatex_pp.models.convert import animatex_from_wan
from animatex_pp.models.presets import split_preset
from animatex_pp.pipelines.pipeline_animatex import AnimateXPipeline
from tests.helpers.generate_inputs import write_generate_inputs
from tests.helpers.official_release import write_release

SIZE = 32


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A reference image and a 9-frame rendered pose video, as `generate_args` names them."""
    return write_generate_inputs(tmp_path_factory.mktemp("inputs"))


def generate_args(model_dir, inputs, output, *extra):
    return [
        "generate",
        "--model", str(model_dir),
        "--image", str(inputs / "reference.png"),
        "--pose", str(inputs / "pose.mp4"),
        "--output", str(output),
        "--size", f"{SIZE}x{SIZE}",
        "--steps", "2",
        "--dtype", "fp32",
        "--reference-pose", "none",  # the random test image shows no body to extract a skeleton from
        *extra,
    ]  # fmt: skip


def test_generate_writes_the_video_and_a_preview(model_dir, inputs, tmp_path):
    output = tmp_path / "dance.mp4"
    assert main(generate_args(model_dir, inputs, output, "--preview-video")) == 0
    frames, fps = read_video(output)
    assert frames.shape == (9, SIZE, SIZE, 3)
    assert fps == pytest.approx(8)  # the pose video's rate
    sheet = PIL.Image.open(tmp_path / "dance.preview.png")
    assert sheet.width > sheet.height  # a contact sheet: frames side by side
    preview, _ = read_video(tmp_path / "dance.preview.mp4")
    assert preview.shape == (9, SIZE, 3 * SIZE, 3)  # reference | pose | output
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind


def test_generate_extracts_poses_from_a_driving_video(model_dir, shared_assets, tmp_path):
    output = tmp_path / "girl.mp4"
    args = [
        "generate", "--model", str(model_dir), "--image", str(shared_assets / "images" / "anime_girl.jpeg"),
        "--driving-video", str(shared_assets / "videos" / "dance_anime_32f.mp4"), "--reference-pose", "auto",
        "--stride", "2", "--frames", "13", "--size", "80x48", "--steps", "2", "--dtype", "fp32",
        "--output", str(output),
    ]  # fmt: skip
    assert main(args) == 0
    frames, fps = read_video(output)
    assert frames.shape == (13, 80, 48, 3)
    assert fps == pytest.approx(4)  # 8 fps taken every 2nd frame
    assert (tmp_path / "girl.preview.png").is_file()


def test_generate_is_deterministic_under_the_seed(model_dir, inputs, tmp_path):
    first, second = tmp_path / "a.mp4", tmp_path / "b.mp4"
    for output in (first, second):
        assert main(generate_args(model_dir, inputs, output, "--seed", "3", "--no-preview")) == 0
    np.testing.assert_array_equal(read_video(first)[0], read_video(second)[0])
    assert not (tmp_path / "a.preview.png").exists()


def test_generate_ti2v_needs_no_pose(model_dir, inputs, tmp_path):
    output = tmp_path / "city.mp4"
    args = [
        "generate", "--model", str(model_dir), "--image", str(inputs / "reference.png"), "--mode", "ti2v",
        "--prompt", "the city at night", "--frames", "5", "--size", "32x32", "--steps", "2", "--output", str(output),
    ]  # fmt: skip
    assert main(args) == 0
    frames, fps = read_video(output)
    assert frames.shape == (5, SIZE, SIZE, 3) and fps == pytest.approx(16)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda args, tmp: args.__setitem__(args.index("--model") + 1, str(tmp / "missing")), "not found"),
        (lambda args, tmp: args.__setitem__(args.index("--image") + 1, str(tmp / "nope.png")), "reference image"),
        (lambda args, tmp: args.__setitem__(args.index("--pose") + 1, str(tmp / "nope.mp4")), "pose file not found"),
        (lambda args, tmp: args.__setitem__(args.index("--model") + 1, str(tmp)), "has no model_index.json"),
        (lambda args, tmp: args.__setitem__(args.index("--output") + 1, str(tmp / "out.gif")), "must end in .mp4"),
        (lambda args, tmp: args.__setitem__(args.index("--size") + 1, "40x32"), "multiple of 16"),
        (lambda args, tmp: args.extend(["--mode", "ti2v"]), "takes no --pose"),
        (lambda args, tmp: args.extend(["--frames", "13"]), "--frames 13 needs 13 frames but --pose has 9"),
        (lambda args, tmp: args.extend(["--reference-pose", "auto"]), "shows no body"),
        (lambda args, tmp: args.__setitem__(args.index("--image") + 1, str(tmp / "broken.png")), "could not be read"),
        (lambda args, tmp: args.extend(["--retarget"]), "--retarget needs"),
        (lambda args, tmp: args.extend(["--reference-pose", "auto", "--pose-backend", "dwpose"]), "--dwpose-dir"),
        (lambda args, tmp: args.extend(["--pose-backend", "dwpose", "--dwpose-dir", str(tmp)]), "has no yolox_l.onnx"),
        (lambda args, tmp: args.extend(["--reference-pose", str(tmp / "ref.npz")]), "--reference-pose not found"),
    ],
    ids=[
        "no-model",
        "no-image",
        "no-pose",
        "not-a-pipeline",
        "not-mp4",
        "bad-size",
        "ti2v-with-pose",
        "long",
        "no-body-in-reference",
        "corrupt-image",
        "retarget-without-keypoints",
        "dwpose-without-models",
        "dwpose-dir-without-its-files",
        "no-reference-pose",
    ],  # fmt: skip
)
def test_bad_inputs_exit_with_code_2_and_say_why(model_dir, inputs, tmp_path, capsys, change, message):
    (tmp_path / "broken.png").write_bytes(b"not a png")
    args = generate_args(model_dir, inputs, tmp_path / "out.mp4")
    change(args, tmp_path)
    assert main(args) == EXIT_BAD_INPUT
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out.mp4").exists()


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (["--size", "big"], "argument --size: size must be HEIGHTxWIDTH"),
        (["--size", "0x0"], "argument --size: height and width must be positive, got '0x0'"),
        (["--size=-16x32"], "argument --size: height and width must be positive"),
        (["--frames", "0"], "argument --frames: must be a positive integer, got 0"),
        (["--frames", "-9"], "argument --frames: must be a positive integer, got -9"),
        (["--frames", "nine"], "argument --frames: must be an integer, got 'nine'"),
        (["--steps", "0"], "argument --steps: must be a positive integer"),
        (["--fps", "-5"], "argument --fps: must be positive, got -5"),
        (["--fps", "0"], "argument --fps: must be positive, got 0"),
        (["--fps", "inf"], "argument --fps: must be a finite number"),
        (["--fps", "fast"], "argument --fps: must be a number"),
        (["--guidance", "nan"], "argument --guidance: must be a finite number, got nan"),
        (["--guidance", "inf"], "argument --guidance: must be a finite number, got inf"),
        (["--guidance", "-1"], "argument --guidance: must be >= 0, got -1"),
        (["--seed", "-1"], "argument --seed: must be between 0 and 2**64 - 1, got -1"),
        (["--seed", str(2**64)], "argument --seed: must be between 0 and 2**64 - 1"),
        (["--stride", "0"], "argument --stride: must be a positive integer"),
        (["--window-overlap", "x"], "argument --window-overlap: must be an integer"),
        (["--cache-threshold", "-0.1"], "argument --cache-threshold: must be positive"),
    ],
)
def test_malformed_numbers_are_one_line_usage_errors(model_dir, inputs, tmp_path, capsys, bad, message):
    assert main(generate_args(model_dir, inputs, tmp_path / "out.mp4", *bad)) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert message in err and err.startswith("animatex-pp generate: error: ")
    assert err.count("\n") == 1  # one line, no usage text, no traceback


def test_a_saved_pose_takes_the_stride_and_its_own_frame_rate(model_dir, tmp_path):
    from animatex_pp.pose import PoseSequence

    rng = np.random.default_rng(1)
    body = np.tile(rng.uniform(0.3, 0.7, (1, 18, 2)), (18, 1, 1)).astype(np.float32)
    body[:, :, 1] += np.linspace(0, 0.1, 18, dtype=np.float32)[:, None]  # the body moves down
    PoseSequence(body=body, body_conf=np.ones((18, 18), np.float32), width=SIZE, height=SIZE, fps=8.0).save(
        tmp_path / "walk.npz"
    )
    PIL.Image.fromarray(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)).save(tmp_path / "ref.png")
    output = tmp_path / "walk.mp4"
    args = [
        "generate", "--model", str(model_dir), "--image", str(tmp_path / "ref.png"),
        "--pose", str(tmp_path / "walk.npz"), "--stride", "2", "--reference-pose", "none",
        "--size", f"{SIZE}x{SIZE}", "--steps", "1", "--dtype", "fp32", "--no-preview", "--output", str(output),
    ]  # fmt: skip
    assert main(args) == 0
    frames, fps = read_video(output)
    assert len(frames) == 9 and fps == pytest.approx(4)  # 18 frames at 8 fps, every 2nd: 9 frames at 4 fps


def _empty_pose(path, num_frames=9):
    from animatex_pp.pose import PoseSequence

    body, conf = np.full((num_frames, 18, 2), 0.5, np.float32), np.zeros((num_frames, 18), np.float32)
    return PoseSequence(body=body, body_conf=conf, width=SIZE, height=SIZE).save(path)


@pytest.fixture
def no_model_load(monkeypatch):
    """Loading the pipeline fails the test: refusals must come before it."""

    def refuse(*args, **kwargs):
        raise AssertionError("the pipeline was loaded before the inputs were refused")

    monkeypatch.setattr(AnimateXPipeline, "from_pretrained", refuse)


def test_empty_poses_are_refused_before_the_model_loads(model_dir, inputs, tmp_path, capsys, caplog, no_model_load):
    output = tmp_path / "out.mp4"
    empty = _empty_pose(tmp_path / "empty.npz")
    args = generate_args(model_dir, inputs, output)
    args[args.index("--pose") + 1] = str(empty)
    assert main(args) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert f"the driving poses from {empty} show nobody in any frame" in err and "--allow-empty-pose" in err
    # A reference pose file with no body point.
    args = generate_args(model_dir, inputs, output, "--reference-pose", str(_empty_pose(tmp_path / "ref.json", 1)))
    assert main(args) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "the reference skeleton from" in err and "shows no body" in err
    assert "--over IMAGE" in err and "by hand" in err
    # A driving video with no person in it.
    frames = np.zeros((6, 160, 128, 3), np.uint8)
    frames[:] = np.linspace(40, 200, 128, dtype=np.uint8)[None, None, :, None]  # an empty grey gradient
    write_video(tmp_path / "nobody.mp4", frames, 8)
    args = generate_args(model_dir, inputs, output)
    args[args.index("--pose") : args.index("--pose") + 2] = ["--driving-video", str(tmp_path / "nobody.mp4")]
    assert main(args) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert f"mediapipe found nobody in any of the 6 frames of {tmp_path / 'nobody.mp4'}" in caplog.text
    assert f"the driving poses from {tmp_path / 'nobody.mp4'} show nobody in any frame" in err
    # A rendered pose video that is black throughout.
    write_video(tmp_path / "black.mp4", np.zeros((9, SIZE, SIZE, 3), np.uint8), 8)
    args = generate_args(model_dir, inputs, output)
    args[args.index("--pose") + 1] = str(tmp_path / "black.mp4")
    assert main(args) == EXIT_BAD_INPUT
    assert "show nobody in any frame" in capsys.readouterr().err
    assert not output.exists()


def test_reference_pose_takes_what_the_messages_say(model_dir, inputs, tmp_path, capsys):
    from tests.helpers.poses import HUMAN_LENGTHS, STANDING_ANGLES, body_pixels, make_pose

    (tmp_path / "skeleton.txt").write_text("not a pose")
    args = generate_args(model_dir, inputs, tmp_path / "out.mp4", "--reference-pose", str(tmp_path / "skeleton.txt"))
    assert main(args) == EXIT_BAD_INPUT
    assert "--reference-pose must be one of" in capsys.readouterr().err
    # A skeleton written by hand as JSON, in pixels of the reference image, with --retarget.
    hand_made = make_pose([body_pixels(HUMAN_LENGTHS, STANDING_ANGLES, (20, 8))], width=40, height=48, fps=None)
    hand_made.save(tmp_path / "character.json")
    poses = make_pose([body_pixels(HUMAN_LENGTHS, STANDING_ANGLES, (300, 200))] * 9, width=600, height=800)
    poses.save(tmp_path / "dance.npz")
    args = generate_args(model_dir, inputs, tmp_path / "out.mp4", "--reference-pose", str(tmp_path / "character.json"),
                         "--retarget", "--no-preview")  # fmt: skip
    args[args.index("--pose") + 1] = str(tmp_path / "dance.npz")
    assert main(args) == 0


def test_allow_empty_pose_generates_anyway(model_dir, inputs, tmp_path):
    output = tmp_path / "out.mp4"
    args = generate_args(model_dir, inputs, output, "--allow-empty-pose", "--no-preview")
    args[args.index("--pose") + 1] = str(_empty_pose(tmp_path / "empty.npz"))
    assert main(args) == 0
    assert read_video(output)[0].shape == (9, SIZE, SIZE, 3)


# ----------------------------------------------------------------------------- every check before work starts


def _cli_error(args, capsys) -> str:
    assert main(args) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err  # one line
    return err


def test_output_paths_are_checked_before_the_model_loads(model_dir, inputs, tmp_path, capsys, no_model_load):
    (tmp_path / "folder.mp4").mkdir()
    err = _cli_error(generate_args(model_dir, inputs, tmp_path / "folder.mp4"), capsys)
    assert f"--output {tmp_path / 'folder.mp4'} is a directory" in err
    err = _cli_error(generate_args(model_dir, inputs, "/proc/out.mp4"), capsys)
    assert "--output: cannot write in /proc" in err
    (tmp_path / "file").write_text("")
    assert "is not a folder" in _cli_error(generate_args(model_dir, inputs, tmp_path / "file" / "out.mp4"), capsys)
    # The output, or one of its previews, on an input file: refused, and the input is left as it was.
    pose_bytes = (inputs / "pose.mp4").read_bytes()
    err = _cli_error(generate_args(model_dir, inputs, inputs / "pose.mp4"), capsys)
    assert f"--output {inputs / 'pose.mp4'} would overwrite --pose" in err
    assert (inputs / "pose.mp4").read_bytes() == pose_bytes
    args = generate_args(model_dir, inputs, tmp_path / "ref.mp4")
    shutil.copy(inputs / "reference.png", tmp_path / "ref.preview.png")
    args[args.index("--image") + 1] = str(tmp_path / "ref.preview.png")
    assert "would overwrite --image" in _cli_error(args, capsys)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--device", "cuda"], "--device cuda: this machine has no CUDA device"),
        (["--device", "cuda:1"], "--device cuda:1: this machine has no CUDA device"),
        (["--device", "gpu"], "--device gpu is not a torch device"),
        (["--window-overlap", "3"], "--window-overlap 3: frames shared by windows of 81 must be a multiple of 4"),
        (["--window-overlap", "-4"], "--window-overlap -4"),
        (["--window-overlap", "84"], "from 4 to 80"),
        (["--keep-missing-parts"], "--keep-missing-parts applies to retargeting: add --retarget"),
        # Refused as arguments, so never a model loaded (or memory exhausted) at an absurd size.
        (["--size", "8208x480"], "argument --size: height and width must be at most 8192 pixels, got '8208x480'"),
        (["--size", "480x100000"], "argument --size: height and width must be at most 8192 pixels"),
        (["--frames", "10"], "--frames 10 (as 4k+1: 13) needs 13 frames but --pose has 9: use --frames 9"),
        (
            ["--stride", "2"],
            "the default --frames 5 (the length of --pose at --stride 2) needs 5 frames but --driving-video at "
            "--stride 2 has 3: use --frames 1 or less",
        ),
    ],
)
def test_arguments_are_checked_before_the_model_loads(
    model_dir, inputs, tmp_path, capsys, no_model_load, extra, message
):
    write_video(tmp_path / "driving.mp4", np.zeros((9, SIZE, SIZE, 3), np.uint8), 8)
    args = generate_args(model_dir, inputs, tmp_path / "out.mp4", *extra)
    if "--stride" in extra:
        args += ["--driving-video", str(tmp_path / "driving.mp4")]
        write_video(tmp_path / "driving.mp4", np.zeros((5, SIZE, SIZE, 3), np.uint8), 8)
    assert message in _cli_error(args, capsys)


def test_ti2v_refuses_retargeting_before_the_model_loads(model_dir, inputs, tmp_path, capsys, no_model_load):
    args = [
        "generate", "--model", str(model_dir), "--image", str(inputs / "reference.png"), "--mode", "ti2v",
        "--retarget", "--frames", "5", "--size", f"{SIZE}x{SIZE}", "--output", str(tmp_path / "city.mp4"),
    ]  # fmt: skip
    assert "--mode ti2v takes no --pose, --driving-video, --reference-pose or --retarget" in _cli_error(args, capsys)


def test_a_shorter_driving_video_is_refused_naming_it(model_dir, inputs, tmp_path, capsys, no_model_load):
    write_video(tmp_path / "driving.mp4", np.zeros((5, SIZE, SIZE, 3), np.uint8), 8)
    args = generate_args(model_dir, inputs, tmp_path / "out.mp4", "--driving-video", str(tmp_path / "driving.mp4"))
    err = _cli_error(args, capsys)
    assert "the default --frames 9 (the length of --pose) needs 9 frames but --driving-video has 5" in err
    assert "use --frames 5 or less" in err


def test_a_frame_count_rounds_down_rather_than_past_the_pose(model_dir, tmp_path, capsys):
    from tests.helpers.poses import HUMAN_LENGTHS, STANDING_ANGLES, body_pixels, make_pose

    make_pose([body_pixels(HUMAN_LENGTHS, STANDING_ANGLES, (150, 60))] * 10, width=320, height=320).save(
        tmp_path / "walk.npz"
    )
    PIL.Image.new("RGB", (SIZE, SIZE), "pink").save(tmp_path / "ref.png")
    args = [
        "generate", "--model", str(model_dir), "--image", str(tmp_path / "ref.png"),
        "--pose", str(tmp_path / "walk.npz"),
        "--reference-pose", "none", "--frames", "10", "--size", f"{SIZE}x{SIZE}", "--steps", "1", "--dtype", "fp32",
        "--no-preview", "--output", str(tmp_path / "walk.mp4"),
    ]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "--frames 10 is not 4k+1 (the VAE packs 4 frames into one latent frame): rounding down to 9" in out
    assert f"wrote {tmp_path / 'walk.mp4'} (9 frames, {SIZE}x{SIZE}, " in out  # H x W, as --size takes it
    assert len(read_video(tmp_path / "walk.mp4")[0]) == 9


def test_damaged_model_folders_are_reported_naming_the_file(model_dir, inputs, tmp_path, capsys, no_model_load):
    damaged = tmp_path / "model"
    shutil.copytree(model_dir, damaged)
    weights = damaged / "transformer" / "diffusion_pytorch_model.safetensors"
    whole = weights.read_bytes()
    weights.write_bytes(whole[:-1000])  # a copy cut short
    err = _cli_error(generate_args(damaged, inputs, tmp_path / "out.mp4"), capsys)
    assert f"{weights} is truncated: it holds {len(whole) - 1000} of the {len(whole)} bytes" in err
    assert "copy or download it again" in err
    weights.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    assert f"{weights} is not a valid safetensors file (corrupt header)" in _cli_error(
        generate_args(damaged, inputs, tmp_path / "out.mp4"), capsys
    )
    weights.unlink()
    err = _cli_error(generate_args(damaged, inputs, tmp_path / "out.mp4"), capsys)
    assert f"the transformer folder {damaged / 'transformer'} has no weight file" in err
    weights.write_bytes(whole)
    shutil.rmtree(damaged / "vae")
    assert "lacks its vae/ folder" in _cli_error(generate_args(damaged, inputs, tmp_path / "out.mp4"), capsys)


def test_ctrl_c_ends_with_a_short_message_and_keeps_the_previous_output(model_dir, inputs, tmp_path, capsys,
                                                                       monkeypatch):  # fmt: skip
    output = tmp_path / "out.mp4"
    output.write_bytes(b"the previous video")

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("animatex_pp.io.video._encode", lambda path, frames, fps, crf: (path.write_bytes(b"half"),
                                                                                            interrupt()))  # fmt: skip
    assert main(generate_args(model_dir, inputs, output)) == EXIT_INTERRUPTED
    err = capsys.readouterr().err  # after the progress bars
    assert err.endswith("\nanimatex-pp generate: interrupted; no output was written or replaced\n")
    assert output.read_bytes() == b"the previous video"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out.mp4"]  # no temporary file left


@pytest.fixture
def fed_poses(monkeypatch):
    """The pose videos the model is fed, as uint8 (F, H, W, 3), one per `encode_pose_conditions` call."""
    from animatex_pp.models.transformer import AnimateXTransformer3DModel

    seen = []
    original = AnimateXTransformer3DModel.encode_pose_conditions

    def capture(self, *args, **kwargs):
        # (B, 3, F, H, W) in [0, 1] -> (F, H, W, 3) uint8
        seen.append((kwargs["pose_video"][0].permute(1, 2, 3, 0).float() * 255).round().byte().numpy())
        return original(self, *args, **kwargs)

    monkeypatch.setattr(AnimateXTransformer3DModel, "encode_pose_conditions", capture)
    return seen


def test_the_preview_shows_the_pose_exactly_as_the_model_got_it(model_dir, tmp_path, fed_poses):
    from animatex_pp.io.preview import LABEL_HEIGHT, MIN_SHEET_CELL_HEIGHT
    from tests.helpers.poses import HUMAN_LENGTHS, STANDING_ANGLES, body_pixels, make_pose

    # Poses at 320 x 320 generated at 32 x 32: the model sees 1-pixel strokes (DWPose's 4 pixels, resized).
    make_pose([body_pixels(HUMAN_LENGTHS, STANDING_ANGLES, (150, 60))] * 9, width=320, height=320).save(
        tmp_path / "walk.npz"
    )
    PIL.Image.new("RGB", (SIZE, SIZE), "pink").save(tmp_path / "ref.png")
    args = [
        "generate", "--model", str(model_dir), "--image", str(tmp_path / "ref.png"),
        "--pose", str(tmp_path / "walk.npz"),
        "--reference-pose", "none", "--size", f"{SIZE}x{SIZE}", "--steps", "1", "--dtype", "fp32",
        "--output", str(tmp_path / "walk.mp4"),
    ]  # fmt: skip
    assert main(args) == 0
    fed = fed_poses[0]
    sheet = np.asarray(PIL.Image.open(tmp_path / "walk.preview.png"))
    scale = MIN_SHEET_CELL_HEIGHT // SIZE
    cell = SIZE * scale
    columns = np.unique(np.linspace(0, 8, 8).round().astype(int))
    for column, frame in enumerate(columns, start=1):
        shown = sheet[LABEL_HEIGHT : LABEL_HEIGHT + cell, column * cell : (column + 1) * cell][::scale, ::scale]
        np.testing.assert_array_equal(shown, fed[frame])
    assert fed.max() > 0  # a skeleton was drawn


def test_retarget_drops_what_the_reference_lacks_warning_once_and_keep_missing_parts_keeps_it(
    model_dir, tmp_path, caplog, fed_poses
):
    from tests.helpers.poses import HUMAN_LENGTHS, STANDING_ANGLES, body_pixels, make_pose

    # A mermaid written by hand in pixels of its 64 x 96 picture: hips, no knees or ankles.
    small = {name: length / 8 for name, length in HUMAN_LENGTHS.items()}
    conf = np.ones((1, 18))
    conf[0, [9, 10, 12, 13]] = 0.0
    make_pose([body_pixels(small, STANDING_ANGLES, (32, 16))], width=64, height=96, fps=None, conf=conf).save(
        tmp_path / "mermaid.json"
    )
    PIL.Image.new("RGB", (64, 96), "pink").save(tmp_path / "mermaid.png")
    make_pose([body_pixels(HUMAN_LENGTHS, STANDING_ANGLES, (300, 200))] * 9, width=600, height=800).save(
        tmp_path / "dance.npz"
    )
    args = [
        "generate", "--model", str(model_dir), "--image", str(tmp_path / "mermaid.png"),
        "--pose", str(tmp_path / "dance.npz"), "--reference-pose", str(tmp_path / "mermaid.json"), "--retarget",
        "--size", f"{SIZE}x{SIZE}", "--steps", "1", "--dtype", "fp32", "--output", str(tmp_path / "swim.mp4"),
    ]  # fmt: skip
    dropped = "the reference skeleton has no right knee, right ankle, left knee, left ankle"
    with caplog.at_level("WARNING"):
        assert main(args) == 0  # with the preview, which shows the same retargeted poses
    assert sum(dropped in record.getMessage() for record in caplog.records) == 1
    # The hips are at y ~ 16 + 20 = 36 of 96, 12 of 32: nothing is drawn far below them.
    assert fed_poses[0][:, 16:].max() == 0
    caplog.clear()
    with caplog.at_level("WARNING"):
        assert main([*args, "--keep-missing-parts", "--no-preview"]) == 0
    assert dropped not in caplog.text
    assert fed_poses[-1][:, 16:].max() > 0  # the legs are drawn


def test_third_party_log_noise_stays_out_unless_asked_for(shared_assets, tmp_path):
    image = shared_assets / "images" / "anime_girl.jpeg"
    output = tmp_path / "a.npz"
    command = [sys.executable, "-m", "animatex_pp.cli", "pose", "extract", str(image), "--out", str(output)]
    quiet = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "ANIMATEX_PP_VERBOSE": ""})
    assert quiet.returncode == 0, quiet.stderr
    for noise in ("W0000", "absl::InitializeLog", "XNNPACK", "requires torchvision"):
        assert noise not in quiet.stderr + quiet.stdout
    loud = subprocess.run([*command[:3], "--verbose", *command[3:]], capture_output=True, text=True)
    assert "absl::InitializeLog" in loud.stderr or "W0000" in loud.stderr


def test_help_reads_well():
    result = subprocess.run(
        [sys.executable, "-m", "animatex_pp.cli", "generate", "--help"], capture_output=True, text=True, check=True
    )
    for option in ("--model", "--image", "--pose", "--driving-video", "--prompt", "--output", "--frames", "--steps",
                   "--guidance", "--seed", "--size", "--mode", "examples:", "Exit codes"):  # fmt: skip
        assert option in result.stdout
    result = subprocess.run(
        [sys.executable, "-m", "animatex_pp.cli", "convert", "--help"], capture_output=True, text=True, check=True
    )
    for option in ("--base", "--checkpoint", "--motion-encoder", "--output"):
        assert option in result.stdout


# ----------------------------------------------------------------------------- convert


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """A diffusers Wan2.1 I2V directory, a motion-encoder directory and a release in the official key names."""
    return write_release(tmp_path_factory.mktemp("release"))


def test_convert_builds_a_pipeline_directory_that_generates(release, inputs, tmp_path):
    output = tmp_path / "animatex"
    args = [
        "convert", "--base", str(release / "wan"), "--checkpoint", str(release / "animate-x++.ckpt"),
        "--motion-encoder", str(release / "clip"), "--output", str(output), "--preset", "tiny", "--dtype", "fp32",
    ]  # fmt: skip
    assert main(args) == 0
    assert not list(tmp_path.glob(".animatex*"))  # the staging directory was renamed into place
    files = {path.suffix for path in output.rglob("*") if path.is_file()}
    umask = os.umask(0)
    os.umask(umask)
    for path in output.rglob("*"):  # the user's normal permissions, not safetensors' private 0o600
        assert stat.S_IMODE(path.stat().st_mode) == (0o777 if path.is_dir() else 0o666) & ~umask, path
    assert ".safetensors" in files and not files & {".bin", ".pt", ".ckpt"}

    pipe = AnimateXPipeline.from_pretrained(output)
    assert pipe.motion_encoder is not None
    # The official sampler setting on diffusers' Wan scheduler: UniPC on flow sigmas, shift 5.
    assert type(pipe.scheduler).__name__ == "UniPCMultistepScheduler"
    assert pipe.scheduler.config.use_flow_sigmas and pipe.scheduler.config.flow_shift == 5.0
    # The transformer is the base with the release applied by the model's own importer, weight for weight.
    base = WanTransformer3DModel.from_pretrained(release / "wan", subfolder="transformer")
    expected = animatex_from_wan(base, str(release / "animate-x++.ckpt"), **split_preset("tiny")[1]).state_dict()
    converted = pipe.transformer.state_dict()
    assert converted.keys() == expected.keys()
    for key, value in expected.items():
        torch.testing.assert_close(converted[key], value, rtol=0, atol=0, msg=key)
    assert pipe.transformer.pose_video_encoder.layers[-1].weight.abs().sum() > 0  # the streams are no longer silent
    assert main(generate_args(output, inputs, tmp_path / "out.mp4", "--no-preview")) == 0


def test_convert_refuses_an_ipi_release_without_its_clip_and_an_existing_output(release, tmp_path, capsys):
    base = ["convert", "--base", str(release / "wan"), "--checkpoint", str(release / "animate-x++.ckpt")]
    assert main([*base, "--output", str(tmp_path / "out"), "--preset", "tiny"]) == EXIT_BAD_INPUT
    assert "--motion-encoder" in capsys.readouterr().err
    (tmp_path / "taken").mkdir()
    assert main([*base, "--output", str(tmp_path / "taken"), "--motion-encoder", str(release / "clip")]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["convert", "--base", str(tmp_path), "--checkpoint", "x.ckpt", "--output", "y"]) == EXIT_BAD_INPUT
    assert "model_index.json" in capsys.readouterr().err
    # An output on an input (with --overwrite it would be deleted first): refused.
    clip = ["--motion-encoder", str(release / "clip"), "--overwrite"]
    assert main([*base, *clip, "--output", str(release / "wan")]) == EXIT_BAD_INPUT
    assert f"--output {release / 'wan'} would overwrite --base" in capsys.readouterr().err
    assert main([*base, *clip, "--output", str(release)]) == EXIT_BAD_INPUT
    assert "would overwrite --base" in capsys.readouterr().err
    assert (release / "wan" / "model_index.json").is_file() and (release / "animate-x++.ckpt").is_file()
    # A checkpoint cut short, and a non-finite shift: one line each, before anything loads.
    whole = (release / "animate-x++.ckpt").read_bytes()
    (tmp_path / "cut.ckpt").write_bytes(whole[: len(whole) // 2])
    cut = ["convert", "--base", str(release / "wan"), "--checkpoint", str(tmp_path / "cut.ckpt"), *clip[:2]]
    assert main([*cut, "--output", str(tmp_path / "out")]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert f"{tmp_path / 'cut.ckpt'} is truncated or corrupt" in err and err.count("\n") == 1
    assert main([*base, *clip[:2], "--output", str(tmp_path / "out"), "--shift", "nan"]) == EXIT_BAD_INPUT
    assert "argument --shift: must be a finite number, got nan" in capsys.readouterr().err
