"""What must hold after training however short: the loss falls and the trained model beats the untrained
one on its training clips."""

import json

import numpy as np
import pytest
import torch

from animatex_pp.data.clips import ClipDataset, SampleKey, collate
from animatex_pp.data.encode import ConditionEncoder
from animatex_pp.data.metadata import load_metadata
from animatex_pp.pipelines.pipeline_animatex import AnimateXPipeline
from animatex_pp.training import train
from animatex_pp.training.config import compose_config
from animatex_pp.training.model import build_pipeline
from animatex_pp.training.schema import load_train_config
from animatex_pp.training.step import ConditionDropout, TrainingLoss
from tests.helpers.training import tiny_overrides

pytestmark = pytest.mark.slow  # 60 steps of the demo model: minutes on a shared CPU
STEPS = 60
SCORED_SAMPLES = 8  # training samples scored for both models, at the same noise levels and noise


def _flow_losses(transformer, samples, objective) -> list[float]:
    """The flow loss of each sample with no condition dropout, its σ and noise drawn from a fixed key."""
    loss = TrainingLoss(objective, ConditionDropout(pose=0.0, image=0.0, text=0.0), seed=1234)
    with torch.no_grad():
        return [loss(transformer, transformer, inputs, number, 0).item() for number, inputs in enumerate(samples)]


def test_the_loss_falls_and_the_trained_model_beats_the_untrained_one_on_its_training_clips(clip_folder, tmp_path):
    run = tmp_path / "run"
    tiny_ipi = ["model.transformer.ipi_num_frames=9", "model.transformer.ipi_num_latent_frames=3"]
    overrides = tiny_overrides(clip_folder / "metadata.jsonl", run, "recipe=synthx_tiny", *tiny_ipi,
                               f"trainer.max_steps={STEPS}", f"trainer.checkpoint_every={STEPS}",
                               "data.batch_size=2", "optim.warmup_steps=5")  # fmt: skip
    cfg = compose_config(overrides)
    train(cfg)
    config = load_train_config(cfg)

    losses = [json.loads(line)["loss"] for line in (run / "losses.jsonl").read_text().splitlines()]
    assert len(losses) == STEPS
    tenth = STEPS // 10
    assert np.mean(losses[-tenth:]) < 0.8 * np.mean(losses[:tenth]), losses

    untrained = build_pipeline(config.model)  # the trainer's starting point: same config, same init seed
    trained = AnimateXPipeline.from_pretrained(run / "export" / "pipeline")
    dataset = ClipDataset(load_metadata(config.data.metadata), config.data.clips.clip_config(config.seed))
    encoder = ConditionEncoder(untrained)  # the frozen encoders, shared by both pipelines
    samples = [encoder.encode(collate([dataset[SampleKey(number, 0, number % len(dataset))]]))
               for number in range(SCORED_SAMPLES)]  # fmt: skip
    objective = config.trainer.objective
    before = _flow_losses(untrained.transformer, samples, objective)
    after = _flow_losses(trained.transformer, samples, objective)
    assert np.mean(after) < 0.8 * np.mean(before), (before, after)
    assert sum(a < b for a, b in zip(after, before, strict=True)) >= SCORED_SAMPLES - 1, (before, after)
