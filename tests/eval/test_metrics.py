"""Frame metrics and keypoint error on inputs whose answer is known by construction."""

import math

import numpy as np
import pytest
import torch

from animatex_pp.eval.metrics import MAX_PSNR_DB, keypoint_error, l1, pose_keypoint_error, psnr, psnr_star, ssim
from animatex_pp.pose.sequence import PoseSequence

FRAMES, HEIGHT, WIDTH = 4, 16, 20


def _flat(value: float, frames: int = FRAMES) -> np.ndarray:
    return np.full((frames, HEIGHT, WIDTH, 3), value, dtype=np.float32)


def test_psnr_of_a_uniform_error():
    assert psnr(_flat(0.6), _flat(0.5)) == pytest.approx(20.0, abs=1e-4)  # MSE 0.01 -> 10 log10(1 / 0.01)


def test_psnr_is_the_mean_of_per_frame_values():
    target = _flat(0.5, frames=2)
    prediction = target.copy()
    prediction[0] += 0.1  # 20 dB
    prediction[1] += 0.01  # 40 dB
    assert psnr(prediction, target) == pytest.approx(30.0, abs=1e-3)


def test_psnr_accepts_torch_and_uint8_and_caps_exact_frames():
    video = np.random.default_rng(0).integers(0, 256, (FRAMES, HEIGHT, WIDTH, 3), dtype=np.uint8)
    assert psnr(torch.from_numpy(video), video) == MAX_PSNR_DB


def test_psnr_star_on_8_bit_frames():
    target = np.full((FRAMES, HEIGHT, WIDTH, 3), 100, dtype=np.uint8)
    expected = 20 * math.log10(255 / 10)  # every pixel off by 10 levels: MSE 100
    assert psnr_star(target + 10, target) == pytest.approx(expected, abs=1e-6)
    # Below the target: squaring a uint8 difference would wrap (246 instead of -10); PSNR* must not.
    assert psnr_star(target - 10, target) == pytest.approx(expected, abs=1e-6)
    assert psnr_star(target, target) == 100.0


def test_psnr_star_quantises_floats_to_8_bits():
    # 0.5 and 0.5 + 0.001 are the same 8-bit level (128), so PSNR* sees an exact copy while PSNR does not.
    assert psnr_star(_flat(0.501), _flat(0.5)) == 100.0
    assert psnr(_flat(0.501), _flat(0.5)) == pytest.approx(60.0, abs=1e-2)


def test_ssim_of_identical_and_of_a_uniform_offset():
    video = np.random.default_rng(1).random((FRAMES, HEIGHT, WIDTH, 3)).astype(np.float32)
    assert ssim(video, video) == pytest.approx(1.0, abs=1e-6)
    # Flat frames: only the luminance term differs, (2 mu_x mu_y + C1) / (mu_x^2 + mu_y^2 + C1), C1 = 0.01^2.
    c1 = 0.01**2
    expected = (2 * 0.5 * 0.6 + c1) / (0.5**2 + 0.6**2 + c1)
    assert ssim(_flat(0.6), _flat(0.5)) == pytest.approx(expected, abs=1e-5)


def test_ssim_rejects_frames_smaller_than_its_window():
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(np.zeros((2, 8, 8, 3)), np.zeros((2, 8, 8, 3)))


def test_l1_known():
    assert l1(_flat(0.6), _flat(0.5)) == pytest.approx(0.1, abs=1e-6)
    target = np.zeros((FRAMES, HEIGHT, WIDTH, 3), dtype=np.uint8)
    assert l1(target + 51, target) == pytest.approx(0.2, abs=1e-6)


@pytest.mark.parametrize("metric", [psnr, psnr_star, ssim, l1])
def test_bad_inputs_say_what_to_pass(metric):
    good = _flat(0.5)
    with pytest.raises(ValueError, match="one shape"):
        metric(good[:2], good)
    with pytest.raises(ValueError, match=r"\(F, H, W, 3\)"):
        metric(good.transpose(0, 3, 1, 2), good)  # channels first
    with pytest.raises(ValueError, match="uint8 in"):
        metric(good.astype(np.int32), good)
    with pytest.raises(ValueError, match=r"floats in \[0, 1\]"):
        metric(good * 255.0, good)


def _body(num_frames: int = 3) -> np.ndarray:
    rng = np.random.default_rng(2)
    points = rng.uniform(20, 60, (num_frames, 18, 2))
    points[:, 1] = (40, 20)  # neck
    points[:, 8], points[:, 11] = (35, 40), (45, 40)  # hips: torso 20 px
    return points


def test_keypoint_error_normalised_by_the_diagonal():
    target = _body()
    visible = np.ones(target.shape[:2], dtype=bool)
    result = keypoint_error(target + (3.0, 4.0), target, visible, image_size=(60, 80))  # 5 px on a 100 px diagonal
    assert result.mean_error == pytest.approx(0.05)
    assert result.num_points == target.shape[0] * 18 and result.num_missing == 0
    assert keypoint_error(target + (3.0, 4.0), target, visible, image_size=(60, 80), threshold=0.06).pck == 1.0
    assert keypoint_error(target + (3.0, 4.0), target, visible, image_size=(60, 80), threshold=0.04).pck == 0.0


def test_keypoint_error_by_torso_and_visibility():
    target = _body()
    predicted = target.copy()
    predicted[:, 2] += (0.0, 5.0)  # one point 5 px off: 0.25 torso
    target_visible = np.ones(target.shape[:2], dtype=bool)
    target_visible[:, 17] = False  # the renderer has no left ear: not scored
    predicted_visible = np.ones_like(target_visible)
    predicted_visible[:, 16] = False  # the prediction missed the right ear: a PCK miss, not in the mean
    result = keypoint_error(predicted, target, target_visible, predicted_visible, normalize="torso", threshold=0.1)
    assert result.num_points == 3 * 17 and result.num_missing == 3
    assert result.mean_error == pytest.approx(0.25 / 16)
    assert result.pck == pytest.approx(15 / 17)


def test_keypoint_error_rejects_bad_input():
    target = _body()
    visible = np.ones(target.shape[:2], dtype=bool)
    with pytest.raises(ValueError, match="image_size"):
        keypoint_error(target, target, visible)
    with pytest.raises(ValueError, match=r"\(N, K, 2\)"):
        keypoint_error(target[:, :, :1], target, visible, image_size=(60, 80))
    with pytest.raises(ValueError, match="target_visible must be"):
        keypoint_error(target, target, visible.astype(np.float32), image_size=(60, 80))
    with pytest.raises(ValueError, match="no ground-truth point"):
        keypoint_error(target, target, ~visible, image_size=(60, 80))


def test_pose_keypoint_error_in_target_pixels():
    target_px = _body()
    conf = np.ones(target_px.shape[:2], dtype=np.float32)
    target = PoseSequence(body=target_px / (80, 60), body_conf=conf, width=80, height=60)
    predicted = PoseSequence(body=(target_px + (3.0, 4.0)) / (80, 60), body_conf=conf, width=80, height=60)
    assert pose_keypoint_error(predicted, target).mean_error == pytest.approx(0.05, abs=1e-6)
