"""Fréchet distances (FID over frames, FVD over videos) between Gaussian fits of features from a pluggable extractor.

``FD = |mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))`` (Heusel et al. 2017, FID; Unterthiner et al. 2018, FVD)
with the features' means and unbiased covariances. The feature networks are the usual TorchScript files, loaded from a
path the user gives (nothing downloads): StyleGAN2-ADA's ``inception-2015-12-05.pt`` (2048-d pool features of the
TF-FID Inception) and StyleGAN-V's ``i3d_torchscript.pt`` (400-d Kinetics I3D logits, as the TF FVD code uses).
TorchScript needs no architecture code, so neither torchvision nor torch-fidelity is required.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F

from animatex_pp.io.frames import to_unit_float

INCEPTION_FILE = "inception-2015-12-05.pt"
INCEPTION_URL = "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/inception-2015-12-05.pt"
I3D_FILE = "i3d_torchscript.pt"
I3D_URL = "https://www.dropbox.com/s/ge9e5ujwgetktms/i3d_torchscript.pt"
I3D_SIZE = 224  # the I3D's input resolution (shorter side resized, then centre-cropped)


class FeatureExtractor(Protocol):
    """Maps a batch to one feature vector per item: (N, D) float.

    An image extractor (FID) takes frames (N, 3, H, W); a video extractor (FVD) takes videos (N, 3, F, H, W); both
    float in [0, 1], any size (the extractor resizes as its network needs).
    """

    def __call__(self, batch: torch.Tensor) -> torch.Tensor: ...


def _load_torchscript(path: str | os.PathLike, name: str, file_name: str, url: str) -> torch.jit.ScriptModule:
    path = Path(path)
    if path.is_dir():
        path = path / file_name
    if not path.is_file():
        raise FileNotFoundError(
            f"{name} weights not found at {path}: download {file_name} from {url} on a machine with internet and pass "
            "its path (nothing downloads here)"
        )
    return torch.jit.load(str(path), map_location="cpu").eval()


class InceptionFeatures:
    """FID features: the TF-FID Inception v3's 2048-d pool features (it resizes to 299 x 299 inside)."""

    def __init__(self, module: torch.jit.ScriptModule) -> None:
        self.module = module

    @torch.no_grad()
    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        return self.module(batch * 255.0, return_features=True)  # takes (N, 3, H, W) in [0, 255]


class I3DFeatures:
    """FVD features: the Kinetics-400 I3D's logits, on videos resized (shorter side) and centre-cropped to 224 and
    scaled to [-1, 1], as StyleGAN-V's FVD feeds it."""

    def __init__(self, module: torch.jit.ScriptModule) -> None:
        self.module = module

    @torch.no_grad()
    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        batch_size, channels, frames, height, width = batch.shape
        scale = I3D_SIZE / min(height, width)
        size = (max(I3D_SIZE, math.ceil(height * scale)), max(I3D_SIZE, math.ceil(width * scale)))
        flat = batch.permute(0, 2, 1, 3, 4).reshape(batch_size * frames, channels, height, width)  # (N*F, 3, H, W)
        flat = F.interpolate(flat, size=size, mode="bilinear", align_corners=False)  # (N*F, 3, H', W')
        top, left = (size[0] - I3D_SIZE) // 2, (size[1] - I3D_SIZE) // 2
        flat = flat[:, :, top : top + I3D_SIZE, left : left + I3D_SIZE]  # (N*F, 3, 224, 224)
        videos = flat.reshape(batch_size, frames, channels, I3D_SIZE, I3D_SIZE).permute(0, 2, 1, 3, 4)  # (N, 3, F, ..)
        return self.module(videos * 2.0 - 1.0, rescale=False, resize=False, return_features=True)


def load_inception(path: str | os.PathLike) -> InceptionFeatures:
    """The FID extractor from ``inception-2015-12-05.pt`` (a file, or a folder holding it)."""
    return InceptionFeatures(_load_torchscript(path, "Inception (FID)", INCEPTION_FILE, INCEPTION_URL))


def load_i3d(path: str | os.PathLike) -> I3DFeatures:
    """The FVD extractor from ``i3d_torchscript.pt`` (a file, or a folder holding it)."""
    return I3DFeatures(_load_torchscript(path, "I3D (FVD)", I3D_FILE, I3D_URL))


def gaussian_fit(features: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and unbiased covariance (D, D) of (N, D) features, in float64."""
    features = np.asarray(features.detach().cpu() if isinstance(features, torch.Tensor) else features, np.float64)
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"features must be (N, D) with N >= 2 items; got shape {features.shape}")
    return features.mean(axis=0), np.cov(features, rowvar=False).reshape(features.shape[1], features.shape[1])


def frechet_distance_from_stats(mu_a: np.ndarray, cov_a: np.ndarray, mu_b: np.ndarray, cov_b: np.ndarray) -> float:
    """Fréchet distance between N(mu_a, cov_a) and N(mu_b, cov_b).

    ``tr (S_a S_b)^(1/2)`` is computed as the sum of square roots of the eigenvalues of the symmetric
    ``S_a^(1/2) S_b S_a^(1/2)`` (same eigenvalues as ``S_a S_b``), by ``eigh``: exact for covariances, which are
    symmetric positive semi-definite, with no complex round-off to discard, unlike a general ``sqrtm`` of the
    non-symmetric product; and scipy is no dependency of this library.
    """
    if mu_a.shape != mu_b.shape or cov_a.shape != cov_b.shape or cov_a.shape != (mu_a.size, mu_a.size):
        raise ValueError(
            f"mismatched statistics: means {mu_a.shape}, {mu_b.shape}; covariances {cov_a.shape}, {cov_b.shape}"
        )
    eigenvalues, eigenvectors = np.linalg.eigh(cov_a)
    sqrt_a = (eigenvectors * np.sqrt(np.clip(eigenvalues, 0.0, None))) @ eigenvectors.T  # (D, D)
    middle = sqrt_a @ cov_b @ sqrt_a  # (D, D), symmetric up to round-off
    trace_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0.0, None)).sum()
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2.0 * trace_sqrt)


def frechet_distance(features_a: np.ndarray | torch.Tensor, features_b: np.ndarray | torch.Tensor) -> float:
    """Fréchet distance between Gaussian fits of two (N, D) feature sets."""
    return frechet_distance_from_stats(*gaussian_fit(features_a), *gaussian_fit(features_b))


def extract_features(items: torch.Tensor, extractor: FeatureExtractor, batch_size: int) -> np.ndarray:
    """(N, ...) extractor-layout items -> (N, D) float64 features, ``batch_size`` items at a time."""
    with torch.no_grad():
        chunks = [extractor(items[start : start + batch_size]) for start in range(0, items.shape[0], batch_size)]
    features = torch.cat([chunk.reshape(chunk.shape[0], -1) for chunk in chunks])  # (N, D)
    return features.double().cpu().numpy()


def fid(generated, real, extractor: FeatureExtractor, batch_size: int = 32) -> float:
    """FID between two sets of frames (N, H, W, 3) — e.g. every frame of every clip, stacked — uint8 or float in
    [0, 1]; ``extractor`` an image ``FeatureExtractor`` such as ``load_inception(path)``."""
    sets = []
    for name, frames in (("generated", generated), ("real", real)):
        frames = torch.from_numpy(to_unit_float(frames, name, "(N, H, W, 3)"))
        sets.append(extract_features(frames.permute(0, 3, 1, 2), extractor, batch_size))  # (N, 3, H, W) in
    return frechet_distance(*sets)


def fvd(generated, real, extractor: FeatureExtractor, batch_size: int = 8) -> float:
    """FVD between two sets of videos (N, F, H, W, 3), uint8 or float in [0, 1]; ``extractor`` a video
    ``FeatureExtractor`` such as ``load_i3d(path)`` (FVD is usually reported on 16-frame clips)."""
    sets = []
    for name, videos in (("generated", generated), ("real", real)):
        videos = torch.from_numpy(to_unit_float(videos, name, "(N, F, H, W, 3)"))
        sets.append(extract_features(videos.permute(0, 4, 1, 2, 3), extractor, batch_size))  # (N, 3, F, H, W) in
    return frechet_distance(*sets)
