"""Frames with a known motion: a smooth periodic noise texture shifted (np.roll, or exactly by a Fourier phase ramp
for sub-pixel amounts) or zoomed about the centre by bilinear resampling with a known scale."""

from __future__ import annotations

import numpy as np


def smooth_texture(size: int, seed: int, sigma: float = 2.0) -> np.ndarray:
    """(size, size) periodic noise in [0, 1], low-passed by a Gaussian of ``sigma`` pixels (so it resamples well)."""
    noise = np.random.default_rng(seed).standard_normal((size, size))
    freq = np.fft.fftfreq(size)
    low_pass = np.exp(-2.0 * np.pi**2 * sigma**2 * (freq[:, None] ** 2 + freq[None, :] ** 2))
    texture = np.fft.ifft2(np.fft.fft2(noise) * low_pass).real
    return (texture - texture.min()) / (texture.max() - texture.min())


def fourier_shift(image: np.ndarray, dy: float, dx: float) -> np.ndarray:
    """``image`` moved by (dy, dx) pixels, exactly for a periodic band-limited image (same sign as np.roll)."""
    height, width = image.shape
    ramp = np.exp(-2j * np.pi * (np.fft.fftfreq(height)[:, None] * dy + np.fft.fftfreq(width)[None, :] * dx))
    return np.fft.ifft2(np.fft.fft2(image) * ramp).real


def zoom_about_centre(texture: np.ndarray, scale: float, size: int) -> np.ndarray:
    """(size, size) centre crop of ``texture`` magnified by ``scale`` about its centre (bilinear)."""
    centre = (texture.shape[0] - 1) / 2
    offsets = np.arange(size) - (size - 1) / 2
    coords = centre + offsets / scale  # a pixel at offset r shows the texture at offset r / scale
    y0 = np.floor(coords).astype(int)
    t = coords - y0
    rows = texture[y0] * (1 - t)[:, None] + texture[y0 + 1] * t[:, None]  # (size, W) interpolated along y
    return rows[:, y0] * (1 - t)[None, :] + rows[:, y0 + 1] * t[None, :]  # (size, size)


def to_rgb_uint8(gray_frames: np.ndarray) -> np.ndarray:
    """(F, H, W) in [0, 1] -> (F, H, W, 3) uint8, the layout the estimator takes."""
    return np.repeat((np.clip(gray_frames, 0, 1) * 255).round().astype(np.uint8)[..., None], 3, axis=-1)
