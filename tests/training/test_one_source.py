"""One source of conditioning: a training sample's model inputs are what AnimateXPipeline feeds the transformer."""

import numpy as np
import torch

from animatex_pp.data.clips import ClipConfig, ClipDataset, SampleKey, collate
from animatex_pp.data.encode import ConditionEncoder
from animatex_pp.data.metadata import read_metadata
from animatex_pp.testing import tiny_pipeline
from animatex_pp.training.step import pose_conditions


def test_training_inputs_equal_the_pipelines_for_the_same_reference_pose_and_prompt(clip_folder):
    config = ClipConfig(num_frames=9, buckets=((96, 64),), epi_probability=0.0)
    dataset = ClipDataset(read_metadata(clip_folder / "metadata.jsonl").clips_of("animation"), config)
    key = SampleKey(3, 0, 1)
    raw = dataset.read(key.index, dataset.window(key))
    pipe = tiny_pipeline(seed=0)
    inputs = ConditionEncoder(pipe).encode(collate([dataset[key]]))
    transformer = pipe.transformer
    trained = pose_conditions(transformer, inputs, keep=torch.ones(1))

    seen = {}

    def capture(module, args, kwargs):
        seen.setdefault("kwargs", kwargs)

    handle = transformer.register_forward_pre_hook(capture, with_kwargs=True)
    pipe(image=raw.reference, pose=raw.pose, reference_pose=raw.reference_pose, driving_video=raw.frames,
         prompt=dataset.records[key.index].caption, height=96, width=64, num_frames=9, num_inference_steps=1,
         guidance_scale=1.0, output_type="latent")  # fmt: skip
    handle.remove()
    kwargs = seen["kwargs"]
    assert torch.equal(kwargs["encoder_hidden_states"], inputs["prompt_embeds"])
    assert torch.equal(kwargs["encoder_hidden_states_image"], inputs["image_embeds"])
    # (B, 16 noise + 20 condition, F, h, w): the condition channels are the training sample's
    assert torch.equal(kwargs["hidden_states"][:, 16:], inputs["condition"])
    inference = kwargs["pose_conditions"]
    for name in ("pose_tokens", "reference_condition", "pose_embedding"):
        assert torch.allclose(getattr(inference, name), getattr(trained, name), atol=1e-6), name
    assert np.isfinite(inputs["latents"].numpy()).all()
