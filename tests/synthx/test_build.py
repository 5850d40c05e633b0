"""Builds: deterministic bytes, complete and consistent files, metadata the data module accepts, atomic output."""

import hashlib
import importlib
import json

import numpy as np
import pytest

from animatex_pp.pose import PoseSequence
from animatex_pp.synthx.bodies import FAMILIES
from animatex_pp.synthx.build import METADATA_FILES, SPLITS, BuildConfig, build
from animatex_pp.synthx.truth import clip_truth
from tests.helpers.synthx import SMALL

# The module itself: `animatex_pp.synthx.build` as an attribute is the function the package exports.
build_module = importlib.import_module("animatex_pp.synthx.build")

TINY = BuildConfig(size=32, frames=5, train=4, test=3, seed=11)


def _digests(folder):
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}  # fmt: skip


def _rows(folder, split):
    return [json.loads(line) for line in (folder / METADATA_FILES[split]).read_text().splitlines()]


def test_same_seed_gives_identical_bytes_whatever_the_worker_count(tmp_path):
    build(tmp_path / "one", TINY, workers=1, progress=False)
    build(tmp_path / "two", TINY, workers=2, progress=False)
    first, second = _digests(tmp_path / "one"), _digests(tmp_path / "two")
    assert len(first) > 40 and first == second


def test_different_seeds_give_different_clips(tmp_path):
    build(tmp_path / "a", TINY, workers=1, progress=False)
    build(tmp_path / "b", BuildConfig(**{**TINY.__dict__, "seed": 12}), workers=1, progress=False)
    first, second = _digests(tmp_path / "a"), _digests(tmp_path / "b")
    videos = [name for name in first if name.endswith(".mp4")]
    assert videos and all(first[name] != second[name] for name in videos)


def test_every_split_has_its_clips_and_files(small_build):
    summary = json.loads((small_build / "synthx.json").read_text())
    assert summary["seed"] == SMALL.seed and summary["parameters"]["frames"] == SMALL.frames
    for split in SPLITS:
        rows = _rows(small_build, split)
        assert len(rows) == (SMALL.train if split == "train" else SMALL.test) == summary["splits"][split]["clips"]
        for row in rows:
            for key in ("video", "background", "reference", "truth", "pose", "reference_pose", "driving_video"):
                if key in row:
                    assert (small_build / row[key]).is_file(), (row["id"], key)
            truth = clip_truth(small_build / METADATA_FILES[split], row)
            assert truth.labels.shape == (SMALL.frames, SMALL.size, SMALL.size)
            if row["task"] == "animation":
                assert truth.character_masks().all(axis=0).sum() < truth.character_masks().any(axis=0).sum()
                pose = PoseSequence.load(small_build / row["pose"])
                assert len(pose) == SMALL.frames and (pose.width, pose.height) == (SMALL.size, SMALL.size)


def test_the_background_plate_is_the_clip_without_its_character(small_build):
    from animatex_pp.eval.character import dilate
    from animatex_pp.io.video import read_video

    for split in SPLITS:
        for row in _rows(small_build, split):
            video, plate = (read_video(small_build / row[key])[0].astype(int) for key in ("video", "background"))
            truth = clip_truth(small_build / METADATA_FILES[split], row)
            masks = truth.character_masks()
            # yuv420p shares chroma between 2 x 2 pixels: compare a few pixels away from any anti-aliased edge
            away = ~dilate(truth.alpha > 0, 2)
            assert np.abs(video - plate)[away].max() <= 2, row["id"]
            if masks.any():
                assert np.abs(video - plate).max(axis=-1)[masks].mean() > 10, row["id"]


def test_splits_hold_what_they_promise(small_build):
    train = _rows(small_build, "train")
    assert {row["family"] for row in train} <= {"human", None}
    assert {row["task"] for row in train} == {"animation", "ti2v"}
    train_motions = {row["motion"] for row in train if row["task"] == "animation"}
    for split in ("test_x", "test_x_dynamic", "test_human"):
        rows = _rows(small_build, split)
        assert not {row["motion"] for row in rows} & train_motions  # held-out motions only
        families = {row["family"] for row in rows}
        assert families == {"human"} if split == "test_human" else not families & {"human"}
        moving = {row["background_motion"]["label"] != "still" for row in rows}
        assert moving == ({True} if split == "test_x_dynamic" else {False})


def test_ground_truth_is_the_character_and_the_pose_is_the_driver(small_build):
    for row in _rows(small_build, "train"):
        if row["task"] == "animation":  # a training video's pose is its own character's
            truth = clip_truth(small_build / "train.jsonl", row)
            np.testing.assert_allclose(PoseSequence.load(small_build / row["pose"]).body, truth.keypoints, atol=1e-6)
    for row in _rows(small_build, "test_x"):
        truth = clip_truth(small_build / "test_x.jsonl", row)
        driving = PoseSequence.load(small_build / row["pose"])
        assert not np.allclose(driving.body, truth.keypoints, atol=0.01)  # another body performs the motion
        assert (driving.body_conf == 1).all()  # the driver is human-like: every point is there
        lacks_arms = "r_upper_arm" in FAMILIES[row["family"]].remove
        assert (truth.keypoints_conf[:, [3, 4, 6, 7]] == 0).all() == lacks_arms
        arm_pixels = sum(truth.part_masks(part).sum() for part in ("r_upper_arm", "r_forearm", "l_upper_arm",
                                                                    "l_forearm"))  # fmt: skip
        assert (arm_pixels == 0) == lacks_arms


def test_metadata_validates_with_the_data_module(small_build):
    from animatex_pp.data.metadata import read_metadata

    for split in SPLITS:
        report = read_metadata(small_build / METADATA_FILES[split])
        assert report.problems == []
        assert len(report.clips) == (SMALL.train if split == "train" else SMALL.test)


def test_an_interrupted_build_leaves_nothing_behind(tmp_path, monkeypatch):
    render = build_module._render

    def fails_at_the_third(spec, config, root):
        if spec.index == 2:
            raise RuntimeError("interrupted")
        return render(spec, config, root)

    monkeypatch.setattr(build_module, "_render", fails_at_the_third)
    with pytest.raises(RuntimeError, match="interrupted"):
        build(tmp_path / "out", TINY, workers=1, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_a_folder_that_is_not_a_build_is_never_replaced(tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "holiday.jpg").write_bytes(b"precious")
    with pytest.raises(ValueError, match="not a SynthX build"):
        build(tmp_path / "photos", TINY, workers=1, progress=False)
    assert (tmp_path / "photos" / "holiday.jpg").read_bytes() == b"precious"
