"""`animatex-pp eval` on a tiny pipeline and a small SynthX build: outputs, the copy-the-reference baseline against
a computation of our own, resuming, and refusals before any model loads."""

import errno
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import PIL.Image
import pytest
import torch

from animatex_pp.cli import EXIT_BAD_INPUT, EXIT_OK, main
from animatex_pp.eval.evaluate import _pipeline_identity, evaluate
from animatex_pp.io.video import read_video
from animatex_pp.pipelines.pipeline_animatex import AnimateXPipeline
from animatex_pp.synthx.build import BuildConfig, build
from animatex_pp.testing import tiny_pipeline

# 9 frames: the tiny pipeline's IPI window, so each clip is one window. One ti2v training clip (train=1, share 1).
CONFIG = BuildConfig(size=32, frames=9, train=1, test=1, seed=5, ti2v_share=1.0)


@pytest.fixture(scope="module")
def metadata(tmp_path_factory):
    """A split of two clips: an X character over a drifting or zooming background (animation) and a ti2v clip."""
    root = tmp_path_factory.mktemp("synthx") / "small"
    build(root, CONFIG, workers=1, progress=False)
    rows = [json.loads(line) for name in ("test_x_dynamic.jsonl", "train.jsonl") for line in (root / name).open()]
    assert [row["task"] for row in rows] == ["animation", "ti2v"]
    path = root / "mixed.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.fixture(scope="module")
def evaluated(model_dir, metadata, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval") / "out"
    args = ["eval", "--model", str(model_dir), "--data", str(metadata), "--out", str(out), "--steps", "1"]
    assert main(args) == EXIT_OK
    return out, args


@pytest.fixture
def no_model_load(monkeypatch):
    """Loading or calling the pipeline fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("the pipeline was loaded or called")

    monkeypatch.setattr(AnimateXPipeline, "from_pretrained", refuse)
    monkeypatch.setattr(AnimateXPipeline, "__call__", refuse)


def test_eval_writes_metrics_table_sheet_and_videos(evaluated):
    out, _ = evaluated
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["split"] == "mixed"
    assert [clip["id"] for clip in metrics["clips"]] == ["test_x_dynamic/00000", "train/00000"]
    animation, ti2v = metrics["clips"]
    assert (animation["mode"], ti2v["mode"]) == ("animation", "ti2v")
    for clip in metrics["clips"]:
        assert (clip["num_frames"], clip["height"], clip["width"]) == (9, 32, 32)
        for run in ("model", "copy_reference", "no_pose"):
            assert {"psnr", "psnr_star", "ssim", "l1"} <= clip[run].keys()
            assert np.isfinite([clip[run][name] for name in ("psnr", "psnr_star", "ssim", "l1")]).all()
        assert (out / "clips" / f"{clip['id']}.json").is_file()
        assert read_video(out / clip["outputs"]["model"])[0].shape == (9, 32, 32, 3)
    # A drifting or zooming background is expected, and measured on every run.
    assert animation["expected_background_motion"] not in (None, "still")
    assert {"background_motion", "background_motion_correct"} <= animation["no_pose"].keys()
    assert (out / animation["outputs"]["no_pose"]).is_file()
    # A ti2v clip has no pose to switch off: its no-pose result is the model's.
    assert ti2v["no_pose"] == ti2v["model"]
    for run in ("mean", "copy_reference", "no_pose"):
        assert metrics[run]["clips"] == 2
        assert metrics[run]["psnr"] == pytest.approx(np.mean([clip[run if run != "mean" else "model"]["psnr"]
                                                               for clip in metrics["clips"]]))  # fmt: skip
    summary = metrics["summary"]
    for key in ("psnr", "ssim", "copy_reference_psnr", "no_pose_psnr", "background_motion_accuracy"):
        assert key in summary
    assert summary["copy_reference_psnr"] == metrics["copy_reference"]["psnr"]
    table = (out / "metrics.md").read_text()
    assert "| copy the reference | 2 |" in table and "test_x_dynamic/00000" in table
    with PIL.Image.open(out / "contact_sheet.png") as sheet:
        # 5 columns (reference | pose | output | no-pose output | ground truth) of 32 px cells enlarged to 128
        assert sheet.width == 5 * 128


def test_copy_reference_psnr_matches_an_independent_computation(evaluated, metadata):
    out, _ = evaluated
    metrics = json.loads((out / "metrics.json").read_text())
    rows = [json.loads(line) for line in metadata.open()]
    for row, clip in zip(rows, metrics["clips"], strict=True):
        truth = read_video(metadata.parent / row["video"])[0].astype(np.float64) / 255  # (F, H, W, 3)
        reference = np.asarray(PIL.Image.open(metadata.parent / row["reference"]).convert("RGB")) / 255
        mse = ((truth - reference[None]) ** 2).mean(axis=(1, 2, 3))  # (F,)
        # An exact frame counts 100 dB (the ti2v clip's reference is its first frame).
        expected = np.where(mse > 0, 10 * np.log10(1 / np.maximum(mse, 1e-300)), 100.0).clip(max=100.0).mean()
        assert clip["copy_reference"]["psnr"] == pytest.approx(expected, rel=1e-5)


def test_a_rerun_skips_every_clip_done(evaluated, metadata, model_dir, no_model_load, capsys):
    out, args = evaluated
    before = {path: path.stat().st_mtime_ns for path in (out / "clips").rglob("*.json")}
    assert main(args) == EXIT_OK
    assert "mixed, 2 clips: PSNR" in capsys.readouterr().out
    assert {path: path.stat().st_mtime_ns for path in (out / "clips").rglob("*.json")} == before
    # The API, limited to the first clip, summarises it alone, still without generating.
    metrics = evaluate(model_dir, metadata, out, num_inference_steps=1, limit=1, progress=False)
    assert [clip["id"] for clip in metrics["clips"]] == ["test_x_dynamic/00000"]
    assert metrics["mean"]["clips"] == 1


def test_results_of_other_settings_are_refused(evaluated, no_model_load, capsys):
    out, args = evaluated
    assert main([*args, "--seed", "1"]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip()
    assert "another model, split or settings" in err and "use another --out" in err


def _unwritable(context):
    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    # Root (the tests' usual user in containers) ignores permission bits, so the write probe is made to fail.
    context.monkeypatch.setattr("animatex_pp.pipelines.checks.tempfile.TemporaryFile", refuse)


MODEL, DATA, OUT = 2, 4, 6  # positions of the values in the argument list


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda a, c: a.__setitem__(MODEL, str(c.tmp / "missing")), "a pipeline directory not found"),
        (lambda a, c: a.__setitem__(MODEL, str(c.tmp)), "it has no model_index.json"),
        (lambda a, c: a.__setitem__(DATA, str(c.tmp / "missing.jsonl")), "metadata file not found"),
        (lambda a, c: a.__setitem__(OUT, str(c.tmp / "no" / "out")), "the folder for --out does not exist"),
        (lambda a, c: a.__setitem__(OUT, a[DATA]), "is a file"),
        (lambda a, c: a.__setitem__(OUT, str(c.metadata.parent)), "would overwrite --data"),
        (lambda a, c: a.__setitem__(OUT, str(Path(a[MODEL]) / "eval")), "is inside --model"),
        (lambda a, c: _unwritable(c), "--out: cannot write in"),
        (lambda a, c: a.extend(["--device", "cuda:7"]), "--device cuda:7"),
    ],
    ids=[
        "no-model",
        "not-a-pipeline",
        "no-metadata",
        "no-out-parent",
        "out-is-input",
        "out-holds-input",
        "out-in-model",
        "unwritable-out",
        "no-device",
    ],
)
def test_bad_inputs_exit_2_before_any_model_loads(
    model_dir, metadata, tmp_path, monkeypatch, no_model_load, capsys, change, message
):
    args = ["eval", "--model", str(model_dir), "--data", str(metadata), "--out", str(tmp_path / "out")]
    change(args, SimpleNamespace(tmp=tmp_path, metadata=metadata, monkeypatch=monkeypatch))
    assert main(args) == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_an_in_memory_pipeline_is_known_by_its_parameters():
    same, other = tiny_pipeline(seed=0), tiny_pipeline(seed=0)
    assert _pipeline_identity(same) == _pipeline_identity(other)
    with torch.no_grad():
        other.transformer.proj_out.bias.add_(1e-3)  # a training step's worth of change
    assert _pipeline_identity(same) != _pipeline_identity(other)
