"""`animatex-pp synthx build` through the CLI's main: a build, real motion from the sample video, bad input."""

import json

import pytest

from animatex_pp.cli import main
from animatex_pp.pose import extract


def test_build_writes_a_benchmark(tmp_path, capsys):
    out = tmp_path / "bench"
    code = main(["synthx", "build", str(out), "--size", "32", "--frames", "5", "--train", "3", "--test", "2",
                 "--seed", "4", "--quiet", "--workers", "1"])  # fmt: skip
    assert code == 0
    summary = json.loads((out / "synthx.json").read_text())
    assert summary["parameters"]["seed"] == 4
    assert [summary["splits"][s]["clips"] for s in ("train", "test_x", "test_x_dynamic", "test_human")] == [3, 2, 2, 2]
    assert "wrote" in capsys.readouterr().out


@pytest.fixture(scope="module")
def dance_pose(tmp_path_factory, shared_assets):
    """The sample dance's poses, extracted once (MediaPipe, a few seconds)."""
    path = tmp_path_factory.mktemp("poses") / "dance.pose.json"
    extract(shared_assets / "videos" / "dance_anime_32f.mp4", backend="mediapipe", hands=False).save(path)
    return path


def test_real_motion_from_a_pose_file_enters_training_and_test(tmp_path, dance_pose):
    out = tmp_path / "bench"
    code = main(["synthx", "build", str(out), "--size", "32", "--frames", "9", "--train", "8", "--test", "4",
                 "--motion-from", str(dance_pose), "--quiet", "--workers", "1"])  # fmt: skip
    assert code == 0
    motions = {split: {json.loads(line)["motion"] for line in (out / f"{split}.jsonl").read_text().splitlines()}
               for split in ("train", "test_human")}  # fmt: skip
    real_train = {m for m in motions["train"] if m.startswith("real:dance.pose.json#")}
    assert real_train and not real_train & motions["test_human"]


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--frames", "16"], "4k+1"),
        (["--size", "50"], "multiple of 16"),
        (["--train", "0", "--test", "0"], "at least one clip"),
        (["--motion-from", "missing.pose.npz"], "not found"),
        (["--workers", "0"], "--workers"),
    ],
)
def test_bad_input_is_one_line_and_exit_2_before_any_work(tmp_path, capsys, arguments, message):
    out = tmp_path / "bench"
    assert main(["synthx", "build", str(out), "--quiet", *arguments]) == 2
    error = capsys.readouterr().err.strip()
    assert message in error and "\n" not in error
    assert not out.exists()


def test_a_missing_parent_folder_is_exit_2(tmp_path, capsys):
    assert main(["synthx", "build", str(tmp_path / "no" / "bench"), "--quiet"]) == 2
    assert "does not exist" in capsys.readouterr().err
