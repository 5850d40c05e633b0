"""`animatex-pp demo`: stage reuse (a done stage is skipped, an interrupted one resumes, changed settings redo it),
the quick configuration end to end with its outputs and the ablation sweep, then a second run that reuses every
stage, and bad options."""

import json

import PIL.Image
import pytest
import torch

from animatex_pp.cli import main
from animatex_pp.demo.run import (
    ABLATION_EVALS,
    ABLATIONS,
    BASE_PIPELINE,
    EVAL_SPLITS,
    PREVIEW_SPLITS,
    RAW_SPLIT,
    REPORTED,
    STAGES,
    DemoConfig,
    _stage,
    _training_overrides,
)
from animatex_pp.eval.evaluate import clip_sheets
from animatex_pp.training.config import compose_config


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)  # run_demo sets one thread for the process


def test_a_done_stage_is_reused_an_interrupted_one_resumes_and_other_settings_start_afresh(tmp_path):
    folder, calls = tmp_path / "stage", []

    def work(resume):
        calls.append(resume)
        folder.mkdir(exist_ok=True)
        (folder / "made").write_text("x")
        return {"value": len(calls)}

    stamp, result = _stage(tmp_path, "s", folder, {"a": 1}, work)
    assert calls == [False] and result["value"] == 1 and result["stage_time_s"] >= 0 and not result["reused"]
    assert _stage(tmp_path, "s", folder, {"a": 1}, work) == (stamp, {**result, "reused": True}) and calls == [False]

    marker = tmp_path / STAGES / "s.json"
    marker.write_text(json.dumps({**json.loads(marker.read_text()), "done": False}))  # as if interrupted
    _stage(tmp_path, "s", folder, {"a": 1}, work)
    assert calls == [False, True] and (folder / "made").exists()

    (folder / "stale").write_text("of other settings")
    other, _ = _stage(tmp_path, "s", folder, {"a": 2}, work)
    assert other != stamp and calls == [False, True, False] and not (folder / "stale").exists()


def test_a_failed_stage_is_not_marked_done(tmp_path):
    def work(resume):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        _stage(tmp_path, "s", tmp_path / "stage", {}, work)
    assert json.loads((tmp_path / STAGES / "s.json").read_text())["done"] is False


@pytest.mark.slow  # every stage for real, the trainer included: minutes on 2 cores
def test_quick_demo_end_to_end_with_the_ablation_then_a_second_run_reuses_every_stage(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--ablation", "--quiet", "--out", str(out)]) == 0
    for name in ("demo.mp4", "preview.png", "metrics.json", "report.md", "train/export/pipeline/model_index.json",
                 "base/pipeline/model_index.json"):  # fmt: skip
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["vae_psnr"] > 0 and metrics["wall_time_s"] > 0 and metrics["vae_character_psnr"] > 0
    assert metrics["vae_reversal_gap_db"] == pytest.approx(
        json.loads((out / STAGES / "vae.json").read_text())["result"]["reversal_gap_db"])  # fmt: skip
    for split in (*EVAL_SPLITS, f"{RAW_SPLIT}_raw"):
        assert set(metrics[split]) == set(REPORTED)
        assert metrics[split]["psnr"] > 0 and metrics[split]["copy_reference_psnr"] > 0
        assert metrics[split]["character_psnr"] > 0 and 0 <= metrics[split]["foreground_iou"] <= 1
        assert metrics[split]["base_character_psnr"] > 0  # the base, the "before" of every split
    assert metrics["base"]["steps"] > 0 and metrics["train"]["steps"] == 4
    report = (out / "report.md").read_text()
    assert "| test_x_raw | the base (before) |" in report and "copy_reference_character_psnr + 3 dB" in report
    assert "no_ti2v's background_motion_accuracy" in report and "](preview.png)" in report
    with PIL.Image.open(out / "preview.png") as preview:  # each preview split's first clip, with its baselines
        assert preview.height == sum(clip_sheets(out / "eval" / split).height for split in PREVIEW_SPLITS)
    assert list(metrics["ablation"]) == list(ABLATIONS) and metrics["ablation_time_s"] > 0
    assert metrics["ablation"]["no_ti2v"]["loss_ti2v"] is None and metrics["ablation"]["full"]["loss_ti2v"] > 0
    for name in ABLATIONS:
        assert f"| {name} |" in report
        point = metrics["ablation"][name]
        assert point["test_x_psnr"] > 0 and 0 <= point["test_x_raw_foreground_iou"] <= 1
    summary = (out / "ablation" / "summary.md").read_text()
    assert all(f"ablation={name}" in summary for name in ABLATIONS) and "failed" not in summary
    capsys.readouterr()

    assert main(["demo", "--quick", "--ablation", "--quiet", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    # synthx, vae, base, precompute, train; the splits and the raw one; the sweep and its evaluations
    stages = 5 + len(EVAL_SPLITS) + 1 + 1 + len(ABLATIONS) * len(ABLATION_EVALS)
    assert printed.count("reused") == stages and "starting" not in printed
    again = json.loads((out / "metrics.json").read_text())
    assert again["this_run_s"] < again["wall_time_s"] and again["stage_times_s"] == metrics["stage_times_s"]


def test_the_demo_trains_adapters_on_the_base_or_the_whole_model_from_scratch(tmp_path):
    on_base = compose_config(_training_overrides(tmp_path, DemoConfig()))
    assert on_base.model.source == "pretrained" and on_base.model.path == str(tmp_path / BASE_PIPELINE)
    assert on_base.adapter.lora.rank == 16 and list(on_base.adapter.train_patterns) == []
    scratch = compose_config(_training_overrides(tmp_path, DemoConfig(from_scratch=True)))
    assert scratch.model.source == "tiny" and scratch.model.path == str(tmp_path / "vae")
    assert list(scratch.adapter.train_patterns) == [".*"]
    assert on_base.trainer.max_steps == scratch.trainer.max_steps and on_base.data == scratch.data


@pytest.mark.parametrize(
    ("arguments", "message"),
    [(["--steps", "0"], "argument --steps: must be a positive integer, got 0"), (["--out", "FILE"], "is a file"),
     (["--out", "missing/demo"], "does not exist"), (["--base", "missing"], "a base folder (--base) not found"),
     (["--base", "FOLDER"], "no base in"), (["--base", "FOLDER", "--from-scratch"], "not both"),
     (["--from-scratch", "--ablation"], "drop from_scratch"),
     (["--pretrain-base", "FOLDER", "--from-scratch"], "--pretrain-base takes only")],
)  # fmt: skip
def test_bad_options_exit_2_before_any_stage(tmp_path, capsys, monkeypatch, arguments, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "FILE").write_text("")
    (tmp_path / "FOLDER").mkdir()
    (tmp_path / "FOLDER" / "model_index.json").write_text("{}")
    assert main(["demo", *arguments]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "animatex-demo").exists()
