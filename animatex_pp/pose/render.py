"""Draw pose sequences as DWPose/OpenPose skeleton images, at any resolution, without OpenCV.

As DWPose draws for Animate-X++: the 17 body limbs and the two feet (ankle to toe midpoint) as filled ellipses of
half-width `stick_width`, dimmed to 60%; then the 18 body points and 2 toe midpoints as discs of radius
`point_radius`; then the hands (rainbow bones 2 px wide, blue points); never the face. A limb is drawn when both its
ends are detected. Geometry is computed for all frames at once with numpy; PIL only fills the shapes.

Colour order. The official data pipeline draws the OpenPose palette into an RGB canvas, saves it with
`cv2.imwrite` (which takes the canvas as BGR) and loads it back with PIL, so the released Animate-X++ (and
UniAnimate) checkpoints were trained on skeletons whose red and blue are swapped. `color_order="bgr"` (the default)
reproduces those pixels, which is what the pipeline must feed released weights; `"rgb"` gives the palette as
OpenPose and ControlNet show it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Literal

import numpy as np
from PIL import Image, ImageDraw
from tqdm.auto import tqdm

from animatex_pp.pose import skeleton as sk
from animatex_pp.pose.sequence import PoseSequence

if TYPE_CHECKING:
    import torch

__all__ = ["MAX_SIDE", "iter_render", "render"]

ELLIPSE_VERTICES = 32  # enough for a smooth limb outline at any stick width used in practice
LIMB_DIM = 0.6  # DWPose dims the limbs (not the points) to 60%
MAX_SIDE = 8192  # larger frames are a typo, not a video: 81 such frames would need 16 GB


def _check(pose: PoseSequence, height: int, width: int, stick_width: int, point_radius: int, color_order: str):
    if not isinstance(pose, PoseSequence):
        raise TypeError(f"render draws a PoseSequence, got {type(pose).__name__}")
    for name, value in (("height", height), ("width", width), ("stick_width", stick_width)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if max(height, width) > MAX_SIDE:
        raise ValueError(f"render draws at most {MAX_SIDE} pixels a side, got {height}x{width} (HxW)")
    if isinstance(point_radius, bool) or not isinstance(point_radius, (int, np.integer)) or point_radius < 0:
        raise ValueError(f"point_radius must be an integer >= 0, got {point_radius!r}")
    if color_order not in ("bgr", "rgb"):
        raise ValueError(f"color_order must be 'bgr' (as the released checkpoints saw) or 'rgb', got {color_order!r}")


def _body_with_toes(pose: PoseSequence, height: int, width: int, feet: bool) -> tuple[np.ndarray, np.ndarray]:
    """The 20 points DWPose draws, in pixels (F, 20, 2), and whether each is detected (F, 20)."""
    num_frames = len(pose)
    points = np.zeros((num_frames, 20, 2))
    visible = np.zeros((num_frames, 20), dtype=bool)
    points[:, : sk.NUM_BODY] = pose.body
    visible[:, : sk.NUM_BODY] = pose.body_conf >= sk.CONF_THRESHOLD
    if feet and pose.feet is not None:
        for slot, (big, small) in enumerate(sk.TOE_PAIRS):
            points[:, sk.NUM_BODY + slot] = (pose.feet[:, big] + pose.feet[:, small]) / 2
            visible[:, sk.NUM_BODY + slot] = (pose.feet_conf[:, [big, small]] >= sk.CONF_THRESHOLD).all(axis=1)
    return points * (width, height), visible


def _limb_polygons(points: np.ndarray, stick_width: int) -> np.ndarray:
    """Ellipse outlines of the 19 limbs: (F, 19, ELLIPSE_VERTICES, 2) pixels."""
    limbs = np.array(sk.BODY_LIMBS + sk.FOOT_LIMBS)  # (19, 2)
    start, end = points[:, limbs[:, 0]], points[:, limbs[:, 1]]  # (F, 19, 2) each
    center = (start + end) / 2
    delta = end - start
    half_length = np.linalg.norm(delta, axis=-1) / 2  # (F, 19)
    angle = np.arctan2(delta[..., 1], delta[..., 0])
    t = np.linspace(0, 2 * np.pi, ELLIPSE_VERTICES, endpoint=False)
    along = half_length[..., None] * np.cos(t)  # (F, 19, V)
    across = stick_width * np.sin(t)  # (V,)
    cos, sin = np.cos(angle)[..., None], np.sin(angle)[..., None]
    outline = np.stack([along * cos - across * sin, along * sin + across * cos], axis=-1)  # (F, 19, V, 2)
    return center[:, :, None, :] + outline


def iter_render(
    pose: PoseSequence,
    height: int,
    width: int,
    *,
    color_order: Literal["bgr", "rgb"] = "bgr",
    stick_width: int = 4,
    point_radius: int = 4,
    hands: bool = True,
    feet: bool = True,
    progress: bool = False,
) -> Iterator[np.ndarray]:
    """Yield one uint8 frame (height, width, 3) per pose frame, drawn as `render` describes (options there)."""
    _check(pose, height, width, stick_width, point_radius, color_order)
    body, body_visible = _body_with_toes(pose, height, width, feet)
    limbs = np.array(sk.BODY_LIMBS + sk.FOOT_LIMBS)
    limb_visible = body_visible[:, limbs[:, 0]] & body_visible[:, limbs[:, 1]]  # (F, 19)
    polygons = _limb_polygons(body, stick_width)
    dimmed_limb_colors = [tuple(c) for c in (sk.LIMB_COLORS * LIMB_DIM).astype(np.uint8).tolist()]
    point_colors = [tuple(c) for c in sk.POINT_COLORS.tolist()]
    draw_hands = hands and pose.hands is not None
    if draw_hands:
        hand_points = pose.hands * (width, height)  # (F, 2, 21, 2) pixels
        hand_visible = pose.hands_conf >= sk.CONF_THRESHOLD
        edges = np.array(sk.HAND_EDGES)
        edge_visible = hand_visible[..., edges[:, 0]] & hand_visible[..., edges[:, 1]]  # (F, 2, 20)
        edge_colors = [tuple(c) for c in sk.HAND_EDGE_COLORS.tolist()]
        hand_point_color = tuple(sk.HAND_POINT_COLOR.tolist())
    # cv2.circle centres on the truncated pixel; keep that so points land where DWPose puts them.
    body_pixels = np.trunc(body).astype(np.int64)

    # A generator inside, so that the checks above run when iter_render is called, not at the first frame.
    def frames() -> Iterator[np.ndarray]:
        for frame in tqdm(range(len(pose)), desc="render pose", unit="frame", disable=not progress):
            image = Image.new("RGB", (width, height))
            draw = ImageDraw.Draw(image)
            for limb in np.flatnonzero(limb_visible[frame]):
                draw.polygon([tuple(p) for p in polygons[frame, limb].tolist()], fill=dimmed_limb_colors[limb])
            if point_radius > 0:
                for point in np.flatnonzero(body_visible[frame]):
                    x, y = body_pixels[frame, point]
                    draw.ellipse((x - point_radius, y - point_radius, x + point_radius, y + point_radius),
                                 fill=point_colors[point])  # fmt: skip
            if draw_hands:
                _draw_hands(draw, hand_points[frame], hand_visible[frame], edge_visible[frame], edge_colors,
                            hand_point_color, point_radius)  # fmt: skip
            # Copies either way, so callers get writable arrays they own.
            yield np.ascontiguousarray(np.asarray(image)[..., ::-1]) if color_order == "bgr" else np.array(image)

    return frames()


def _draw_hands(draw, points, visible, edge_visible, edge_colors, point_color, point_radius) -> None:
    """One frame's two hands: points (2, 21, 2) pixels, visible (2, 21), edge_visible (2, 20)."""
    pixels = np.trunc(points).astype(np.int64).tolist()
    for side in range(2):
        for edge in np.flatnonzero(edge_visible[side]):
            a, b = sk.HAND_EDGES[edge]
            draw.line((*pixels[side][a], *pixels[side][b]), fill=edge_colors[edge], width=2)
        if point_radius > 0:
            for point in np.flatnonzero(visible[side]):
                x, y = pixels[side][point]
                draw.ellipse(
                    (x - point_radius, y - point_radius, x + point_radius, y + point_radius), fill=point_color
                )


def render(
    pose: PoseSequence, height: int, width: int, output: Literal["np", "pt"] = "np", **options
) -> np.ndarray | torch.Tensor:
    """Draw every frame of `pose` as a skeleton on black at `height` x `width` pixels.

    Keypoints are normalised, so any size works (the pose is stretched if the aspect ratio differs from the
    image it was measured on, as the official pipeline's resize of the drawn skeletons does).

    Returns `output="np"`: uint8 (F, height, width, 3); `output="pt"`: the pipeline's pose video, a float32 torch
    tensor (3, F, height, width) in [0, 1].

    Options (keyword), as `iter_render` takes them: `color_order` "bgr" (default, what the released checkpoints
    saw; see the module docstring) or "rgb"; `stick_width`, the limbs' half-width, and `point_radius`, in pixels
    (DWPose: 4 and 4, drawn at the video's size); `hands` and `feet` (default True) to draw those parts when the
    pose has them; `progress` for a progress bar.
    """
    if output not in ("np", "pt"):
        raise ValueError(f"output must be 'np' (uint8 frames) or 'pt' (float tensor (3, F, H, W)), got {output!r}")
    # Each frame goes straight into its slot of the output, so the video is held once (no list of frames to stack);
    # for the tensor a frame-sized permute is also much faster than permuting the whole video.
    frames = iter_render(pose, height, width, **options)
    if output == "np":
        video = np.empty((len(pose), height, width, 3), dtype=np.uint8)
        for index, frame in enumerate(frames):
            video[index] = frame
        return video
    import torch

    video = torch.empty((3, len(pose), height, width), dtype=torch.float32)
    for index, frame in enumerate(frames):
        video[:, index] = torch.from_numpy(frame).permute(2, 0, 1)  # (H, W, 3) -> (3, H, W)
    return video.div_(255.0)
