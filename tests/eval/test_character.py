"""Character metrics on hand-made clips whose answers are known: a square 'character' over a plain plate."""

import math

import numpy as np
import pytest

from animatex_pp.eval.character import (
    FOREGROUND_THRESHOLD,
    character_psnr,
    dilate,
    foreground,
    foreground_iou,
    spurious_share,
)

FRAMES, SIZE = 3, 32


def scene(square=(8, 16), value=200, plate_value=40):
    """A plate of one grey, a square of another grey from `square[0]` to `square[1]` in both axes: (frames, masks,
    plate)."""
    plate = np.full((FRAMES, SIZE, SIZE, 3), plate_value, np.uint8)
    frames = plate.copy()
    masks = np.zeros((FRAMES, SIZE, SIZE), bool)
    low, high = square
    frames[:, low:high, low:high] = value
    masks[:, low:high, low:high] = True
    return frames, masks, plate


def test_dilate_grows_a_mask_by_its_radius():
    masks = np.zeros((1, 9, 9), bool)
    masks[0, 4, 4] = True
    assert dilate(masks, 2).sum() == 25 and dilate(masks, 0).sum() == 1


def test_character_psnr_scores_only_the_characters_pixels():
    truth, masks, _ = scene()
    wrong_background = truth.copy()
    wrong_background[:, :4] = 255  # far from the character
    assert character_psnr(wrong_background, truth, masks) == pytest.approx(100.0)  # the 1e-10 floor: exact
    off = truth.astype(np.int16)
    off[:, 8:16, 8:16] -= 51  # every character pixel 0.2 off
    expected = 10 * math.log10(1 / ((64 * 0.2**2) / (12 * 12)))  # 64 of the dilated 144 pixels are off
    assert character_psnr(off.astype(np.uint8), truth, masks) == pytest.approx(expected, abs=1e-3)
    assert math.isnan(character_psnr(truth, truth, np.zeros_like(masks)))


def test_foreground_iou_and_spurious_share():
    truth, masks, plate = scene()
    assert foreground_iou(truth, plate, masks) == pytest.approx(1.0)
    assert spurious_share(truth, plate, masks) == 0.0
    # the plate alone (the character erased): no foreground, IoU 0
    assert foreground_iou(plate, plate, masks) == 0.0
    # a square half as wide: IoU 1/2; a limb drawn 4 px outside the dilated mask adds to the spurious share
    half = truth.copy()
    half[:, 8:16, 12:16] = 40  # the square's right half erased
    assert foreground_iou(half, plate, masks) == pytest.approx(0.5)
    limb = truth.copy()
    limb[:, 24:28, 0:8] = 200  # 32 pixels per frame, far from the square
    assert spurious_share(limb, plate, masks) == pytest.approx(32 / 64)
    # differences below the threshold are not foreground
    noisy = plate.astype(np.int16) + int(FOREGROUND_THRESHOLD * 255) - 2
    assert not foreground(noisy.astype(np.uint8), plate).any()


def test_shapes_must_match():
    truth, masks, plate = scene()
    with pytest.raises(ValueError, match=r"masks must be \(F, H, W\)"):
        foreground_iou(truth, plate, masks[:, :-1])
    with pytest.raises(ValueError, match="one shape"):
        foreground(truth[:, :-1], plate)
