"""Two-process DeepSpeed runs (gloo), kill-and-resume, and sweeps (the ablation recipe's own among them): slow,
started as real processes."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from animatex_pp.training import train
from animatex_pp.training.config import compose_config
from tests.helpers.training import tiny_overrides

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def losses(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "losses.jsonl").read_text().splitlines()]


def test_zero_stages_give_the_zero0_loss_curve_with_a_ti2v_step_before_an_animation_step(clip_folder, tmp_path):
    curves = {}
    for stage in ("zero0", "zero2", "zero3"):
        run = tmp_path / stage
        two_ranks = [f"deepspeed={stage}", "trainer.num_processes=2", "trainer.max_steps=2"]
        overrides = tiny_overrides(clip_folder / "metadata.jsonl", run, *two_ranks)
        train(compose_config(overrides))
        curves[stage] = losses(run)
        assert (run / "export" / "pipeline" / "model_index.json").is_file()
    tasks = [task for entry in curves["zero0"] for task in entry["tasks"]]
    assert ("ti2v", "animation") in set(zip(tasks, tasks[1:], strict=False)), tasks
    for stage in ("zero2", "zero3"):
        assert [task for entry in curves[stage] for task in entry["tasks"]] == tasks
        for reference, entry in zip(curves["zero0"], curves[stage], strict=True):
            assert entry["loss"] == pytest.approx(reference["loss"], rel=1e-5), (stage, entry["step"])


def _train_command(clip_folder: Path, run: Path, *extra: str) -> list[str]:
    six_steps = ["trainer.max_steps=6", "trainer.checkpoint_every=2", "trainer.export.enabled=false"]
    overrides = tiny_overrides(clip_folder / "metadata.jsonl", run, *six_steps, *extra)
    overrides = [item for item in overrides if not item.startswith("run_dir=")]
    return [sys.executable, "-m", "animatex_pp.cli", "train", *overrides, f"hydra.run.dir={run}"]


def test_a_run_killed_at_any_moment_resumes_bit_identically(clip_folder, tmp_path):
    whole = tmp_path / "whole"
    subprocess.run(_train_command(clip_folder, whole), check=True, cwd=REPO, capture_output=True)

    killed = tmp_path / "killed"
    process = subprocess.Popen(_train_command(clip_folder, killed), cwd=REPO, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    latest = killed / "checkpoints" / "latest.json"
    deadline = time.monotonic() + 300
    while not (latest.is_file() and json.loads(latest.read_text())["step"] >= 2):
        assert process.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)  # mid-step or mid-save: whatever it was doing
    process.wait()
    assert not (killed / "metrics.json").exists()

    subprocess.run(_train_command(clip_folder, killed, "resume=auto"), check=True, cwd=REPO, capture_output=True)
    assert losses(killed) == losses(whole)  # every step's loss, to the last bit
    assert [entry["step"] for entry in losses(killed)] == list(range(1, 7))


@pytest.mark.parametrize("launcher", ["basic", "submitit_local"])
def test_a_sweep_writes_one_summary_table(clip_folder, tmp_path, launcher):
    sweep = tmp_path / "sweep"
    overrides = tiny_overrides(clip_folder / "metadata.jsonl", tmp_path, "trainer.export.enabled=false")
    overrides = [item for item in overrides if not item.startswith(("run_dir=", "trainer.max_steps="))]
    command = [sys.executable, "-m", "animatex_pp.cli", "train", "-m", *overrides, "trainer.max_steps=1,2",
               f"hydra.sweep.dir={sweep}", f"hydra/launcher={launcher}"]  # fmt: skip
    subprocess.run(command, check=True, cwd=REPO, capture_output=True, timeout=900)
    summary = (sweep / "summary.md").read_text().splitlines()
    assert len(summary) == 4, summary  # header, rule, two runs
    assert "trainer.max_steps=1" in summary[2] and "trainer.max_steps=2" in summary[3]
    rows = (sweep / "summary.csv").read_text().splitlines()
    assert rows[0].startswith("job,overrides,final_loss") and len(rows) == 3


def test_the_ablation_recipe_sweeps_its_own_points(clip_folder, tmp_path):
    sweep = tmp_path / "sweep"
    tiny_ipi = ["model.transformer.ipi_num_frames=9", "model.transformer.ipi_num_latent_frames=3"]
    one_step = ["trainer.max_steps=1", "data.batch_size=1", "data.num_workers=0", "trainer.export.enabled=false"]
    overrides = tiny_overrides(clip_folder / "metadata.jsonl", tmp_path, *tiny_ipi, *one_step)
    overrides = [item for item in overrides if not item.startswith(("run_dir=", "trainer.max_steps=4"))]
    command = [sys.executable, "-m", "animatex_pp.cli", "train", "-m", "recipe=synthx_ablation", *overrides,
               f"hydra.sweep.dir={sweep}"]  # fmt: skip
    subprocess.run(command, check=True, cwd=REPO, capture_output=True, timeout=900)
    table = (sweep / "summary.md").read_text().splitlines()[2:]  # past the header and rule
    points = [re.search(r"ablation=(\w+)", row).group(1) for row in table]
    assert points == ["full", "no_ipi", "no_epi", "no_ti2v"]
