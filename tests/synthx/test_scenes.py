"""Backgrounds move as their captions say, measured by phase correlation (animatex_pp.eval.motion)."""

import json

import numpy as np
import pytest

from animatex_pp.eval.motion import estimate_background_motion, expected_motion_label
from animatex_pp.io.video import read_video
from animatex_pp.synthx.captions import BACKGROUND_PHRASES, SPEED_WORDS, caption
from animatex_pp.synthx.scenes import CAMERA_LABELS, background_frames, sample_camera
from animatex_pp.synthx.truth import clip_truth

SIZE, FRAMES = 64, 9


def test_every_caption_paraphrase_states_its_motion():
    rng = np.random.default_rng(0)
    objects = [{"kind": kind, "colour": "red", "direction": d, "label": 16} for kind in ("ball", "box")
               for d in ("left", "right", "up", "down")]  # fmt: skip
    for label, phrases in BACKGROUND_PHRASES.items():
        for phrase in phrases:
            for speed in ("none",) if label == "still" else ("slow", "fast"):
                for how in SPEED_WORDS[speed]:
                    assert expected_motion_label(phrase.format(how=how)) == label, phrase.format(how=how)
        for _ in range(10):  # with a subject and moving objects around it, the label is unchanged
            speed = "none" if label == "still" else "fast"
            text = caption("a human-like character jumps", label, speed, objects[: rng.integers(3)], rng)
            assert expected_motion_label(text) == label, text


@pytest.mark.parametrize("label", CAMERA_LABELS)
@pytest.mark.parametrize("speed", ["slow", "fast"])
def test_measured_background_motion_matches_the_camera(label, speed):
    rng = np.random.default_rng([CAMERA_LABELS.index(label), speed == "fast"])
    camera = sample_camera(label, SIZE, rng)
    while camera.speed not in (speed, "none"):  # draw until the speed asked for comes up
        camera = sample_camera(label, SIZE, rng)
    measured = estimate_background_motion(background_frames(camera, FRAMES, SIZE, rng))
    assert measured.classify() == label
    # Whole-frame phase correlation of a zooming view has no single shift: its translation is noisier there.
    shift_tolerance = 0.3 if label.startswith("zoom") else 0.15
    np.testing.assert_allclose(np.median(measured.dx), camera.dx, atol=shift_tolerance)
    np.testing.assert_allclose(np.median(measured.dy), camera.dy, atol=shift_tolerance)
    np.testing.assert_allclose(np.median(measured.zoom), camera.zoom, atol=0.006)


def test_built_ti2v_clips_move_as_their_captions_say(small_build):
    metadata = small_build / "train.jsonl"
    rows = [json.loads(line) for line in metadata.read_text().splitlines()]
    ti2v = [row for row in rows if row["task"] == "ti2v"]
    assert {row["background_motion"]["label"] for row in ti2v} >= {"still", "left", "right", "up"}
    rates = {"slow": [], "fast": []}
    for row in ti2v:
        frames, _ = read_video(small_build / row["video"])
        truth = clip_truth(metadata, row)
        measured = estimate_background_motion(frames, mask=truth.foreground_masks())
        label = expected_motion_label(row["caption"])
        assert measured.classify() == label, row["caption"]
        dx, dy, zoom = truth.background_motion()
        np.testing.assert_allclose(np.median(measured.dx), dx.mean(), atol=0.2)
        np.testing.assert_allclose(np.median(measured.dy), dy.mean(), atol=0.2)
        if label in ("left", "right", "up", "down"):
            rates[row["background_motion"]["speed"]].append(np.hypot(np.median(measured.dx), np.median(measured.dy)))
    # The caption's speed word is told apart by the measured rate alone.
    if rates["slow"] and rates["fast"]:
        assert max(rates["slow"]) < min(rates["fast"])
