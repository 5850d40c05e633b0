"""Validation media: held-out clips through the pipeline with the weights being trained, as MP4s and a sheet, every
`validation.every` optimizer steps."""

import json

import numpy as np
import PIL.Image
import pytest

from animatex_pp.io.preview import LABEL_HEIGHT, ROW_LABEL_WIDTH
from animatex_pp.io.video import read_video
from animatex_pp.testing import tiny_components, tiny_pipeline
from animatex_pp.training import train
from animatex_pp.training.config import compose_config, config_dir
from animatex_pp.training.schema import load_train_config
from animatex_pp.training.validation import SHEET_FILE, write_validation

# Clips are 96 x 64 (dance, animation) and 64 x 96 (walk, ti2v); these buckets keep the tiny model fast.
BUCKETS = [[48, 32], [32, 48]]
NUM_FRAMES = 9  # the tiny IPI's window


def overrides(metadata, run_dir, *extra):
    """The tiny model on the sample-video clips, validating 2-step generations."""
    return [f"data.metadata={metadata}", f"run_dir={run_dir}", f"data.clips.num_frames={NUM_FRAMES}",
            f"data.clips.buckets={json.dumps(BUCKETS)}", "validation=default", "validation.num_inference_steps=2",
            *extra]  # fmt: skip


def validation_config(metadata, run_dir, num_samples):
    return load_train_config(compose_config(overrides(metadata, run_dir, f"validation.num_samples={num_samples}")))


def test_the_default_option_sets_what_validation_reads():
    assert (config_dir() / "validation" / "default.yaml").is_file()
    config = compose_config(["validation=default", "data.metadata=clips.jsonl", "run_dir=/tmp/unused"])
    assert config.validation.metadata == "clips.jsonl" and config.validation.every > 0
    assert config.validation.seed == 0 and config.validation.num_samples >= 1
    assert compose_config(["validation=default", "run_dir=/tmp/unused"]).validation.metadata is None


def test_write_validation_writes_the_clips_and_a_sheet_that_shows_the_weights(clip_folder, tmp_path):
    pipeline = tiny_pipeline(seed=0)
    # 4 animation clips come first: the fifth sample is a ti2v clip
    config = validation_config(clip_folder / "metadata.jsonl", tmp_path / "a", num_samples=5)
    paths = write_validation(pipeline, pipeline.transformer, config, 3, True)
    folder = tmp_path / "a" / "validation" / "step-00000003"
    names = ["00-dance_0", "01-dance_1", "02-dance_2", "03-dance_3", "04-walk_0"]
    assert paths == [folder / f"{name}.mp4" for name in names] + [folder / SHEET_FILE]
    assert sorted(path.name for path in folder.iterdir()) == sorted(path.name for path in paths)  # no temporaries

    video, _ = read_video(folder / "00-dance_0.mp4")
    assert video.shape == (NUM_FRAMES, 48, 4 * 32, 3)  # reference | pose | output | ground truth
    video, _ = read_video(folder / "04-walk_0.mp4")
    assert video.shape == (NUM_FRAMES, 32, 3 * 48, 3)  # reference | output | ground truth

    # Cells grow to 128 px and more: 48 -> x3 (144 x 96), 32 -> x4 (128 x 192); 8 of the 9 frames plus a reference
    # column; per clip a title strip and the grid's label strip, then pose, output and ground truth rows (ti2v: no
    # pose row).
    sheet = PIL.Image.open(folder / SHEET_FILE)
    animation_block = 2 * LABEL_HEIGHT + 3 * 144
    assert sheet.size == (ROW_LABEL_WIDTH + 9 * 192, 4 * animation_block + 2 * LABEL_HEIGHT + 2 * 128)

    # Other transformer weights change the output row, and only it.
    other = tiny_components(seed=1)["transformer"]
    write_validation(pipeline, other, config, 4, True)
    first, second = (np.asarray(PIL.Image.open(tmp_path / "a" / "validation" / f"step-0000000{step}" / SHEET_FILE))
                     for step in (3, 4))  # fmt: skip
    rows = {name: slice(2 * LABEL_HEIGHT + row * 144, 2 * LABEL_HEIGHT + (row + 1) * 144)
            for row, name in enumerate(["pose", "output", "ground truth"])}  # fmt: skip
    frames = slice(ROW_LABEL_WIDTH + 96, ROW_LABEL_WIDTH + 9 * 96)
    assert not np.array_equal(first[rows["output"], frames], second[rows["output"], frames])
    for row in ("pose", "ground truth"):
        assert np.array_equal(first[rows[row], frames], second[rows[row], frames])


def test_validation_is_the_same_for_the_same_weights_and_leaves_the_model_training(clip_folder, tmp_path):
    pipeline = tiny_pipeline(seed=0)
    pipeline.transformer.train()
    config = validation_config(clip_folder / "metadata.jsonl", tmp_path / "a", num_samples=1)
    first = write_validation(pipeline, pipeline.transformer, config, 1, True)
    second = write_validation(pipeline, pipeline.transformer, config, 2, True)
    assert pipeline.transformer.training
    assert np.array_equal(np.asarray(PIL.Image.open(first[-1])), np.asarray(PIL.Image.open(second[-1])))
    assert write_validation(pipeline, pipeline.transformer, config, 3, False) == []
    assert not (tmp_path / "a" / "validation" / "step-00000003").exists()


def test_a_validation_without_clips_is_refused_before_any_model_loads():
    with pytest.raises(ValueError, match="give validation.metadata=PATH"):
        load_train_config(compose_config(["validation=default", "data.cache=/tmp/cache", "run_dir=/tmp/unused"]))


def run_overrides(metadata, run_dir, *extra):
    return overrides(metadata, run_dir, "trainer.max_steps=2", "trainer.export.enabled=false", "logger=tensorboard",
                     "validation.every=1", *extra)  # fmt: skip


def sheet_steps(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    return [event.step for event in events.Images("validation/contact_sheet")]


def test_a_zero3_run_gathers_its_weights_and_writes_validation_media_every_optimizer_step(clip_folder, tmp_path):
    run = tmp_path / "run"
    extra = ("deepspeed=zero3", "deepspeed.gradient_accumulation_steps=2")  # 2 optimizer steps of 2 micro-steps
    train(compose_config(run_overrides(clip_folder / "metadata.jsonl", run, *extra)))
    assert sorted(path.name for path in (run / "validation").iterdir()) == ["step-00000001", "step-00000002"]
    for step in (1, 2):
        folder = run / "validation" / f"step-0000000{step}"
        assert sorted(path.name for path in folder.iterdir()) == ["00-dance_0.mp4", "01-dance_1.mp4", SHEET_FILE]
    assert sheet_steps(run) == [1, 2]


@pytest.mark.slow
def test_two_zero3_workers_gather_and_only_rank_0_writes(clip_folder, tmp_path):
    run = tmp_path / "run"
    extra = ("deepspeed=zero3", "trainer.num_processes=2", "trainer.max_steps=1")
    train(compose_config(run_overrides(clip_folder / "metadata.jsonl", run, *extra)))
    assert (run / "worker_logs").is_dir()
    assert sorted(path.name for path in (run / "validation" / "step-00000001").iterdir()) == [
        "00-dance_0.mp4", "01-dance_1.mp4", SHEET_FILE]  # fmt: skip
    assert sheet_steps(run) == [1]
