"""The trainer end to end on a tiny model: a run and its outputs in optimizer steps, gradient accumulation, resume,
refusals, non-finite losses, the learning-rate schedule, the EMA."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers.optimization import get_scheduler
from safetensors.torch import load_file

from animatex_pp.cli import main
from animatex_pp.training import train
from animatex_pp.training.config import compose_config
from animatex_pp.training.schema import load_train_config
from animatex_pp.training.step import TrainingLoss
from tests.helpers.training import tiny_overrides


def rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "losses.jsonl").read_text().splitlines()]


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
    assert metrics["steps"] == metrics["micro_steps"] == 4
    assert metrics["micro_steps_animation"] + metrics["micro_steps_ti2v"] == 4
    assert json.loads((run / "metrics.json").read_text())["final_loss"] == metrics["final_loss"]
    assert [row["step"] for row in rows(run)] == [1, 2, 3, 4]
    assert all(len(row["tasks"]) == 1 and row["micro_losses"] == [row["loss"]] for row in rows(run))
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


def test_gradient_accumulation_counts_optimizer_steps_everywhere_and_resumes_bit_identically(clip_folder, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    metadata = clip_folder / "metadata.jsonl"
    accumulate = ["deepspeed.gradient_accumulation_steps=2", "trainer.export.enabled=false", "logger=tensorboard",
                  "trainer.log_every=1", "optim.warmup_steps=2"]  # fmt: skip
    whole = tmp_path / "whole"
    metrics = train(compose_config(tiny_overrides(metadata, whole, *accumulate)))
    assert (metrics["steps"], metrics["micro_steps"]) == (4, 8)
    assert [row["step"] for row in rows(whole)] == [1, 2, 3, 4]
    for row in rows(whole):
        # one task per micro-step, each drawn by the sampler; the step's loss is their mean
        assert len(row["tasks"]) == len(row["micro_losses"]) == 2
        assert row["loss"] == pytest.approx(sum(row["micro_losses"]) / 2)
    assert sorted(p.name for p in (whole / "checkpoints").glob("step-*")) == ["step-00000002", "step-00000004"]
    state = json.loads((whole / "checkpoints" / "step-00000002" / "state.json").read_text())
    assert state["step"] == 2 and state["sampler"]["step"] == 4  # optimizer steps, and the next micro-step
    events = EventAccumulator(str(whole / "tensorboard"))
    events.Reload()
    rates = [(event.step, event.value) for event in events.Scalars("lr/lora")]
    # diffusers' constant_with_warmup over optimizer steps: 0, 1/2, then the rate, logged after each update
    assert rates == [(1, pytest.approx(5e-5 / 2)), (2, pytest.approx(5e-5)), (3, pytest.approx(5e-5)),
                     (4, pytest.approx(5e-5))]  # fmt: skip

    resumed = tmp_path / "resumed"
    train(compose_config(tiny_overrides(metadata, resumed, *accumulate, "trainer.max_steps=2")))
    train(compose_config(tiny_overrides(metadata, resumed, *accumulate, "resume=auto")))
    assert rows(resumed) == rows(whole)


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
    with pytest.raises(ValueError, match=r"optim\.scheduler: 'constant_with_warmup' in the checkpoint, 'cosine' now"):
        train(compose_config([*overrides, "resume=auto", "optim.scheduler=cosine"]))


def test_bad_configs_are_refused_before_any_model_loads(clip_folder, tmp_path, capsys, monkeypatch):
    import animatex_pp.training.trainer as trainer_module

    metadata = clip_folder / "metadata.jsonl"
    with pytest.raises(ValueError, match="the model's IPI takes 9-frame windows"):
        train(compose_config(tiny_overrides(metadata, tmp_path / "a", "data.clips.num_frames=13")))
    monkeypatch.setattr(trainer_module, "build_pipeline", lambda *_: pytest.fail("a model was loaded"))
    with pytest.raises(ValueError, match="give data.metadata=PATH"):
        train(compose_config([f"run_dir={tmp_path / 'b'}"]))
    with pytest.raises(ValueError, match="trainer.max_steps must be a positive integer"):
        train(compose_config(tiny_overrides(metadata, tmp_path / "c", "trainer.max_steps=0")))
    with pytest.raises(ValueError, match="trainer.num_processes=512 but this machine can start"):
        train(compose_config(tiny_overrides(metadata, tmp_path / "e", "trainer.num_processes=512")))
    code = main(["train", f"data.metadata={tmp_path / 'absent.jsonl'}", f"hydra.run.dir={tmp_path / 'd'}"])
    assert code == 2
    assert "metadata file not found" in capsys.readouterr().err
    assert main(["train", "trainer.max_steps=-1", "data.metadata=x", f"hydra.run.dir={tmp_path / 'f'}"]) == 2


def test_a_non_finite_loss_drops_its_micro_step_or_stops_the_run(clip_folder, tmp_path, monkeypatch):
    real = TrainingLoss.__call__

    def poisoned(self, engine, model, inputs, micro_step, rank):
        loss = real(self, engine, model, inputs, micro_step, rank)
        return loss * float("nan") if micro_step in poisoned_steps else loss

    poisoned_steps = {1}
    monkeypatch.setattr(TrainingLoss, "__call__", poisoned)
    overrides = tiny_overrides(clip_folder / "metadata.jsonl", tmp_path / "skip", "trainer.export.enabled=false")
    metrics = train(compose_config(overrides))
    # the next micro-batch takes the dropped one's place: four updates all the same
    assert metrics["skipped_nonfinite"] == 1 and (metrics["steps"], metrics["micro_steps"]) == (4, 5)
    assert np.isfinite(metrics["final_loss"]) and len(rows(tmp_path / "skip")) == 4
    stop = tiny_overrides(clip_folder / "metadata.jsonl", tmp_path / "stop", "trainer.nonfinite=stop")
    with pytest.raises(FloatingPointError, match=r"1 non-finite losses in a row \(last at step 2, micro-step 1\)"):
        train(compose_config(stop))
    # more than max_nonfinite in a row end the run cleanly, the last good checkpoint kept
    poisoned_steps = {2, 3}
    run = tmp_path / "in_a_row"
    with pytest.raises(FloatingPointError, match=r"2 non-finite losses in a row \(last at step 3, micro-step 3\)"):
        train(compose_config(tiny_overrides(clip_folder / "metadata.jsonl", run, "trainer.max_nonfinite=1")))
    assert json.loads((run / "checkpoints" / "latest.json").read_text())["step"] == 2


def test_only_the_selected_parameters_train_each_group_at_its_rate(clip_folder, tmp_path):
    from animatex_pp.testing import tiny_components
    from animatex_pp.training.model import apply_adapters, build_optimizer, param_groups

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

    config = load_train_config(cfg)
    transformer = tiny_components(seed=0)["transformer"]
    apply_adapters(transformer, config.adapter)
    groups = param_groups(transformer, config.adapter.param_groups, default_lr=1e-3)
    rates = {group.name: group.lr for group in groups}
    assert rates == {"implicit_pose_indicator": 5e-7, "pose_streams": 1e-3, "lora": 1e-3}
    optimizer, _ = build_optimizer(groups, config.optim, max_steps=10)
    assert {group["name"]: group["lr"] for group in optimizer.param_groups} == rates


@pytest.mark.parametrize("name", ["constant_with_warmup", "linear", "cosine"])
def test_the_learning_rate_follows_diffusers_schedule_in_optimizer_steps(name):
    from animatex_pp.training.model import ParamGroup, build_optimizer
    from animatex_pp.training.schema import OptimConfig

    def rates(optimizer, scheduler):
        seen = []
        for _ in range(10):
            seen.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
        return seen

    weight = torch.nn.Parameter(torch.zeros(2))
    group = ParamGroup("other", 1e-3, ("weight",), (weight,))
    ours = build_optimizer([group], OptimConfig(lr=1e-3, scheduler=name, warmup_steps=3), max_steps=10)
    reference = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))], lr=1e-3)
    expected = rates(reference, get_scheduler(name, reference, num_warmup_steps=3, num_training_steps=10))
    assert rates(*ours) == expected and expected[0] == 0.0


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
    assert rows(run) == rows(whole)


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


def test_a_pretrained_model_builds_with_its_stream_switches_and_needs_a_path(tmp_path):
    from animatex_pp.testing import tiny_pipeline
    from animatex_pp.training.model import build_pipeline
    from animatex_pp.training.schema import ModelConfig

    tiny_pipeline().save_pretrained(tmp_path / "base")
    whole = build_pipeline(ModelConfig(source="pretrained", path=str(tmp_path / "base")))
    without_ipi = build_pipeline(ModelConfig(source="pretrained", path=str(tmp_path / "base"),
                                             transformer={"use_ipi": False}))  # fmt: skip
    assert whole.transformer.implicit_pose_indicator is not None
    assert without_ipi.transformer.implicit_pose_indicator is None
    assert without_ipi.transformer.pose_video_encoder is not None
    with pytest.raises(ValueError, match="needs model.path=FOLDER"):
        build_pipeline(ModelConfig(source="pretrained"))
