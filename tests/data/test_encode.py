"""A batch's images travel uint8 (a quarter of float32's bytes through a loader worker's shared memory and the copy
to the device) and become floats on the device: the floats the VAE, the I2V condition, CLIP and the pose streams
see are exactly those the host's conversion of the same images gave."""

import numpy as np
import pytest
import torch

from animatex_pp.data.clips import ClipConfig, ClipDataset, SampleKey, collate
from animatex_pp.data.encode import ConditionEncoder
from animatex_pp.data.metadata import read_metadata
from animatex_pp.data.randomness import numpy_generator
from animatex_pp.pipelines.conditioning import prepare_pose
from animatex_pp.testing import tiny_pipeline
from animatex_pp.training.objective import FlowObjective
from animatex_pp.training.step import ConditionDropout, TrainingLoss

CONFIG = ClipConfig(num_frames=9, buckets=((96, 64),), epi_probability=1.0, seed=3)
KEY = SampleKey(2, 0, 1)


def host_float(images: np.ndarray) -> torch.Tensor:
    """uint8 channels-last images as float32 in [0, 1], channels first, converted on the host."""
    # (..., H, W, 3) -> (3, ..., H, W)
    return torch.from_numpy(images).movedim(-1, 0).to(torch.float32) / 255.0


@pytest.fixture(scope="module")
def animation(clip_folder):
    """A collated animation batch, its decoded clip and its pose as the pipeline prepares it after the key's EPI."""
    dataset = ClipDataset(read_metadata(clip_folder / "metadata.jsonl").clips_of("animation"), CONFIG)
    raw = dataset.read(KEY.index, dataset.window(KEY))
    augmented = dataset.epi.apply(raw.pose, dataset.epi.sample(numpy_generator(CONFIG.seed, "epi", *KEY)))
    prepared = prepare_pose(augmented, raw.reference_pose, 9, 96, 64, use_ipi=True)
    return collate([dataset[KEY]]), raw, prepared


def test_a_collated_batch_carries_its_images_as_uint8(animation):
    batch, _, _ = animation
    for name in ("frames", "reference", "pose_video", "reference_pose", "driving_frames"):
        assert batch[name].dtype == torch.uint8, name
    assert batch["pose_keypoints"].dtype == torch.float32


def test_the_encoders_see_the_floats_of_the_host_conversion(animation, monkeypatch):
    batch, raw, _ = animation
    pipe = tiny_pipeline(seed=0)
    seen = {}
    encode, prepare_condition, encode_image = pipe.vae.encode, pipe.prepare_condition, pipe.encode_image

    def spy(name, function):
        def recording(value, *args, **kwargs):
            seen.setdefault(name, value)  # the first call: the I2V condition encodes its own video after it
            return function(value, *args, **kwargs)

        return recording

    monkeypatch.setattr(pipe.vae, "encode", spy("vae", encode))
    monkeypatch.setattr(pipe, "prepare_condition", spy("condition", prepare_condition))
    monkeypatch.setattr(pipe, "encode_image", spy("clip", encode_image))
    inputs = ConditionEncoder(pipe).encode(batch)
    assert torch.equal(seen["vae"], (host_float(raw.frames) * 2.0 - 1.0)[None])
    assert torch.equal(seen["condition"], (host_float(raw.reference) * 2.0 - 1.0)[None])
    assert np.array_equal(np.asarray(seen["clip"][0]), raw.reference)
    # the pose images pass through as they came, to become floats in the step
    assert inputs["pose_video"].dtype == inputs["reference_pose"].dtype == torch.uint8


def test_the_pose_streams_see_the_floats_of_the_host_conversion(animation, monkeypatch):
    batch, _, prepared = animation
    pipe = tiny_pipeline(seed=0)
    inputs = ConditionEncoder(pipe).encode(batch)
    seen = {}
    encode_pose_conditions = pipe.transformer.encode_pose_conditions

    def recording(**kwargs):
        seen.update(kwargs)
        return encode_pose_conditions(**kwargs)

    monkeypatch.setattr(pipe.transformer, "encode_pose_conditions", recording)
    no_dropout = ConditionDropout(pose=0.0, image=0.0, text=0.0)
    loss = TrainingLoss(FlowObjective(), no_dropout, seed=0)
    loss(pipe.transformer, pipe.transformer, inputs, micro_step=0, rank=0)
    assert torch.equal(seen["pose_video"], host_float(prepared.pose_frames)[None])
    assert torch.equal(seen["reference_pose"], host_float(prepared.reference_pose)[None])

    floats = {**inputs, "pose_video": inputs["pose_video"].float() / 255.0}
    with pytest.raises(ValueError, match=r"inputs\['pose_video'\] is torch.float32: .* uint8"):
        loss(pipe.transformer, pipe.transformer, floats, micro_step=0, rank=0)
