"""Fréchet distances against the closed form, and through random-weight extractors."""

import numpy as np
import pytest
import torch

from animatex_pp.eval.features import (
    fid,
    frechet_distance,
    frechet_distance_from_stats,
    fvd,
    load_i3d,
    load_inception,
)


def _random_spd(dim: int, seed: int) -> np.ndarray:
    a = np.random.default_rng(seed).standard_normal((dim, dim))
    return a @ a.T + 0.1 * np.eye(dim)


def test_frechet_distance_of_diagonal_gaussians_is_the_closed_form():
    rng = np.random.default_rng(0)
    mu_a, mu_b = rng.standard_normal(6), rng.standard_normal(6)
    var_a, var_b = rng.uniform(0.1, 3.0, 6), rng.uniform(0.1, 3.0, 6)
    expected = ((mu_a - mu_b) ** 2).sum() + (var_a + var_b - 2 * np.sqrt(var_a * var_b)).sum()
    distance = frechet_distance_from_stats(mu_a, np.diag(var_a), mu_b, np.diag(var_b))
    assert distance == pytest.approx(expected, rel=1e-10)


def test_frechet_distance_of_scaled_full_covariances():
    # S_b = c^2 S_a commutes with S_a, so (S_a S_b)^(1/2) = c S_a and FD = |dmu|^2 + (1 - c)^2 tr S_a.
    cov = _random_spd(5, seed=1)
    mu_a, mu_b = np.zeros(5), np.full(5, 0.5)
    expected = 5 * 0.25 + (1 - 2.0) ** 2 * np.trace(cov)
    assert frechet_distance_from_stats(mu_a, cov, mu_b, 4.0 * cov) == pytest.approx(expected, rel=1e-9)
    assert frechet_distance_from_stats(mu_a, cov, mu_a, cov) == pytest.approx(0.0, abs=1e-9)


def test_frechet_distance_matches_scipy_sqrtm_on_general_covariances():
    linalg = pytest.importorskip("scipy.linalg")
    cov_a, cov_b = _random_spd(7, seed=2), _random_spd(7, seed=3)
    mu_a, mu_b = np.ones(7), np.zeros(7)
    expected = 7.0 + np.trace(cov_a + cov_b - 2 * np.real(linalg.sqrtm(cov_a @ cov_b)))
    assert frechet_distance_from_stats(mu_a, cov_a, mu_b, cov_b) == pytest.approx(expected, rel=1e-8)


def test_frechet_distance_of_samples_approaches_the_population_value():
    rng = np.random.default_rng(4)
    a = rng.normal(0.0, 1.0, (20000, 3))
    b = rng.normal(1.0, 2.0, (20000, 3))
    expected = 3 * 1.0 + 3 * (1 + 4 - 2 * 2)  # |dmu|^2 + sum(s_a + s_b - 2 sqrt(s_a s_b))
    assert frechet_distance(a, b) == pytest.approx(expected, rel=0.05)
    with pytest.raises(ValueError, match="N >= 2"):
        frechet_distance(a[:1], b)


class _TinyImageNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(frames)).mean(dim=(2, 3))  # (N, 3, H, W) -> (N, 8)


class _TinyVideoNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv3d(3, 8, 3, padding=1)

    def forward(self, videos: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(videos)).mean(dim=(2, 3, 4))  # (N, 3, F, H, W) -> (N, 8)


def _frames(count: int, seed: int, shift: float = 0.0) -> np.ndarray:
    frames = np.random.default_rng(seed).uniform(0.0, 0.6, (count, 16, 16, 3)) + shift
    return frames.astype(np.float32)


def test_fid_with_a_random_weight_extractor():
    extractor = _TinyImageNet()
    real = _frames(40, seed=5)
    assert fid(real, real, extractor, batch_size=16) == pytest.approx(0.0, abs=1e-6)
    near, far = fid(_frames(40, 6, shift=0.1), real, extractor), fid(_frames(40, 6, shift=0.4), real, extractor)
    assert 0.0 < near < far


def test_fvd_with_a_random_weight_extractor():
    extractor = _TinyVideoNet()
    real = _frames(24 * 4, seed=7).reshape(24, 4, 16, 16, 3)  # 24 videos of 4 frames
    assert fvd(real, real, extractor, batch_size=5) == pytest.approx(0.0, abs=1e-6)
    assert fvd(_frames(96, 8, shift=0.3).reshape(24, 4, 16, 16, 3), real, extractor) > 0.0
    with pytest.raises(ValueError, match=r"\(N, F, H, W, 3\)"):
        fvd(real[0], real, extractor)


class _ScriptedInception(torch.nn.Module):
    """Stands in for inception-2015-12-05.pt: same call, features = per-channel means of its [0, 255] input."""

    def forward(self, x: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        return x.mean(dim=(2, 3))


class _ScriptedI3D(torch.nn.Module):
    """Stands in for i3d_torchscript.pt: same call, features = per-channel means and the input size."""

    def forward(
        self, x: torch.Tensor, rescale: bool = True, resize: bool = True, return_features: bool = False
    ) -> torch.Tensor:
        size = torch.tensor([x.shape[2], x.shape[3], x.shape[4]], dtype=x.dtype).expand(x.shape[0], 3)
        return torch.cat([x.mean(dim=(2, 3, 4)), size], dim=1)


def test_loaders_read_torchscript_files_and_feed_them_their_conventions(tmp_path):
    torch.jit.script(_ScriptedInception()).save(str(tmp_path / "inception-2015-12-05.pt"))
    torch.jit.script(_ScriptedI3D()).save(str(tmp_path / "i3d_torchscript.pt"))
    inception = load_inception(tmp_path)  # a folder holding the file
    features = inception(torch.full((2, 3, 8, 8), 0.5))
    assert torch.allclose(features, torch.full((2, 3), 127.5))  # fed [0, 255]
    i3d = load_i3d(tmp_path / "i3d_torchscript.pt")
    features = i3d(torch.ones(2, 3, 5, 30, 40))  # (N, 3, F, H, W) in [0, 1]
    assert torch.allclose(features[:, :3], torch.ones(2, 3))  # fed [-1, 1]
    assert features[0, 3:].tolist() == [5, 224, 224]  # resized and centre-cropped to 224


def test_loaders_name_the_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="inception-2015-12-05.pt from https://") as error:
        load_inception(tmp_path)
    assert "\n" not in str(error.value)
    with pytest.raises(FileNotFoundError, match="i3d_torchscript.pt"):
        load_i3d(tmp_path / "nowhere.pt")
