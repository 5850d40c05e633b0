"""Two-process DeepSpeed runs (gloo), kill-and-resume, and sweeps (the ablation recipe's own among them): slow,
started as real processes."""

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from animatex_pp.pipelines.pipeline_animatex import AnimateXPipeline
from animatex_pp.testing import tiny_components, tiny_pipeline
from animatex_pp.training import train
from animatex_pp.training.config import compose_config
from animatex_pp.training.distributed import close_world, deepspeed_config, init_world, launch_local
from animatex_pp.training.model import build_pipeline
from animatex_pp.training.schema import DeepSpeedConfig
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


def _build_under_zero3(argument: tuple[dict, Path]) -> None:
    """One rank: the training pipeline built for ZeRO-3 (nothing else, no engine); each parameter's full and local
    size written per rank, and the weights gathered whole by rank 0."""
    import deepspeed

    model, out = argument
    world = init_world(timeout_minutes=10)
    try:
        settings = deepspeed_config(DeepSpeedConfig(stage=3), batch_size=1, device=world.device)
        transformer = build_pipeline(model, settings).transformer
        sizes = {name: [parameter.ds_numel, parameter.ds_tensor.numel()]
                 for name, parameter in transformer.named_parameters()}  # fmt: skip
        (out / f"sizes-{world.rank}.json").write_text(json.dumps(sizes))
        gathered = {}
        for name, parameter in transformer.named_parameters():
            with deepspeed.zero.GatheredParameters([parameter]):
                gathered[name] = parameter.detach().clone()
        if world.is_main:
            save_file(gathered, str(out / "gathered.safetensors"))
    finally:
        close_world(None)


@pytest.mark.parametrize("source", ["tiny", "pretrained"])
def test_zero3_builds_the_transformer_partitioned_before_the_engine(model_dir, tmp_path, source):
    model = {"source": source, "path": str(model_dir) if source == "pretrained" else None}
    launch_local(_build_under_zero3, (model, tmp_path), 2, str(tmp_path))
    expected = dict(tiny_pipeline(seed=0).transformer.named_parameters())  # what model_dir holds, and the tiny init
    for rank in (0, 1):
        sizes = json.loads((tmp_path / f"sizes-{rank}.json").read_text())
        assert sorted(sizes) == sorted(expected)
        for name, (numel, local) in sizes.items():
            assert numel == expected[name].numel(), name
            assert local == math.ceil(numel / 2), name  # each rank holds its half (padded) and no more
    gathered = load_file(tmp_path / "gathered.safetensors")
    for name, parameter in expected.items():
        assert gathered[name].dtype == parameter.dtype and gathered[name].equal(parameter.detach()), name


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
    sweep, base = tmp_path / "sweep", tmp_path / "base"
    # the recipe trains adapters on a pretrained base: a tiny pipeline folder, its IPI window the clips' 9 frames
    AnimateXPipeline(**tiny_components(ipi_num_frames=9, ipi_num_latent_frames=3)).save_pretrained(base)
    one_step = ["trainer.max_steps=1", "data.batch_size=1", "data.num_workers=0", "trainer.export.enabled=false"]
    overrides = tiny_overrides(clip_folder / "metadata.jsonl", tmp_path, f"model.path={base}", *one_step)
    overrides = [item for item in overrides if not item.startswith(("run_dir=", "trainer.max_steps=4"))]
    command = [sys.executable, "-m", "animatex_pp.cli", "train", "-m", "recipe=synthx_ablation", *overrides,
               f"hydra.sweep.dir={sweep}"]  # fmt: skip
    subprocess.run(command, check=True, cwd=REPO, capture_output=True, timeout=900)
    table = (sweep / "summary.md").read_text().splitlines()[2:]  # past the header and rule
    points = [re.search(r"ablation=(\w+)", row).group(1) for row in table]
    assert points == ["full", "no_ipi", "no_epi", "no_ti2v"]
