"""Clip datasets: shapes and ranges, windows, references, EPI, buckets, decode failures, fresh-process determinism."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from animatex_pp.data.clips import ClipConfig, ClipDataset, SampleKey, collate
from animatex_pp.data.metadata import read_metadata
from animatex_pp.pipelines.conditioning import prepare_pose

CONFIG = ClipConfig(num_frames=9, max_stride=2, buckets=((96, 64), (64, 96)), epi_probability=1.0, seed=3)


@pytest.fixture(scope="module")
def dataset(clip_folder):
    return ClipDataset(read_metadata(clip_folder / "metadata.jsonl").clips, CONFIG)


def test_animation_sample_holds_every_model_input_its_images_uint8(dataset):
    sample = dataset[SampleKey(step=4, rank=1, index=0)]
    assert sample["task"] == "animation" and sample["caption"] == "a girl dances"
    # a quarter of float32's bytes through a loader worker's shared memory; floats are made on the device
    for name in ("frames", "reference", "pose_video", "reference_pose"):
        assert sample[name].dtype == torch.uint8, name
    assert sample["frames"].shape == (3, 9, 96, 64) and sample["reference"].shape == (3, 96, 64)
    assert sample["frames"].min() < 64 and sample["frames"].max() > 192  # the video's own range, not [0, 1]
    assert sample["pose_video"].shape == (3, 9, 96, 64) and sample["pose_video"].max() > 1
    assert sample["pose_video"].amax(dim=(0, 2, 3)).min() > 0  # a skeleton drawn in every frame
    assert sample["reference_pose"].shape == (3, 96, 64)
    assert sample["pose_keypoints"].shape == (9, 18, 2)
    assert sample["driving_frames"].dtype == torch.uint8 and sample["driving_frames"].shape == (9, 96, 64, 3)
    assert sample["replaced"] == 0 and sample["key"].tolist() == [4, 1, 0]


def test_ti2v_sample_has_no_pose_and_its_reference_is_the_first_frame(dataset):
    index = dataset.tasks.index("ti2v")
    sample = dataset[SampleKey(0, 0, index)]
    assert "pose_video" not in sample and "driving_frames" not in sample
    assert sample["frames"].shape == (3, 9, 64, 96)  # the landscape bucket
    assert torch.equal(sample["reference"], sample["frames"][:, 0])


def test_windows_use_random_strides_and_starts_within_the_video(dataset):
    windows = [dataset.window(SampleKey(step, 0, 0)) for step in range(200)]
    assert {window.stride for window in windows} == {1, 2}
    assert len({window.start for window in windows}) > 5
    assert all(window.frames[-1] < 32 and 0 <= window.reference < 32 for window in windows)
    # the reference frame is drawn from the whole video: sometimes outside the window (UniAnimate-DiT)
    outside = [w.reference < w.start or w.reference > w.frames[-1] for w in windows]
    assert 0 < sum(outside) < len(windows)


def test_pose_inputs_come_from_the_augmented_pose_through_the_pipelines_preparation(dataset):
    key = SampleKey(2, 0, 1)
    sample = dataset[key]
    raw = dataset.read(1, dataset.window(key))
    from animatex_pp.data.randomness import numpy_generator

    plan = dataset.epi.sample(numpy_generator(CONFIG.seed, "epi", *key))
    augmented = dataset.epi.apply(raw.pose, plan)
    expected = prepare_pose(augmented, raw.reference_pose, 9, 96, 64, use_ipi=True)
    assert np.array_equal(sample["pose_keypoints"].numpy(), expected.keypoints)
    # (3, F, H, W) -> (F, H, W, 3)
    assert np.array_equal(sample["pose_video"].permute(1, 2, 3, 0).numpy(), expected.pose_frames)
    # and the augmentation really changed the pose (EPI at λ = 1)
    unaugmented = prepare_pose(raw.pose, raw.reference_pose, 9, 96, 64, use_ipi=True)
    assert not np.array_equal(unaugmented.keypoints, expected.keypoints)


def test_epi_probability_zero_leaves_the_pose_as_extracted(clip_folder):
    plain = ClipDataset(read_metadata(clip_folder / "metadata.jsonl").clips, ClipConfig(
        num_frames=9, buckets=((96, 64), (64, 96)), epi_probability=0.0))  # fmt: skip
    key = SampleKey(0, 0, 0)
    raw = plain.read(0, plain.window(key))
    assert np.array_equal(plain[key]["pose_keypoints"].numpy(), raw.pose.ipi_keypoints())


def test_a_clip_that_fails_to_decode_is_replaced_by_another_of_its_task_and_counted(clip_folder, tmp_path, caplog):
    import shutil

    folder = tmp_path / "copy"
    shutil.copytree(clip_folder, folder)
    data = ClipDataset(read_metadata(folder / "metadata.jsonl").clips, CONFIG)
    broken = data.records[1].video
    broken.write_bytes(broken.read_bytes()[:2000])  # damaged after the metadata was checked
    sample = data[SampleKey(0, 0, 1)]
    assert sample["replaced"] == 1 and sample["task"] == "animation"
    assert sample["key"].tolist()[2] != 1
    assert "skipped" in caplog.text and str(broken) in caplog.text
    batch = collate([sample, data[SampleKey(0, 0, 0)]])
    assert batch["replaced"].tolist() == [1, 0] and batch["frames"].shape == (2, 3, 9, 96, 64)


def test_a_batch_never_mixes_tasks(dataset):
    with pytest.raises(ValueError, match="mixes tasks"):
        collate([dataset[SampleKey(0, 0, 0)], dataset[SampleKey(0, 0, dataset.tasks.index("ti2v"))]])


def test_clips_shorter_than_a_sample_and_animation_without_pose_are_skipped(clip_folder):
    records = read_metadata(clip_folder / "metadata.jsonl").clips
    long = ClipDataset(records, ClipConfig(num_frames=33, buckets=((96, 64),)))
    assert len(long) == 3  # only the walks (34 to 40 frames)
    assert "fewer than the 33" in long.skipped[0][1]
    import dataclasses

    posed = [dataclasses.replace(records[0], pose=None)]
    with pytest.raises(ValueError, match="no pose: extract it"):
        ClipDataset(posed, CONFIG)


DRAW = """
import json, sys
from animatex_pp.data.clips import ClipConfig, ClipDataset, SampleKey
from animatex_pp.data.metadata import read_metadata
from safetensors.torch import save_file
config = ClipConfig(num_frames=9, max_stride=2, buckets=((96, 64), (64, 96)), epi_probability=1.0, seed=3)
data = ClipDataset(read_metadata(sys.argv[1]).clips, config)
sample = data[SampleKey(7, 1, 2)]
save_file({k: v.contiguous() for k, v in sample.items() if hasattr(v, "shape") and v.ndim}, sys.argv[2])
"""


def test_the_same_step_drawn_in_fresh_processes_gives_identical_tensors(clip_folder, tmp_path):
    from safetensors.torch import load_file

    outputs = []
    for run in range(2):
        out = tmp_path / f"draw{run}.safetensors"
        subprocess.run([sys.executable, "-c", DRAW, str(clip_folder / "metadata.jsonl"), str(out)], check=True,
                       cwd=Path(__file__).parents[2])  # fmt: skip
        outputs.append(load_file(out))
    assert outputs[0].keys() == outputs[1].keys() and "pose_video" in outputs[0]
    for name in outputs[0]:
        assert torch.equal(outputs[0][name], outputs[1][name]), name
    # another step of the same sample draws differently
    other = ClipDataset(read_metadata(clip_folder / "metadata.jsonl").clips, CONFIG)[SampleKey(8, 1, 2)]
    assert not torch.equal(other["pose_keypoints"], outputs[0]["pose_keypoints"])
