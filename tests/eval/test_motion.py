"""Background motion on frames whose motion is known by construction."""

import numpy as np
import pytest

from animatex_pp.eval.motion import (
    BackgroundMotion,
    background_motion_accuracy,
    estimate_background_motion,
    expected_motion_label,
    masked_correlation,
    phase_correlation,
)
from tests.helpers.textures import fourier_shift, smooth_texture, to_rgb_uint8, zoom_about_centre

NUM_FRAMES, SIZE = 6, 64


@pytest.mark.parametrize("shift", [(3, -2), (-7, 5), (0, 0)])
def test_phase_correlation_whole_pixel_roll(shift):
    a = smooth_texture(SIZE, seed=0)
    dy, dx = phase_correlation(a, np.roll(a, shift, axis=(0, 1)))
    assert dy == pytest.approx(shift[0], abs=0.02) and dx == pytest.approx(shift[1], abs=0.02)


@pytest.mark.parametrize("shift", [(2.3, -1.7), (0.4, 0.2), (-0.25, 4.6)])
def test_phase_correlation_subpixel(shift):
    a = smooth_texture(SIZE, seed=1)
    dy, dx = phase_correlation(a, fourier_shift(a, *shift))
    assert dy == pytest.approx(shift[0], abs=0.05) and dx == pytest.approx(shift[1], abs=0.05)


def test_phase_correlation_rejects_mismatched_frames():
    with pytest.raises(ValueError, match="one shape"):
        phase_correlation(np.zeros((8, 8)), np.zeros((8, 9)))


@pytest.mark.parametrize("shift", [(2.3, -1.7), (-3.0, 0.4)])
def test_masked_correlation_subpixel(shift):
    a = smooth_texture(SIZE, seed=1)
    dy, dx = masked_correlation(a, fourier_shift(a, *shift))
    assert dy == pytest.approx(shift[0], abs=0.05) and dx == pytest.approx(shift[1], abs=0.05)


def test_masked_correlation_ignores_what_is_not_kept():
    # b is a moved by (1, -2) except for a bright patch pasted at a fixed place, which only keep_b leaves out.
    a = smooth_texture(SIZE, seed=6)
    b = np.roll(a, (1, -2), axis=(0, 1))
    b[10:40, 10:40] = 1.0
    keep_b = np.ones(b.shape, dtype=bool)
    keep_b[8:42, 8:42] = False
    dy, dx = masked_correlation(a, b, keep_b=keep_b)
    assert dy == pytest.approx(1.0, abs=0.05) and dx == pytest.approx(-2.0, abs=0.05)
    with pytest.raises(ValueError, match="no kept pixel"):
        masked_correlation(a, b, keep_b=np.zeros(b.shape, dtype=bool))


def _rolled_clip(step_y: int, step_x: int) -> np.ndarray:
    texture = smooth_texture(SIZE, seed=2)
    return np.stack([np.roll(texture, (f * step_y, f * step_x), axis=(0, 1)) for f in range(NUM_FRAMES)])


@pytest.mark.parametrize(
    ("step", "label"), [((0, -2), "left"), ((0, 2), "right"), ((-1, 0), "up"), ((1, 0), "down"), ((0, 0), "still")]
)
def test_translation_direction(step, label):
    motion = estimate_background_motion(to_rgb_uint8(_rolled_clip(*step)))
    assert motion.dx.shape == motion.dy.shape == motion.zoom.shape == (NUM_FRAMES - 1,)
    np.testing.assert_allclose(motion.dy, step[0], atol=0.05)
    np.testing.assert_allclose(motion.dx, step[1], atol=0.05)
    np.testing.assert_allclose(motion.zoom, 1.0, atol=0.003)
    assert np.all(motion.correlation > 0.95)
    assert motion.classify() == label


def test_pan_with_content_entering_at_the_border():
    # A window onto a larger texture, moving 1.5 px per frame: real pans bring in new content at one edge.
    texture = smooth_texture(4 * SIZE, seed=3)
    frames = np.stack([fourier_shift(texture, 0.0, -1.5 * f)[50 : 50 + SIZE, 50 : 50 + SIZE] for f in range(6)])
    motion = estimate_background_motion(frames[..., None].repeat(3, axis=-1))  # float frames in [0, 1]
    np.testing.assert_allclose(motion.dx, -1.5, atol=0.1)
    assert motion.classify() == "left"


@pytest.mark.parametrize(("scale", "label"), [(1.03, "zoom_in"), (0.97, "zoom_out"), (1.01, "zoom_in")])
def test_zoom(scale, label):
    texture = smooth_texture(4 * SIZE, seed=4)
    frames = np.stack([zoom_about_centre(texture, scale**f, SIZE) for f in range(NUM_FRAMES)])
    motion = estimate_background_motion(to_rgb_uint8(frames))
    assert float(np.mean(motion.zoom)) == pytest.approx(scale, abs=0.004)
    np.testing.assert_allclose(motion.dx, 0.0, atol=0.1)
    assert motion.classify() == label


def test_character_mask_is_excluded():
    # Background drifts left 1 px/frame; a bright textured "character" square walks right 3 px/frame over it.
    background = _rolled_clip(0, -1)
    sprite = 0.5 + 0.5 * smooth_texture(20, seed=5, sigma=1.0)
    frames, mask = background.copy(), np.zeros(background.shape, dtype=bool)
    for f in range(NUM_FRAMES):
        frames[f, 20:40, 10 + 3 * f : 30 + 3 * f] = sprite
        mask[f, 18:42, 8 + 3 * f : 32 + 3 * f] = True
    motion = estimate_background_motion(to_rgb_uint8(frames), mask=mask)
    np.testing.assert_allclose(motion.dx, -1.0, atol=0.1)
    assert motion.classify() == "left"


def test_estimate_rejects_bad_input():
    with pytest.raises(ValueError, match=r"\(F, H, W, 3\)"):
        estimate_background_motion(np.zeros((4, 16, 16)))
    with pytest.raises(ValueError, match="dtype"):
        estimate_background_motion(np.zeros((4, 16, 16, 3), dtype=np.int32))
    with pytest.raises(ValueError, match="mask"):
        estimate_background_motion(np.zeros((4, 16, 16, 3)), mask=np.zeros((4, 16, 16)))


def test_classify_thresholds():
    slow = BackgroundMotion(dx=np.full(4, -0.2), dy=np.zeros(4), zoom=np.ones(4), correlation=np.ones(4))
    assert slow.classify() == "still"
    assert slow.classify(shift_threshold=0.1) == "left"
    # Both past their thresholds: the one further past wins.
    both = BackgroundMotion(dx=np.full(4, 0.5), dy=np.zeros(4), zoom=np.full(4, 1.02), correlation=np.ones(4))
    assert both.classify(shift_threshold=0.25, zoom_threshold=0.004) == "zoom_in"
    assert both.classify(shift_threshold=0.05, zoom_threshold=0.01) == "right"
    # Unreliable pairs are left out; a clip with fewer than half reliable is "unknown".
    glitch = BackgroundMotion(
        dx=np.array([-1.0, -1.0, 9.0]), dy=np.zeros(3), zoom=np.ones(3), correlation=np.array([0.9, 0.9, 0.1])
    )
    assert glitch.classify() == "left"
    assert glitch.classify(min_correlation=0.95) == "unknown"
    # The median over pairs: one pair where the character swept the frame does not make the clip move.
    sweep = BackgroundMotion(dx=np.array([0.0, 0.0, 14.0]), dy=np.zeros(3), zoom=np.ones(3), correlation=np.ones(3))
    assert sweep.classify() == "still"


def test_uncorrelated_frames_are_unknown():
    noise = np.random.default_rng(7).integers(0, 256, (NUM_FRAMES, SIZE, SIZE, 3), dtype=np.uint8)
    motion = estimate_background_motion(noise)
    assert np.all(motion.correlation < 0.5)
    assert motion.classify() == "unknown"


@pytest.mark.parametrize(
    ("caption", "label"),
    [
        ("The background drifts left.", "left"),
        ("a knight dances while the background moves to the left", "left"),
        ("the background slides slowly towards the right", "right"),
        ("the background pans right", "right"),
        ("the camera pans right", "left"),  # the camera's motion is the opposite of the content's
        ("the scenery scrolls upward", "up"),
        ("the background drifts down", "down"),
        ("the background zooms in", "zoom_in"),
        ("the camera is zooming out", "zoom_out"),
        ("the background is still", "still"),
        ("static background, a cat waves", "still"),
        ("a robot dances", None),
        ("", None),
        (None, None),
        ("the background drifts left, then zooms in", None),  # contradictory: not evaluable
    ],
)
def test_expected_motion_label(caption, label):
    assert expected_motion_label(caption) == label


def test_background_motion_accuracy_skips_unevaluable():
    predicted = ["left", "right", "still", "zoom_in"]
    expected = ["left", "left", None, "zoom_in"]
    assert background_motion_accuracy(predicted, expected) == pytest.approx(2 / 3)
    assert background_motion_accuracy(["left"], [None]) is None
    with pytest.raises(ValueError, match="one predicted label per expected"):
        background_motion_accuracy(["left"], ["left", "right"])
    with pytest.raises(ValueError, match="unknown motion labels"):
        background_motion_accuracy(["sideways"], ["left"])
