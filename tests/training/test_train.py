"""The trainer end to end on a tiny model: configs, a run, its outputs, refusals, non-finite losses."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from animatex_pp.cli import main
from animatex_pp.training import train
from animatex_pp.training.config import compose_config, config_dir, recipes_dir

GROUPS = ("model", "data", "task_mix", "adapter", "optim", "deepspeed", "trainer", "validation", "logger", "ablation")


def tiny_overrides(metadata: Path, run_dir: Path, *extra: str) -> list[str]:
    """The tiny model on the sample-video dataset (9-frame clips; the tiny IPI's window is 9 frames)."""
    return [f"data.metadata={metadata}", f"run_dir={run_dir}", "data.clips.num_frames=9",
            "data.clips.buckets=[[96,64],[64,96]]", "trainer.max_steps=4", "trainer.checkpoint_every=2",
            "logger=none", *extra]  # fmt: skip


@pytest.mark.parametrize("group", GROUPS)
def test_every_option_of_every_group_composes(group):
    options = sorted(path.stem for path in (config_dir() / group).glob("*.yaml"))
    assert options, group
    for option in options:
        cfg = compose_config([f"{group}={option}", "run_dir=/tmp/unused"])
        assert cfg.trainer.max_steps >= 1


def test_recipes_compose_with_their_header():
    recipes = sorted(recipes_dir().glob("*.yaml"))
    assert {path.stem for path in recipes} >= {"animatex_pp_wan14b_480p", "synthx_tiny", "synthx_ablation"}
    for path in recipes:
        lines = path.read_text().splitlines()
        assert lines[0] == "# @package _global_"
        assert any(line.startswith("# Launch:") for line in lines) and any(
            line.startswith("# Override:") for line in lines
        )
        compose_config([f"recipe={path.stem}", "run_dir=/tmp/unused"])
    paper = compose_config(["recipe=animatex_pp_wan14b_480p", "run_dir=/tmp/unused"])
    assert paper.deepspeed.stage == 3 and paper.trainer.num_processes == 8 and paper.data.clips.num_frames == 81
    assert paper.task_mix.weights.ti2v > 0 and paper.adapter.lora.rank == 128


def test_synthx_tiny_recipe_runs_a_step(clip_folder, tmp_path):
    tiny_ipi = ["model.transformer.ipi_num_frames=9", "model.transformer.ipi_num_latent_frames=3"]
    one_step = ["trainer.max_steps=1", "data.batch_size=1", "trainer.export.enabled=false"]
    overrides = tiny_overrides(
        clip_folder / "metadata.jsonl", tmp_path / "run", "recipe=synthx_tiny", *one_step, *tiny_ipi
    )
    metrics = train(compose_config(overrides))
    assert metrics["steps"] == 1 and np.isfinite(metrics["final_loss"])


def test_a_run_trains_checkpoints_and_exports_a_loadable_pipeline(clip_folder, tmp_path, capsys):
    run = tmp_path / "run"
    metrics = train(
        compose_config(tiny_overrides(clip_folder / "metadata.jsonl", run, "trainer.export.merge_lora=false"))
    )
    assert metrics["steps"] == 4 and metrics["steps_animation"] + metrics["steps_ti2v"] == 4
    assert json.loads((run / "metrics.json").read_text())["final_loss"] == metrics["final_loss"]
    losses = [json.loads(line) for line in (run / "losses.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in losses] == [0, 1, 2, 3]
    assert json.loads((run / "checkpoints" / "latest.json").read_text())["tag"] == "step-00000004"
    assert sorted(p.name for p in (run / "checkpoints").glob("step-*")) == ["step-00000002", "step-00000004"]
    table = capsys.readouterr().out
    assert "| lora |" in table and "| implicit_pose_indicator |" in table and "| frozen |" in table

    trainable = load_file(run / "export" / "trainable.safetensors")
    assert any("lora_" in name for name in trainable) and any(
        name.startswith("pose_video_encoder.") for name in trainable
    )
    assert not any(name.startswith("blocks.0.attn1.to_q.base_layer") for name in trainable)  # frozen base weights

    from animatex_pp.pipelines.pipeline_animatex import AnimateXPipeline

    pipe = AnimateXPipeline.from_pretrained(run / "export" / "pipeline")
    assert (run / "export" / "pipeline" / "pytorch_lora_weights.safetensors").is_file()
    pipe.load_lora_weights(run / "export" / "pipeline")
    trained = trainable["pose_video_encoder.layers.0.weight"]
    assert torch.equal(pipe.transformer.pose_video_encoder.layers[0].weight.detach(), trained)
    video = pipe(image=np.full((96, 64, 3), 128, np.uint8), mode="ti2v", prompt="still", height=96, width=64,
                 num_frames=9, num_inference_steps=1, output_type="np").frames  # fmt: skip
    assert video.shape == (1, 9, 96, 64, 3)
    image = tmp_path / "reference.png"
    from PIL import Image

    Image.fromarray(np.full((96, 64, 3), 200, np.uint8)).save(image)
    code = main(["generate", "--model", str(run / "export" / "pipeline"), "--image", str(image), "--mode", "ti2v",
                 "--prompt", "still", "--size", "96x64", "--frames", "9", "--steps", "1", "--dtype", "fp32",
                 "--output", str(tmp_path / "out.mp4")])  # fmt: skip
    assert code == 0 and (tmp_path / "out.mp4").is_file()


def test_a_run_folder_with_checkpoints_is_refused_without_resume_and_a_changed_config_on_resume(
    clip_folder,
    tmp_path,
):
    run = tmp_path / "run"
    overrides = tiny_overrides(
        clip_folder / "metadata.jsonl", run, "trainer.max_steps=2", "trainer.export.enabled=false"
    )
    train(compose_config(overrides))
    with pytest.raises(ValueError, match="already holds checkpoint step-00000002: resume it with resume=auto"):
        train(compose_config(overrides))
    with pytest.raises(ValueError, match=r"adapter\.lora\.rank: 64 in the checkpoint, 8 now"):
        train(compose_config([*overrides, "resume=auto", "adapter.lora.rank=8", "adapter.lora.alpha=8"]))


def test_bad_configs_are_refused_before_any_model_loads(clip_folder, tmp_path, capsys):
    metadata = clip_folder / "metadata.jsonl"
    with pytest.raises(ValueError, match="the model's IPI takes 9-frame windows"):
        train(compose_config(tiny_overrides(metadata, tmp_path / "a", "data.clips.num_frames=13")))
    with pytest.raises(ValueError, match="give data.metadata=PATH"):
        train(compose_config([f"run_dir={tmp_path / 'b'}"]))
    with pytest.raises(ValueError, match="trainer.max_steps must be a positive integer"):
        train(compose_config(tiny_overrides(metadata, tmp_path / "c", "trainer.max_steps=0")))
    code = main(["train", f"data.metadata={tmp_path / 'absent.jsonl'}", f"hydra.run.dir={tmp_path / 'd'}"])
    assert code == 2
    assert "metadata file not found" in capsys.readouterr().err


def test_a_non_finite_loss_is_skipped_and_counted_or_stops_the_run(clip_folder, tmp_path, monkeypatch):
    import animatex_pp.training.trainer as trainer_module

    real = trainer_module.training_loss

    def poisoned(engine, model, inputs, objective, dropout, seed, step, rank):
        loss = real(engine, model, inputs, objective, dropout, seed, step, rank)
        return loss * float("nan") if step in poisoned_steps else loss

    poisoned_steps = {1}

    monkeypatch.setattr(trainer_module, "training_loss", poisoned)
    overrides = tiny_overrides(clip_folder / "metadata.jsonl", tmp_path / "skip", "trainer.export.enabled=false")
    metrics = train(compose_config(overrides))
    assert metrics["skipped_nonfinite"] == 1 and np.isfinite(metrics["final_loss"])
    stop = tiny_overrides(clip_folder / "metadata.jsonl", tmp_path / "stop", "trainer.nonfinite=stop")
    with pytest.raises(FloatingPointError, match="1 non-finite losses in a row .last at step 1."):
        train(compose_config(stop))
    # more than max_nonfinite in a row end the run cleanly, the last good checkpoint kept
    poisoned_steps = {2, 3}
    run = tmp_path / "in_a_row"
    with pytest.raises(FloatingPointError, match="2 non-finite losses in a row .last at step 3."):
        train(compose_config(tiny_overrides(clip_folder / "metadata.jsonl", run, "trainer.max_nonfinite=1")))
    assert json.loads((run / "checkpoints" / "latest.json").read_text())["step"] == 2


def test_only_the_selected_parameters_train_each_group_at_its_rate(clip_folder, tmp_path):
    from animatex_pp.testing import tiny_components
    from animatex_pp.training.model import apply_adapters, param_groups
    from animatex_pp.training.trainer import _optimizer

    cfg = compose_config(tiny_overrides(clip_folder / "metadata.jsonl", tmp_path / "run", "trainer.max_steps=1",
                                        "trainer.export.merge_lora=false", "optim.lr=1e-3"))  # fmt: skip
    train(cfg)
    before = tiny_components(seed=0)["transformer"].state_dict()
    trained = load_file(tmp_path / "run" / "export" / "trainable.safetensors")
    exported = load_file(
        tmp_path / "run" / "export" / "pipeline" / "transformer" / "diffusion_pytorch_model.safetensors"
    )
    for name, tensor in before.items():
        if name.startswith(("pose_video_encoder.", "reference_pose_encoder.", "implicit_pose_indicator.")):
            continue
        assert torch.equal(exported[name], tensor), name  # frozen: the DiT's own weights did not move
    assert not torch.equal(trained["pose_video_encoder.layers.0.weight"], before["pose_video_encoder.layers.0.weight"])
    lora_b = [name for name in trained if "lora_B" in name]
    assert lora_b and all(trained[name].abs().sum() > 0 for name in lora_b)  # from zero initialisation

    transformer = tiny_components(seed=0)["transformer"]
    apply_adapters(transformer, cfg.adapter.lora, True, [])
    groups = param_groups(transformer, cfg.adapter.param_groups, default_lr=1e-3)
    rates = {group.name: group.lr for group in groups}
    assert rates == {"implicit_pose_indicator": 5e-7, "pose_streams": 1e-3, "lora": 1e-3}
    optimizer, _ = _optimizer(groups, dict(cfg.optim))
    assert {group["name"]: group["lr"] for group in optimizer.param_groups} == rates


def test_a_kill_during_a_checkpoint_write_leaves_the_previous_one_to_resume_from(clip_folder, tmp_path):
    metadata = clip_folder / "metadata.jsonl"
    whole = tmp_path / "whole"
    train(compose_config(tiny_overrides(metadata, whole, "trainer.export.enabled=false")))
    run = tmp_path / "run"
    train(compose_config(tiny_overrides(metadata, run, "trainer.max_steps=2", "trainer.export.enabled=false")))
    # what a kill in the middle of writing step 4 leaves: a hidden partial folder with a cut file, latest at step 2
    partial = run / "checkpoints" / ".step-00000004.partial"
    partial.mkdir()
    (partial / "mp_rank_00_model_states.pt").write_bytes(b"\x80\x02cut")
    assert json.loads((run / "checkpoints" / "latest.json").read_text())["step"] == 2
    train(compose_config(tiny_overrides(metadata, run, "resume=auto", "trainer.export.enabled=false")))

    def losses(folder):
        return [json.loads(line)["loss"] for line in (folder / "losses.jsonl").read_text().splitlines()]

    assert losses(run) == losses(whole)


def test_more_processes_than_the_machine_has_are_refused_before_any_model_loads(clip_folder, tmp_path, monkeypatch):
    import animatex_pp.training.trainer as trainer_module

    monkeypatch.setattr(trainer_module, "build_pipeline", lambda *_: pytest.fail("a model was loaded"))
    overrides = tiny_overrides(clip_folder / "metadata.jsonl", tmp_path / "run", "trainer.num_processes=512")
    with pytest.raises(ValueError, match="trainer.num_processes=512 but this machine can start"):
        train(compose_config(overrides))


def test_the_ema_is_exported_checkpointed_and_resumed(clip_folder, tmp_path):
    metadata = clip_folder / "metadata.jsonl"
    ema = ["trainer.ema.enabled=true", "trainer.ema.decay=0.5", "optim.lr=1e-2"]
    whole = tmp_path / "whole"
    train(compose_config(tiny_overrides(metadata, whole, *ema)))
    trained = load_file(whole / "checkpoints" / "step-00000004" / "ema.safetensors")
    exported = load_file(whole / "export" / "trainable.safetensors")
    # the export holds the average, not the last weights the optimizer left
    assert torch.equal(exported["pose_video_encoder.layers.0.weight"], trained["pose_video_encoder.layers.0.weight"])
    run = tmp_path / "run"
    train(compose_config(tiny_overrides(metadata, run, "trainer.max_steps=2", *ema)))
    train(compose_config(tiny_overrides(metadata, run, "resume=auto", *ema)))
    resumed = load_file(run / "export" / "trainable.safetensors")
    for name, tensor in exported.items():
        assert torch.equal(resumed[name], tensor), name
    with pytest.raises(ValueError, match="trainer.ema needs whole parameters"):
        train(compose_config(tiny_overrides(metadata, tmp_path / "z3", "deepspeed=zero3", *ema)))


def test_the_installed_package_finds_its_configs_outside_the_checkout(tmp_path):
    script = (
        "from animatex_pp.training.config import compose_config, recipes_dir; "
        "cfg = compose_config(['recipe=synthx_ablation', 'run_dir=x']); "
        "print(recipes_dir(), cfg.trainer.max_steps)"
    )
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    folder, steps = result.stdout.split()
    assert (Path(folder) / "synthx_tiny.yaml").is_file() and int(steps) > 0


def test_synthx_is_built_only_when_a_run_needs_its_metadata(tmp_path, monkeypatch):
    import importlib

    from animatex_pp.training.trainer import build_synthx_if_missing

    # the module, not the package's `build` function of the same name
    build_module = importlib.import_module("animatex_pp.synthx.build")

    built = []
    monkeypatch.setattr(build_module, "build", lambda folder, config: built.append((folder, config.train)))
    synthx = {"build_if_missing": True, "folder": str(tmp_path / "sx"), "size": 64, "frames": 17, "train": 3,
              "test": 1, "seed": 0}  # fmt: skip
    build_synthx_if_missing(
        {"metadata": str(tmp_path / "sx" / "train.jsonl"), "cache": str(tmp_path), "synthx": synthx}
    )
    assert built == []  # a precompute cache holds what training reads
    build_synthx_if_missing({"metadata": str(tmp_path / "sx" / "train.jsonl"), "cache": None, "synthx": synthx})
    assert built == [(tmp_path / "sx", 3)]
