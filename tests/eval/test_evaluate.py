"""`animatex-pp eval` on a tiny pipeline and a small SynthX build with background plates: outputs, the baselines
against computations of our own, the reference pose and the driving pose each clip is given, the character metrics,
the base model, resuming, and refusals before any model loads."""

import errno
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import PIL.Image
import pytest
import torch

from animatex_pp.cli import EXIT_BAD_INPUT, EXIT_OK, main
from animatex_pp.eval.character import character_psnr, foreground_iou, spurious_share
from animatex_pp.eval.evaluate import _pipeline_identity, clip_sheets, evaluate
from animatex_pp.eval.metrics import psnr
from animatex_pp.io.video import read_video, write_video
from animatex_pp.pipelines.loading import load_pipeline
from animatex_pp.pipelines.pipeline_animatex import AnimateXPipeline
from animatex_pp.pose.retarget import retarget
from animatex_pp.pose.sequence import PoseSequence
from animatex_pp.synthx.build import BuildConfig, build
from animatex_pp.synthx.truth import read_truth
from animatex_pp.testing import tiny_components, tiny_pipeline

# 9 frames: the tiny pipeline's IPI window, so each clip is one window. One ti2v training clip (train=1, share 1).
CONFIG = BuildConfig(size=32, frames=9, train=1, test=1, seed=5, ti2v_share=1.0)
ANIMATION = "test_x_dynamic/00000"  # an armless character over a moving background
SHEET_ROW_LABELS = 80  # clip_sheet's left margin with label_rows
CELL = 128  # 32 px cells enlarged to 128


def write_split(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.fixture(scope="module")
def metadata(tmp_path_factory):
    """A split of two clips: an X character over a drifting or zooming background (animation) and a ti2v clip, each
    row naming its background plate as SynthX's `background` key."""
    root = tmp_path_factory.mktemp("synthx") / "small"
    build(root, CONFIG, workers=1, progress=False)
    rows = [json.loads(line) for name in ("test_x_dynamic.jsonl", "train.jsonl") for line in (root / name).open()]
    assert [row["task"] for row in rows] == ["animation", "ti2v"]
    return write_split(root / "mixed.jsonl", rows)


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


@pytest.fixture
def calls(monkeypatch):
    """Every pipeline call's keyword arguments, in order (the call itself still runs)."""
    made = []
    call = AnimateXPipeline.__call__

    def spy(self, *args, **kwargs):
        made.append(kwargs)
        return call(self, *args, **kwargs)

    monkeypatch.setattr(AnimateXPipeline, "__call__", spy)
    return made


def rows_of(metadata: Path) -> list[dict]:
    return [json.loads(line) for line in metadata.open()]


def test_eval_writes_metrics_table_sheet_and_videos(evaluated):
    out, _ = evaluated
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["split"] == "mixed"
    assert [clip["id"] for clip in metrics["clips"]] == [ANIMATION, "train/00000"]
    animation, ti2v = metrics["clips"]
    assert (animation["mode"], ti2v["mode"]) == ("animation", "ti2v")
    runs = ("model", "copy_reference", "copy_reference_vae", "no_pose", "vae_reconstruction")
    for clip in metrics["clips"]:
        assert (clip["num_frames"], clip["height"], clip["width"]) == (9, 32, 32)
        for run in runs:
            assert {"psnr", "psnr_star", "ssim", "l1", "character_psnr", "foreground_iou", "spurious_share"} <= (
                clip[run].keys()
            )
            assert np.isfinite([clip[run][name] for name in ("psnr", "psnr_star", "ssim", "l1")]).all()
        assert (out / "clips" / f"{clip['id']}.json").is_file()
        assert read_video(out / clip["outputs"]["model"])[0].shape == (9, 32, 32, 3)
    # The animation clip has a character, its mask and its plate: every character metric is measured.
    assert all(animation[run][name] is not None for run in runs for name in ("character_psnr", "foreground_iou"))
    # A drifting or zooming background is expected, and measured on every run.
    assert animation["expected_background_motion"] not in (None, "still")
    assert {"background_motion", "background_motion_correct"} <= animation["no_pose"].keys()
    assert (out / animation["outputs"]["no_pose"]).is_file()
    # A ti2v clip has no pose to switch off: its no-pose result is the model's.
    assert ti2v["no_pose"] == ti2v["model"] and ti2v["driving"] is None
    for run in ("mean", "copy_reference", "copy_reference_vae", "no_pose", "vae_reconstruction"):
        assert metrics[run]["clips"] == 2
        assert metrics[run]["psnr"] == pytest.approx(np.mean([clip[run if run != "mean" else "model"]["psnr"]
                                                               for clip in metrics["clips"]]))  # fmt: skip
    assert metrics["base"] is None
    summary = metrics["summary"]
    for key in ("psnr", "ssim", "copy_reference_psnr", "no_pose_psnr", "background_motion_accuracy",
                "character_psnr", "foreground_iou", "spurious_share", "copy_reference_character_psnr",
                "copy_reference_vae_character_psnr", "no_pose_foreground_iou", "vae_reconstruction_character_psnr",
                "base_character_psnr", "driving_keypoint_error_px"):  # fmt: skip
        assert key in summary
    assert summary["copy_reference_psnr"] == metrics["copy_reference"]["psnr"]
    assert summary["driving_keypoint_error_px"] == animation["driving"]["keypoint_error_px"]["retargeted"]
    table = (out / "metrics.md").read_text()
    assert "| copy the reference | 2 |" in table and ANIMATION in table
    assert "| VAE reconstruction of the ground truth (ceiling) | 2 |" in table
    with PIL.Image.open(out / "contact_sheet.png") as sheet:
        # Columns: reference, first, middle and last frame. Rows: the animation clip's pose, output, no-pose output,
        # VAE of truth and ground truth; the ti2v clip's output, VAE of truth and ground truth; each block has a
        # title and a column-label strip.
        assert sheet.size == (SHEET_ROW_LABELS + 4 * CELL, 2 * 2 * 14 + (5 + 3) * CELL)
        # clip_sheets redraws the first clips' blocks from the saved results: the sheet's top block
        first = clip_sheets(out, count=1)
        assert first.size == (sheet.width, 2 * 14 + 5 * CELL)
        assert np.array_equal(np.asarray(first), np.asarray(sheet)[: first.height])


def test_copy_reference_baseline_matches_an_independent_computation(evaluated, metadata):
    out, _ = evaluated
    metrics = json.loads((out / "metrics.json").read_text())
    for row, clip in zip(rows_of(metadata), metrics["clips"], strict=True):
        truth = read_video(metadata.parent / row["video"])[0].astype(np.float64) / 255  # (F, H, W, 3)
        reference = np.asarray(PIL.Image.open(metadata.parent / row["reference"]).convert("RGB")) / 255
        mse = ((truth - reference[None]) ** 2).mean(axis=(1, 2, 3))  # (F,)
        # An exact frame counts 100 dB (the ti2v clip's reference is its first frame).
        expected = np.where(mse > 0, 10 * np.log10(1 / np.maximum(mse, 1e-300)), 100.0).clip(max=100.0).mean()
        assert clip["copy_reference"]["psnr"] == pytest.approx(expected, rel=1e-5)
        if row["task"] == "animation":
            masks = read_truth(metadata.parent / row["truth"]).character_masks()
            plate = read_video(metadata.parent / row["background"])[0]
            copied = np.broadcast_to(reference, truth.shape)
            assert clip["copy_reference"]["character_psnr"] == pytest.approx(character_psnr(copied, truth, masks))
            assert clip["copy_reference"]["foreground_iou"] == pytest.approx(foreground_iou(copied, plate, masks))
            assert clip["copy_reference"]["spurious_share"] == pytest.approx(spurious_share(copied, plate, masks))


def test_codec_baselines_go_through_the_evaluated_pipelines_vae(evaluated, metadata, model_dir):
    out, _ = evaluated
    metrics = json.loads((out / "metrics.json").read_text())
    vae = load_pipeline(model_dir).vae

    def round_trip(frames: np.ndarray) -> np.ndarray:  # uint8 (F, H, W, 3) -> uint8, encode -> mode -> decode
        video = torch.from_numpy(frames).float().div(127.5).sub(1).permute(3, 0, 1, 2)[None]  # -> (1, 3, F, H, W)
        with torch.no_grad():
            decoded = vae.decode(vae.encode(video).latent_dist.mode()).sample[0]  # (3, F, H, W)
        return ((decoded.permute(1, 2, 3, 0).clamp(-1, 1) + 1) * 127.5).round().byte().numpy()

    for row, clip in zip(rows_of(metadata), metrics["clips"], strict=True):
        truth = read_video(metadata.parent / row["video"])[0]
        reference = np.asarray(PIL.Image.open(metadata.parent / row["reference"]).convert("RGB"))
        copied = np.ascontiguousarray(np.broadcast_to(reference, truth.shape))
        assert clip["copy_reference_vae"]["psnr"] == pytest.approx(psnr(round_trip(copied), truth), abs=0.05)
        assert clip["vae_reconstruction"]["psnr"] == pytest.approx(psnr(round_trip(truth), truth), abs=0.05)


def test_every_animation_clip_gets_its_reference_pose_and_its_retargeted_driving_pose(metadata, tmp_path, calls):
    row = rows_of(metadata)[0]
    reference_pose = PoseSequence.load(metadata.parent / row["reference_pose"])
    raw = PoseSequence.load(metadata.parent / row["pose"])
    metrics = evaluate(tiny_pipeline(seed=0), metadata, tmp_path / "out", baselines=False, num_inference_steps=1,
                       limit=1, progress=False)  # fmt: skip
    (call,) = calls
    assert call["mode"] == "animation"
    assert isinstance(call["reference_pose"], PoseSequence)
    np.testing.assert_array_equal(call["reference_pose"].body, reference_pose.body)
    # The default: the human driver's pose moved onto the armless character's bones, its arms dropped.
    np.testing.assert_allclose(call["pose"].body, retarget(raw, reference_pose[0]).body, atol=1e-6)
    record = metrics["clips"][0]["driving"]
    assert (record["requested"], record["used"], record["fallback"]) == ("retargeted", "retargeted", None)
    assert {"right wrist", "left wrist"} <= set(record["dropped_parts"])
    errors = record["keypoint_error_px"]
    assert errors["retargeted"] < 0.5 < 3.0 < errors["raw"]
    assert metrics["clips"][0]["reference_pose"] is True
    assert metrics["settings"]["driving"] == "retargeted"


def test_the_raw_stress_test_feeds_the_driving_pose_as_it_is(metadata, tmp_path, calls):
    raw = PoseSequence.load(metadata.parent / rows_of(metadata)[0]["pose"])
    metrics = evaluate(tiny_pipeline(seed=0), metadata, tmp_path / "out", driving="raw", baselines=False,
                       num_inference_steps=1, limit=1, progress=False)  # fmt: skip
    (call,) = calls
    np.testing.assert_array_equal(call["pose"].body, raw.body)
    assert call["reference_pose"] is not None  # the reference pose is given in the stress test too
    record = metrics["clips"][0]["driving"]
    assert (record["requested"], record["used"]) == ("raw", "raw")
    assert metrics["summary"]["driving_keypoint_error_px"] == record["keypoint_error_px"]["raw"] > 3.0


def test_a_clip_without_a_reference_pose_is_driven_raw_and_says_so(metadata, tmp_path, calls):
    row = {key: value for key, value in rows_of(metadata)[0].items() if key != "reference_pose"}
    split = write_split(metadata.parent / "no_reference_pose.jsonl", [row])
    metrics = evaluate(tiny_pipeline(seed=0), split, tmp_path / "out", baselines=False, num_inference_steps=1,
                       progress=False)  # fmt: skip
    assert calls[0]["reference_pose"] is None
    record = metrics["clips"][0]["driving"]
    assert record["used"] == "raw" and "no reference pose" in record["fallback"]
    assert metrics["driving"]["fallbacks"] == [{"id": ANIMATION, "reason": record["fallback"]}]
    assert "1 raw" in (tmp_path / "out" / "metrics.md").read_text()


def test_character_metrics_of_a_perfect_model_and_of_one_that_erases_the_character(metadata, tmp_path, monkeypatch):
    row = rows_of(metadata)[0]
    truth = read_video(metadata.parent / row["video"])[0]
    plate = read_video(metadata.parent / row["background"])[0]
    masks = read_truth(metadata.parent / row["truth"]).character_masks()
    monkeypatch.setattr("animatex_pp.eval.evaluate.generate", lambda pipe, clip, inputs, mode, settings: inputs.truth)
    pipe = tiny_pipeline(seed=0)
    model = evaluate(pipe, metadata, tmp_path / "perfect", no_pose=False, limit=1, progress=False)["summary"]
    assert model["character_psnr"] == 100.0 and model["spurious_share"] == 0.0
    # The ground truth's own foreground: its anti-aliased edges and yuv420p chroma reach past the mask's pixel
    # centres, and texture close to the scene's colour stays under the threshold, so a 32 px puppet scores ~0.67.
    assert (
        model["foreground_iou"] == pytest.approx(foreground_iou(truth, plate, masks)) and model["foreground_iou"] > 0.5
    )
    # The ceiling row scores the codec: far below a perfect model with a random VAE.
    assert model["vae_reconstruction_character_psnr"] < model["character_psnr"] - 20
    monkeypatch.setattr("animatex_pp.eval.evaluate.generate", lambda pipe, clip, inputs, mode, settings: inputs.plate)
    erased = evaluate(pipe, metadata, tmp_path / "erased", baselines=False, limit=1, progress=False)["summary"]
    assert erased["foreground_iou"] == 0.0 and erased["spurious_share"] == 0.0
    assert erased["character_psnr"] < model["character_psnr"] - 30


def test_the_base_model_runs_the_same_clips_without_pose_streams(metadata, tmp_path, calls, monkeypatch):
    base = AnimateXPipeline(**tiny_components(seed=1, use_pose_video=False, use_ipi=False, use_reference_pose=False))
    model, out = tiny_pipeline(seed=0), tmp_path / "out"
    metrics = evaluate(model, metadata, out, baselines=False, base_model=base, num_inference_steps=1, progress=False)
    # The model's two clips, then the base's: the animation clip in ti2v mode, since the base has no pose stream.
    assert [call["mode"] for call in calls] == ["animation", "ti2v", "ti2v", "ti2v"]
    assert all(call["pose"] is None and call["reference_pose"] is None for call in calls[2:])
    animation = metrics["clips"][0]
    assert animation["modes"] == {"model": "animation", "base": "ti2v"}
    assert (out / animation["outputs"]["base"]).is_file()
    assert metrics["summary"]["base_psnr"] == pytest.approx(np.mean([clip["base"]["psnr"]
                                                                     for clip in metrics["clips"]]))  # fmt: skip
    assert "| base model | 2 |" in (out / "metrics.md").read_text()
    # Resumed: every clip has both runs, so nothing is generated again; another base is other settings.
    monkeypatch.setattr(AnimateXPipeline, "__call__", lambda *args, **kwargs: pytest.fail("generated again"))
    evaluate(model, metadata, out, baselines=False, base_model=base, num_inference_steps=1, progress=False)
    with torch.no_grad():
        base.transformer.proj_out.bias.add_(1e-3)
    with pytest.raises(ValueError, match="base_model.parameters"):
        evaluate(model, metadata, out, baselines=False, base_model=base, num_inference_steps=1, progress=False)


def test_a_rerun_skips_every_clip_done(evaluated, metadata, model_dir, no_model_load, capsys):
    out, args = evaluated
    before = {path: path.stat().st_mtime_ns for path in (out / "clips").rglob("*.json")}
    assert main(args) == EXIT_OK
    assert "mixed, 2 clips: PSNR" in capsys.readouterr().out
    assert {path: path.stat().st_mtime_ns for path in (out / "clips").rglob("*.json")} == before
    assert json.loads((out / "stage.json").read_text())["done"] is True
    # The API, limited to the first clip, summarises it alone, still without generating.
    metrics = evaluate(model_dir, metadata, out, num_inference_steps=1, limit=1, progress=False)
    assert [clip["id"] for clip in metrics["clips"]] == [ANIMATION]
    assert metrics["mean"]["clips"] == 1


@pytest.mark.parametrize(
    ("change", "named"),
    [(["--seed", "1"], "seed: 0 before, 1 now"), (["--driving", "raw"], "driving: 'retargeted' before, 'raw' now")],
    ids=["seed", "driving"],
)
def test_results_of_other_settings_are_refused_naming_the_difference(evaluated, no_model_load, capsys, change, named):
    out, args = evaluated
    assert main([*args, *change]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip()
    assert named in err and "use another folder" in err and len(err.splitlines()) == 1


def test_clip_results_without_a_stage_record_are_not_reused(evaluated, metadata, model_dir, tmp_path, no_model_load):
    out, _ = evaluated
    copy = tmp_path / "copy"
    shutil.copytree(out / "clips", copy / "clips")
    with pytest.raises(ValueError, match="no stage.json: their settings are unknown"):
        evaluate(model_dir, metadata, copy, num_inference_steps=1, progress=False)


def _unwritable(context):
    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    # Root (the tests' usual user in containers) ignores permission bits, so the write probe is made to fail.
    context.monkeypatch.setattr("animatex_pp.pipelines.checks.tempfile.TemporaryFile", refuse)


def _short_plate(context):
    row = rows_of(context.metadata)[0]
    plate = context.tmp / "short.mp4"
    write_video(plate, np.zeros((9, 16, 16, 3), np.uint8), 16)
    row["background"] = str(plate)
    return str(write_split(context.metadata.parent / "short_plate.jsonl", [row]))


MODEL, DATA, OUT = 2, 4, 6  # positions of the values in the argument list


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda a, c: a.__setitem__(MODEL, str(c.tmp / "missing")), "a pipeline directory not found"),
        (lambda a, c: a.__setitem__(MODEL, str(c.tmp)), "it has no model_index.json"),
        (lambda a, c: a.extend(["--base-model", str(c.tmp / "missing")]), "a base pipeline directory not found"),
        (lambda a, c: a.__setitem__(DATA, str(c.tmp / "missing.jsonl")), "metadata file not found"),
        (lambda a, c: a.__setitem__(DATA, _short_plate(c)), "background plate"),
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
        "no-base-model",
        "no-metadata",
        "plate-of-another-size",
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


def test_clip_sheets_refuse_a_folder_without_a_finished_evaluation(tmp_path):
    with pytest.raises(FileNotFoundError, match="no finished evaluation in"):
        clip_sheets(tmp_path)
