"""Image and video converters of `animatex_pp.io.preview`: the layouts and value ranges they accept and refuse."""

import numpy as np
import pytest
import torch

from animatex_pp.io.preview import as_uint8_image, as_uint8_video


def test_floats_in_unit_range_become_uint8():
    rng = np.random.default_rng(0)
    image = rng.random((6, 4, 3), dtype=np.float32)
    expected = (image * 255).round().astype(np.uint8)
    np.testing.assert_array_equal(as_uint8_image(image), expected)
    # (H, W, 3) -> (3, H, W): tensors are channels-first
    np.testing.assert_array_equal(as_uint8_image(torch.from_numpy(image).permute(2, 0, 1)), expected)
    video = rng.random((2, 6, 4, 3), dtype=np.float32)
    # (F, H, W, 3) -> (3, F, H, W)
    tensor = torch.from_numpy(video).permute(3, 0, 1, 2)
    np.testing.assert_array_equal(as_uint8_video(tensor), as_uint8_video(video))


def test_uint8_tensors_keep_their_values():
    image = torch.arange(3 * 4 * 5, dtype=torch.uint8).reshape(3, 4, 5)  # (3, H, W)
    np.testing.assert_array_equal(as_uint8_image(image), image.permute(1, 2, 0).numpy())
    video = torch.arange(3 * 2 * 4 * 5, dtype=torch.uint8).reshape(3, 2, 4, 5)  # (3, F, H, W)
    np.testing.assert_array_equal(as_uint8_video(video), video.permute(1, 2, 3, 0).numpy())


def test_rounding_overshoot_is_clipped():
    image = np.full((2, 2, 3), 1.0 + 1e-6, np.float32)
    image[0, 0] = -1e-6
    assert as_uint8_image(image)[0, 0, 0] == 0 and as_uint8_image(image)[1, 1, 0] == 255


@pytest.mark.parametrize(
    "convert, pixels",
    [
        (as_uint8_image, np.full((4, 4, 3), 128.0, np.float32)),  # 0..255 floats
        (as_uint8_image, torch.full((3, 4, 4), 128.0)),
        (as_uint8_video, np.full((2, 4, 4, 3), 128.0)),
        (as_uint8_video, torch.full((3, 2, 4, 4), 128.0, dtype=torch.bfloat16)),
        (as_uint8_video, [np.full((4, 4, 3), 200.0)]),
        (as_uint8_image, np.full((4, 4, 3), -0.5, np.float32)),  # [-1, 1] floats
        (as_uint8_image, np.full((4, 4, 3), np.nan, np.float32)),
    ],
)
def test_floats_outside_unit_range_are_an_error(convert, pixels):
    with pytest.raises(ValueError, match=r"float pixels must be in \[0, 1\].*by 255"):
        convert(pixels)


def test_arrays_are_channels_last_only():
    with pytest.raises(ValueError, match=r"an image array must be \(H, W, 3\), got shape \(3, 4, 5\)"):
        as_uint8_image(np.zeros((3, 4, 5), np.float32))
    with pytest.raises(ValueError, match=r"an image tensor must be \(3, H, W\), got shape \(4, 5, 3\)"):
        as_uint8_image(torch.zeros(4, 5, 3))
