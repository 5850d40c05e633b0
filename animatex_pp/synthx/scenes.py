"""Backgrounds: a textured scene larger than the frame, seen through a camera that is still, drifts or zooms.

Motion is the motion of the *content* on screen, in the convention of `animatex_pp.eval.motion`: "left" moves the
background toward smaller x, "up" toward smaller y, "zoom_in" grows it about the frame centre. A camera's rate is
constant over the clip, in pixels per frame (drifts) or scale per frame (zooms), so the ground truth is two
numbers. The scene is drawn once per clip at `DENSITY` pixels per frame pixel and every frame is an anti-aliased
resample of the window the camera sees, so sub-pixel motion is exact and textures never shimmer.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from animatex_pp.io.frames import to_unit
from animatex_pp.synthx.draw import SceneObject
from animatex_pp.synthx.textures import OBJECT_LABELS

__all__ = ["CAMERA_LABELS", "OBJECT_COLOURS", "Camera", "background_frames", "sample_camera", "sample_objects"]

CAMERA_LABELS = ("still", "left", "right", "up", "down", "zoom_in", "zoom_out")
DIRECTIONS = {"left": (-1.0, 0.0), "right": (1.0, 0.0), "up": (0.0, -1.0), "down": (0.0, 1.0)}
# Drift rates in frame widths per frame, zoom rates as log scale per frame; slow and fast are disjoint, so a
# caption's speed word can be checked against the measured rate.
DRIFT_RATES = {"slow": (0.010, 0.016), "fast": (0.025, 0.040)}
ZOOM_RATES = {"slow": (0.006, 0.010), "fast": (0.015, 0.022)}
DENSITY = 2
# Colour-noise octaves of a scene: (cell size in frame widths, strength in 0-255 levels).
NOISE_OCTAVES = ((1 / 6, 40.0), (1 / 10, 16.0))
OBJECT_COLOURS = {"red": (0.85, 0.12, 0.1), "blue": (0.1, 0.25, 0.9), "yellow": (0.95, 0.85, 0.1),
                  "white": (0.97, 0.97, 0.97), "black": (0.05, 0.05, 0.05)}  # fmt: skip


@dataclass(frozen=True)
class Camera:
    """Content motion: `label` (one of CAMERA_LABELS), `speed` ("slow", "fast", or "none" when still), and the
    constant per-frame rates `dx`, `dy` (pixels) and `zoom` (scale)."""

    label: str
    speed: str
    dx: float = 0.0
    dy: float = 0.0
    zoom: float = 1.0

    def shift(self, frames: int) -> np.ndarray:
        """Content displacement of frame t from frame 0, pixels: (F, 2)."""
        return np.arange(frames)[:, None] * np.array([self.dx, self.dy])

    def scale(self, frames: int) -> np.ndarray:
        """Content scale of frame t relative to frame 0, about the frame centre: (F,)."""
        return self.zoom ** np.arange(frames, dtype=np.float64)

    def to_dict(self) -> dict:
        return {"label": self.label, "speed": self.speed, "dx": round(self.dx, 6), "dy": round(self.dy, 6),
                "zoom": round(self.zoom, 6)}  # fmt: skip


def sample_camera(label: str, size: int, rng: np.random.Generator) -> Camera:
    """A camera moving as `label` says, slow or fast at random."""
    if label == "still":
        return Camera("still", "none")
    speed = str(rng.choice(["slow", "fast"]))
    if label in DIRECTIONS:
        rate = float(rng.uniform(*DRIFT_RATES[speed])) * size
        ux, uy = DIRECTIONS[label]
        return Camera(label, speed, dx=ux * rate, dy=uy * rate)
    log_rate = float(rng.uniform(*ZOOM_RATES[speed]))
    return Camera(label, speed, zoom=float(np.exp(log_rate if label == "zoom_in" else -log_rate)))


def _colour(rng: np.random.Generator) -> tuple[int, int, int]:
    rgb = colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0.2, 0.8), rng.uniform(0.35, 0.95))
    return tuple(int(round(255 * c)) for c in rgb)


def _noise(rng: np.random.Generator, width: int, height: int, cell: float) -> np.ndarray:
    """Smooth value noise in [-1, 1], (height, width): a random grid of `cell`-pixel spacing, bicubically enlarged."""
    grid = rng.uniform(-1, 1, size=(max(2, int(height / cell) + 2), max(2, int(width / cell) + 2))).astype(np.float32)
    image = Image.fromarray(grid, mode="F").resize((width, height), Image.Resampling.BICUBIC)
    return np.asarray(image)


def _scene(rng: np.random.Generator, width: int, height: int, frame_pixels: float) -> Image.Image:
    """A textured scene (RGB image): sky and ground gradients, two octaves of colour noise, scattered shapes.

    `frame_pixels` is the size of one frame in scene pixels, so shapes and noise have one scale at every clip size.
    """
    horizon = rng.uniform(0.35, 0.75) * height
    rows = np.arange(height, dtype=np.float32)[:, None, None]  # (H, 1, 1)
    sky = np.array([_colour(rng), _colour(rng)], dtype=np.float32)
    ground = np.array([_colour(rng), _colour(rng)], dtype=np.float32)
    above = sky[0] + (sky[1] - sky[0]) * np.clip(rows / max(horizon, 1), 0, 1)
    below = ground[0] + (ground[1] - ground[0]) * np.clip((rows - horizon) / max(height - horizon, 1), 0, 1)
    image = np.where(rows < horizon, above, below) * np.ones((1, width, 1), dtype=np.float32)  # (H, W, 3)
    for cell, strength in NOISE_OCTAVES:
        cell = cell * frame_pixels
        tint = rng.uniform(0.6, 1.0, size=3).astype(np.float32)
        image += strength * _noise(rng, width, height, cell)[..., None] * tint
    scene = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))
    canvas = ImageDraw.Draw(scene)
    count = int(round(10 * width * height / frame_pixels**2))
    for _ in range(count):
        x, y = rng.uniform(0, width), rng.uniform(0, height)
        r = rng.uniform(0.03, 0.12) * frame_pixels
        kind = rng.integers(3)
        if kind == 0:
            canvas.ellipse((x - r, y - r, x + r, y + r), fill=_colour(rng))
        elif kind == 1:
            canvas.rectangle((x - r, y - r * rng.uniform(0.3, 1.5), x + r, y + r), fill=_colour(rng))
        else:
            canvas.polygon([(x, y - r), (x + r, y + r), (x - r, y + r)], fill=_colour(rng))
    return scene


def background_frames(camera: Camera, frames: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """A new scene seen through `camera`: float32 (F, size, size, 3) in [0, 1]."""
    shift, scale = camera.shift(frames), camera.scale(frames)
    # Frame corners relative to the frame centre, mapped into scene units (frame pixels) at every frame:
    # a scene point q shows at p = centre + scale * q + shift, so q = (p - centre - shift) / scale.
    corners = np.array([[-1.0, -1.0], [1.0, 1.0]]) * size / 2  # (2, 2)
    seen = (corners[None] - shift[:, None]) / scale[:, None, None]  # (F, 2 corners, 2)
    low, high = seen.min(axis=(0, 1)) - 2, seen.max(axis=(0, 1)) + 2
    width, height = (np.ceil((high - low) * DENSITY)).astype(int)
    scene = _scene(rng, int(width), int(height), size * DENSITY)
    out = np.empty((frames, size, size, 3), dtype=np.float32)
    # A still camera sees one view: resample it once and repeat it.
    for t in range(1 if camera.label == "still" else frames):
        left, top = (seen[t, 0] - low) * DENSITY
        right, bottom = (seen[t, 1] - low) * DENSITY
        view = scene.resize((size, size), Image.Resampling.BILINEAR, box=(left, top, right, bottom))
        out[t] = to_unit(np.asarray(view))
    if camera.label == "still":
        out[1:] = out[0]
    return out


def sample_objects(frames: int, size: int, rng: np.random.Generator) -> tuple[list[SceneObject], list[dict]]:
    """Zero to two balls or boxes crossing the frame on their own straight paths, with what a caption says of them."""
    objects, described = [], []
    for label in OBJECT_LABELS[: int(rng.integers(0, len(OBJECT_LABELS) + 1))]:
        direction = str(rng.choice(list(DIRECTIONS)))
        speed = rng.uniform(0.02, 0.035) * size
        velocity = np.array(DIRECTIONS[direction]) * speed
        start = rng.uniform(0.2, 0.8, size=2) * size - velocity * (frames - 1) / 2
        centres = start + np.arange(frames)[:, None] * velocity  # (F, 2)
        kind, colour = str(rng.choice(["ball", "box"])), str(rng.choice(list(OBJECT_COLOURS)))
        objects.append(
            SceneObject(label=label, kind=kind, centres=centres, radius=float(rng.uniform(0.05, 0.08) * size))
        )
        described.append({"kind": kind, "colour": colour, "direction": direction, "label": label})
    return objects, described
