"""Window plans and seam weights for long videos (pure arithmetic, no model)."""

import pytest
import torch

from animatex_pp.pipelines.windowing import (
    LatentWindow,
    blend_weights,
    carried_frames,
    default_overlap,
    plan_windows,
)


def test_a_short_video_is_one_window():
    assert plan_windows(5, 21, 4) == [LatentWindow(0, 5)]
    assert plan_windows(21, 21, 4) == [LatentWindow(0, 21)]


def test_windows_cover_the_video_with_full_length_and_at_least_the_overlap():
    for num_latent_frames in range(4, 60):
        windows = plan_windows(num_latent_frames, 3, 1)
        assert windows[0].start == 0 and windows[-1].stop == num_latent_frames
        assert all(window.length == 3 for window in windows)
        for previous, current in zip(windows, windows[1:], strict=False):
            assert previous.start < current.start
            assert previous.stop - current.start >= 1


def test_three_windows_of_the_official_size():
    # 21-latent windows overlapping by 4: 21 + 17 + 17 = 55 latent frames = 217 pixel frames.
    windows = plan_windows(55, 21, 4)
    assert windows == [LatentWindow(0, 21), LatentWindow(17, 38), LatentWindow(34, 55)]


def test_pixel_slices_are_4k_plus_1_clips_starting_at_the_window():
    window = LatentWindow(17, 38)
    frames = window.pixel_slice(4)
    assert (frames.start, frames.stop) == (68, 149)
    assert (frames.stop - frames.start) == 4 * (window.length - 1) + 1


def test_blend_weights_sum_to_one_and_ramp_across_seams():
    windows = plan_windows(7, 3, 1)  # [0, 3), [2, 5), [4, 7)
    weights = blend_weights(windows, 7)
    total = torch.zeros(7)
    for window, weight in zip(windows, weights, strict=True):
        total[window.start : window.stop] += weight
    torch.testing.assert_close(total, torch.ones(7))
    # One-frame overlaps: the later window's first frame is its reference-conditioned one, so the earlier window
    # owns the shared frame outright.
    torch.testing.assert_close(weights[0], torch.tensor([1.0, 1.0, 1.0]))
    torch.testing.assert_close(weights[1], torch.tensor([0.0, 1.0, 1.0]))
    torch.testing.assert_close(weights[2], torch.tensor([0.0, 1.0, 1.0]))


def test_blend_weights_ramp_linearly_over_long_overlaps():
    windows = plan_windows(38, 21, 4)  # [0, 21), [17, 38)
    first, second = blend_weights(windows, 38)
    # The second window's first 2 latent frames stay out (as the official pipeline); the other 2 ramp.
    torch.testing.assert_close(first[17:], torch.tensor([1.0, 1.0, 2 / 3, 1 / 3]))
    torch.testing.assert_close(second[:4], torch.tensor([0.0, 0.0, 1 / 3, 2 / 3]))
    assert (first[:17] == 1).all() and (second[4:] == 1).all()


def test_carried_frames_are_the_overlap_with_earlier_windows():
    windows = plan_windows(8, 3, 1)
    assert windows == [LatentWindow(0, 3), LatentWindow(2, 5), LatentWindow(3, 6), LatentWindow(5, 8)]
    assert [carried_frames(windows, index) for index in range(4)] == [0, 1, 2, 1]


def test_default_overlap_keeps_the_official_ratio():
    assert default_overlap(21) == 4
    assert default_overlap(3) == 1
    assert default_overlap(2) == 1


def test_bad_overlap_is_refused_with_its_bounds():
    with pytest.raises(ValueError, match="between 1 and 2"):
        plan_windows(10, 3, 3)
