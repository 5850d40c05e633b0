"""One source of conditioning: a training step feeds the transformer what AnimateXPipeline feeds it at the same noise
level, for the same clip, reference, poses and prompt.

The pose streams get random weights first: at their zero initialisation every stream's output is zero whatever its
input, and a comparison of zeros would pass for any pose path.
"""

import pytest
import torch
from diffusers.pipelines.wan.pipeline_wan_i2v import retrieve_latents

from animatex_pp.data.clips import ClipConfig, ClipDataset, SampleKey, collate
from animatex_pp.data.encode import ConditionEncoder
from animatex_pp.data.metadata import read_metadata
from animatex_pp.io.frames import to_signed
from animatex_pp.testing import tiny_pipeline
from animatex_pp.training.objective import FlowObjective
from animatex_pp.training.step import ConditionDropout, TrainingLoss
from tests.helpers.streams import randomize_streams

STEPS = 4
# The step of the pipeline's schedule whose noise level the training step is given: neither pure noise (step 0) nor
# the clean end, so the noisy latent mixes the clip and the noise.
COMPARED_STEP = 2
POSE_FIELDS = ("pose_tokens", "reference_condition", "pose_embedding")


@pytest.fixture(scope="module")
def sample(clip_folder):
    """A pipeline with speaking pose streams, one animation clip as the dataset gives it, and its model inputs."""
    config = ClipConfig(num_frames=9, buckets=((96, 64),), epi_probability=0.0)
    dataset = ClipDataset(read_metadata(clip_folder / "metadata.jsonl").clips_of("animation"), config)
    key = SampleKey(3, 0, 1)
    pipe = tiny_pipeline(seed=0)
    pipe.set_progress_bar_config(disable=True)
    randomize_streams(pipe, seed=1)
    batch = collate([dataset[key]])
    raw = dataset.read(key.index, dataset.window(key))
    return pipe, batch, raw, dataset.records[key.index].caption, ConditionEncoder(pipe).encode(batch)


def training_call(pipe, inputs, sigma: torch.Tensor, monkeypatch) -> tuple[dict, dict]:
    """The transformer's keyword arguments in one training step at noise level `sigma`, and what the step noised."""
    noised = {}
    noisy = FlowObjective.noisy

    def record_noisy(objective, latents, noise, sigmas):
        noised.update(latents=latents, noise=noise, sigmas=sigmas)
        return noisy(objective, latents, noise, sigmas)

    monkeypatch.setattr(
        FlowObjective, "sample_sigmas", lambda objective, batch_size, generator: sigma.repeat(batch_size)
    )
    monkeypatch.setattr(FlowObjective, "noisy", record_noisy)
    seen = {}

    def engine(**kwargs):
        seen.update(kwargs)
        return pipe.transformer(**kwargs)

    no_dropout = ConditionDropout(pose=0.0, image=0.0, text=0.0)
    TrainingLoss(FlowObjective(), no_dropout, seed=0)(engine, pipe.transformer, inputs, micro_step=0, rank=0)
    return seen, noised


def test_a_training_step_feeds_the_transformer_what_the_pipeline_feeds_it(sample, monkeypatch):
    pipe, _, raw, caption, inputs = sample
    pipe.scheduler.set_timesteps(STEPS)
    sigma = pipe.scheduler.sigmas[COMPARED_STEP]
    trained, noised = training_call(pipe, inputs, sigma, monkeypatch)
    assert torch.equal(noised["latents"], inputs["latents"])  # the clip's latents are what gets noised

    # The pipeline, its latents set before the compared step to the clip noised with the training step's noise at
    # that step's level, as diffusers' flow scheduler noises a sample (`scale_noise`, what img2img pipelines use).
    def renoise(pipeline, step, t, tensors):
        if step != COMPARED_STEP - 1:
            return tensors
        upcoming = pipeline.scheduler.timesteps[COMPARED_STEP : COMPARED_STEP + 1]
        return {"latents": pipeline.scheduler.scale_noise(inputs["latents"], upcoming, noised["noise"])}

    calls = []
    handle = pipe.transformer.register_forward_pre_hook(lambda module, args, kwargs: calls.append(kwargs),
                                                        with_kwargs=True)  # fmt: skip
    try:
        pipe(image=raw.reference, pose=raw.pose, reference_pose=raw.reference_pose, driving_video=raw.frames,
             prompt=caption, height=96, width=64, num_frames=9, num_inference_steps=STEPS, guidance_scale=1.0,
             latents=noised["noise"], callback_on_step_end=renoise, output_type="latent")  # fmt: skip
    finally:
        handle.remove()
    inference = calls[COMPARED_STEP]

    # The timestep of that noise level, and the noisy latent: the same formula on both sides.
    torch.testing.assert_close(trained["timestep"], inference["timestep"], rtol=0, atol=1e-4)
    assert 0.1 < float(sigma) < 0.9
    # (B, 16 noisy + 20 condition, F, h, w)
    torch.testing.assert_close(trained["hidden_states"][:, :16], inference["hidden_states"][:, :16])
    assert torch.equal(trained["hidden_states"][:, 16:], inference["hidden_states"][:, 16:])
    assert torch.equal(trained["encoder_hidden_states"], inference["encoder_hidden_states"])
    assert torch.equal(trained["encoder_hidden_states_image"], inference["encoder_hidden_states_image"])
    for name in POSE_FIELDS:
        expected = getattr(inference["pose_conditions"], name)
        assert expected.abs().max() > 1e-3, f"{name} is silent: the comparison would hold for any pose"
        torch.testing.assert_close(getattr(trained["pose_conditions"], name), expected, rtol=1e-5, atol=1e-5)


def test_the_training_latents_are_in_the_space_the_pipeline_decodes(sample):
    """The clip's latents a step learns to reach, decoded as the pipeline decodes its output, are the VAE's own
    reconstruction of the clip: the training normalisation is the inverse of the pipeline's."""
    pipe, batch, _, _, inputs = sample
    with torch.no_grad():
        raw_latents = retrieve_latents(pipe.vae.encode(to_signed(batch["frames"])), sample_mode="argmax")
        reconstruction = pipe.vae.decode(raw_latents, return_dict=False)[0]
        decoded = pipe.decode_latents(inputs["latents"])
    assert not torch.allclose(inputs["latents"], raw_latents, atol=1e-3)  # normalised: not the raw latents
    torch.testing.assert_close(decoded, reconstruction, rtol=1e-4, atol=1e-4)
