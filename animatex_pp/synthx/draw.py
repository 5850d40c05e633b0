"""Rasterise a placed puppet (and scene objects) into colour, coverage and a per-part label map, anti-aliased.

Shapes are filled with their label value into a label image `SUPERSAMPLE` times the frame size (PIL polygons),
textured there from each pixel's coordinates in its part's frame, and box-filtered down: the colour is
premultiplied by coverage, so compositing over any background gives anti-aliased edges. The label map returned is
the label at each pixel's centre sample, which is what the ground truth keeps (which part covers which pixel).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from animatex_pp.io.frames import unit_to_uint8
from animatex_pp.synthx.puppet import TAIL_SEGMENTS, Skeleton
from animatex_pp.synthx.textures import LABELS, Appearance, shade

__all__ = ["SUPERSAMPLE", "Layer", "SceneObject", "draw"]

SUPERSAMPLE = 4
ARC_VERTICES = 8  # per half circle of a limb's rounded end: smooth at the supersampled size


@dataclass(frozen=True)
class SceneObject:
    """A moving ball or box drawn behind the puppet: `centres` (F, 2) pixels, `radius` pixels, label value."""

    label: int
    kind: str  # "ball" or "box"
    centres: np.ndarray
    radius: float


@dataclass(frozen=True)
class Layer:
    """A clip's foreground: colour premultiplied by coverage (F, H, W, 3) and coverage (F, H, W), float32 in
    [0, 1]; label values (F, H, W) uint8, indices of `textures.LABELS`."""

    colour: np.ndarray
    alpha: np.ndarray
    labels: np.ndarray

    def over(self, background: np.ndarray) -> np.ndarray:
        """Composite over background frames (F, H, W, 3) float in [0, 1] -> uint8 frames."""
        frames = self.colour + (1.0 - self.alpha[..., None]) * background
        return unit_to_uint8(frames)


def _unit(angle: np.ndarray) -> np.ndarray:
    return np.stack([np.cos(angle), np.sin(angle)], axis=-1)  # (..., 2)


_ARC = np.linspace(-np.pi / 2, np.pi / 2, ARC_VERTICES)


def _stadium(a: np.ndarray, b: np.ndarray, radius: float | np.ndarray) -> np.ndarray:
    """Outlines of capsules from a to b, (F, 2) each: (F, 2 * ARC_VERTICES, 2)."""
    angle = np.arctan2(b[:, 1] - a[:, 1], b[:, 0] - a[:, 0])[:, None]  # (F, 1)
    radius = np.reshape(radius, (-1, 1, 1))
    tip = b[:, None] + radius * _unit(angle + _ARC)  # (F, V, 2) round end at b
    tail = a[:, None] + radius * _unit(angle + np.pi + _ARC)  # (F, V, 2) round end at a
    return np.concatenate([tip, tail], axis=1)


def _ellipse(centre: np.ndarray, across, along, angle, vertices: int = 24) -> np.ndarray:
    """Outlines of ellipses, centres (F, 2), whose `along` radius points at `angle`: (F, vertices, 2)."""
    t = np.linspace(0, 2 * np.pi, vertices, endpoint=False)
    along, across, angle = (np.reshape(np.broadcast_to(x, len(centre)), (-1, 1)) for x in (along, across, angle))
    local_x, local_y = along * np.cos(t), across * np.sin(t)  # (F, V) in the ellipse's own frame
    cos, sin = np.cos(angle), np.sin(angle)
    return centre[:, None] + np.stack([local_x * cos - local_y * sin, local_x * sin + local_y * cos], axis=-1)


def _polygon(*corners: np.ndarray) -> np.ndarray:
    return np.stack(corners, axis=1)  # corners (F, 2) each -> (F, corners, 2)


def _puppet_shapes(skeleton: Skeleton) -> list[tuple[str, np.ndarray, np.ndarray | None]]:
    """(part, outlines (F, V, 2) in frame pixels, frames it shows on or None for all), back to front."""
    body, unit, parts, p, axis = skeleton.body, skeleton.unit, skeleton.body.parts, skeleton.points, skeleton.axes
    facing = skeleton.facing[:, None]  # (F, 1)
    limb, radius = body["limb_width"] * unit, body["head"] * unit
    up, head_side = _unit(axis["head"]), _unit(axis["head"] + np.pi / 2)
    shapes = []
    if "tail" in parts:
        for k in range(TAIL_SEGMENTS):
            width = limb * (1.2 - 0.7 * k / TAIL_SEGMENTS)
            shapes.append(("tail", _stadium(p[f"tail_{k}"], p[f"tail_{k + 1}"], width), None))
    if "ears" in parts:
        for sign in (-1, 1):
            base = p["head_centre"] + 0.6 * radius * up + sign * 0.55 * radius * facing * head_side
            tip = base + body["ears"] * radius * up + sign * 0.25 * radius * head_side
            half = 0.3 * radius * head_side
            shapes.append(("ears", _polygon(base - half, base + half, tip), None))
    for side in ("r", "l"):
        if f"{side}_thigh" in parts:
            shapes.append((f"{side}_thigh", _stadium(p[f"{side}_hip"], p[f"{side}_knee"], 1.15 * limb), None))
            shapes.append((f"{side}_shin", _stadium(p[f"{side}_knee"], p[f"{side}_ankle"], 1.05 * limb), None))
            shapes.append((f"{side}_shin", _ellipse(p[f"{side}_ankle"], 1.4 * limb, 1.4 * limb, 0.0), None))  # foot
    if "fin" in parts:
        hips = (body["hips"] + body["limb_width"]) * unit
        across_mid, across_tip = _unit(axis["fin"] + np.pi / 2), _unit(axis["fin_tip"] + np.pi / 2)
        side, tip, mid = _unit(axis["torso"] - np.pi / 2), p["fin_tip"], p["fin_mid"]
        outline = _polygon(p["pelvis"] - hips * side, p["pelvis"] + hips * side, mid + 0.7 * hips * across_mid,
                           tip + 0.2 * hips * across_tip, tip - 0.2 * hips * across_tip,
                           mid - 0.7 * hips * across_mid)  # fmt: skip
        shapes.append(("fin", outline, None))
        fan = 0.4 * body["shin"] * unit
        shapes.append(("fin", _polygon(tip, tip + fan * _unit(axis["fin_tip"] + 0.6),
                                       tip + fan * _unit(axis["fin_tip"] - 0.6)), None))  # fmt: skip
    hip_out = {}
    for side in ("r", "l"):
        outward = p[f"{side}_hip"] - p["pelvis"]
        length = np.maximum(np.linalg.norm(outward, axis=-1, keepdims=True), 1e-6)  # (F, 1)
        hip_out[side] = p[f"{side}_hip"] + outward / length * 1.3 * limb
    shapes.append(("torso", _polygon(p["r_shoulder"], p["l_shoulder"], hip_out["l"], hip_out["r"]), None))
    shapes.append(("torso", _stadium(p["r_shoulder"], p["l_shoulder"], 1.3 * limb), None))
    shapes.append(("neck", _stadium(p["neck"], p["head_centre"], body["neck_width"] * unit), None))
    head_width = radius * (0.8 + 0.2 * np.abs(skeleton.facing))
    shapes.append(("head", _ellipse(p["head_centre"], head_width, radius, axis["head"]), None))
    for side in ("r", "l"):  # eyes only on a puppet facing the camera
        eye = _ellipse(p[f"{side}_eye"], 0.14 * radius, 0.14 * radius, 0.0, 12)
        shapes.append(("eyes", eye, skeleton.facing > 0))
    for side in ("r", "l"):
        if f"{side}_upper_arm" in parts:
            shapes.append((f"{side}_upper_arm", _stadium(p[f"{side}_shoulder"], p[f"{side}_elbow"], limb), None))
            shapes.append((f"{side}_forearm", _stadium(p[f"{side}_elbow"], p[f"{side}_wrist"], 0.9 * limb), None))
            shapes.append((f"{side}_forearm", _ellipse(p[f"{side}_wrist"], 1.3 * limb, 1.3 * limb, 0.0), None))  # hand
    return shapes


# The point each part's texture frame starts from (its axis is the part's axis angle).
TEXTURE_ORIGINS = {"torso": "neck", "neck": "neck", "head": "head_centre", "eyes": "head_centre",
                   "ears": "head_centre", "r_upper_arm": "r_shoulder", "r_forearm": "r_elbow",
                   "l_upper_arm": "l_shoulder", "l_forearm": "l_elbow", "r_thigh": "r_hip", "r_shin": "r_knee",
                   "l_thigh": "l_hip", "l_shin": "l_knee", "tail": "pelvis", "fin": "pelvis"}  # fmt: skip


def draw(
    skeleton: Skeleton | None,
    appearance: Appearance,
    size: int,
    num_frames: int,
    objects: tuple[SceneObject, ...] = (),
) -> Layer:
    """Draw a puppet placed in a `size` x `size` frame (None: objects only) and any objects, frame by frame."""
    ss = size * SUPERSAMPLE
    colour = np.zeros((num_frames, size * size, 3), dtype=np.float32)
    alpha = np.zeros((num_frames, size * size), dtype=np.float32)
    labels = np.zeros((num_frames, size, size), dtype=np.uint8)
    # Texture frames per label and frame: origin (F, labels, 2) pixels, axis angle (F, labels).
    origin, axis = np.zeros((num_frames, len(LABELS), 2)), np.zeros((num_frames, len(LABELS)))
    for item in objects:
        origin[:, item.label] = item.centres
    shapes = []
    unit = size / 4.0
    if skeleton is not None:
        unit = skeleton.unit
        shapes = [
            (LABELS.index(part), outline * SUPERSAMPLE, shown) for part, outline, shown in _puppet_shapes(skeleton)
        ]
        for part, joint in TEXTURE_ORIGINS.items():
            if part in skeleton.axes:
                origin[:, LABELS.index(part)] = skeleton.points[joint]
                axis[:, LABELS.index(part)] = skeleton.axes[part]
    for frame in range(num_frames):
        image = Image.new("L", (ss, ss))
        canvas = ImageDraw.Draw(image)
        for item in objects:
            (x, y), r = item.centres[frame] * SUPERSAMPLE, item.radius * SUPERSAMPLE
            (canvas.ellipse if item.kind == "ball" else canvas.rectangle)(
                (x - r, y - r, x + r, y + r), fill=item.label
            )
        for label, outlines, shown in shapes:
            if shown is None or shown[frame]:
                canvas.polygon(outlines[frame].ravel().tolist(), fill=label)
        fine = np.asarray(image)  # (ss, ss) label values
        covered = np.flatnonzero(fine)
        row, column = np.divmod(covered, ss)
        part = fine.reshape(-1)[covered].astype(np.int64)
        # Sample centres in frame pixels, then in each sample's part frame (body units).
        dx = (column + 0.5) / SUPERSAMPLE - origin[frame, part, 0]
        dy = (row + 0.5) / SUPERSAMPLE - origin[frame, part, 1]
        cos, sin = np.cos(axis[frame, part]), np.sin(axis[frame, part])
        rgb = shade(appearance, part, (dx * cos + dy * sin) / unit, (dy * cos - dx * sin) / unit)
        # Box filter: each sample adds 1 / SUPERSAMPLE^2 of itself to the frame pixel it falls in.
        pixel = (row // SUPERSAMPLE) * size + column // SUPERSAMPLE
        weight = 1.0 / SUPERSAMPLE**2
        alpha[frame] = np.bincount(pixel, minlength=size * size) * weight
        for channel in range(3):
            colour[frame, :, channel] = np.bincount(pixel, weights=rgb[:, channel], minlength=size * size) * weight
        labels[frame] = fine[SUPERSAMPLE // 2 :: SUPERSAMPLE, SUPERSAMPLE // 2 :: SUPERSAMPLE]
    # (F, H * W, ...) -> (F, H, W, ...)
    return Layer(colour=colour.reshape(num_frames, size, size, 3), alpha=alpha.reshape(num_frames, size, size),
                 labels=labels)  # fmt: skip
