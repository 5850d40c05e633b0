"""Side-by-side previews of a generation: reference | pose | output, as an MP4 and as a PNG contact sheet.

`clip_sheet` is the one contact-sheet layout (frames in columns, named rows, the references in the first column):
`animatex-pp generate`'s preview, the trainer's validation sheet and the evaluation's sheet all draw with it.

Also the small converters that bring every image and video format the library accepts (PIL; uint8, uint16 or float
arrays, channels-last; uint8 or float tensors, channels-first; floats in [0, 1]) to uint8 arrays, which the pipeline
uses for its inputs as well. PIL images go through `animatex_pp.io.image.to_rgb` (16-bit levels scaled,
transparency composited over white) and uint16 arrays are scaled (65535 -> 255), never clipped.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import PIL.ImageDraw
import PIL.ImageFont
import torch

from animatex_pp.io.files import atomic_output
from animatex_pp.io.frames import unit_to_uint8
from animatex_pp.io.image import to_rgb
from animatex_pp.io.video import write_video

# Cells of a contact sheet are enlarged to at least this height, so tiny test outputs stay legible.
MIN_SHEET_CELL_HEIGHT = 128
LABEL_HEIGHT = 14
# The left margin naming a sheet's rows, and the width of one character of PIL's default font (titles are cut to
# their sheet's width).
ROW_LABEL_WIDTH = 80
TITLE_CHAR_WIDTH = 6
# Float pixels may overshoot [0, 1] by rounding error (resampling, a decoder's last layer); less than half a uint8
# step still lands on 0 or 255, so only larger excursions are range errors.
FLOAT_RANGE_TOLERANCE = 0.5 / 255
# uint16 levels to uint8: 65535 -> 255 and 257 * k -> k.
UINT16_PER_UINT8 = 257.0


def as_uint8_image(image) -> np.ndarray:
    """An image -> uint8 (H, W, 3).

    Accepted: a PIL image (any mode), a uint8, uint16 or float (in [0, 1]) array (H, W, 3), or a uint8 or float
    (in [0, 1]) tensor (3, H, W). Arrays are channels-last, tensors channels-first.
    """
    if isinstance(image, PIL.Image.Image):
        return np.asarray(to_rgb(image)).copy()
    if isinstance(image, torch.Tensor):
        if image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f"an image tensor must be (3, H, W), got shape {tuple(image.shape)}")
        # (3, H, W) -> (H, W, 3)
        image = _tensor_to_numpy(image).transpose(1, 2, 0)
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"an image array must be (H, W, 3), got shape {image.shape}")
    return _to_uint8(image)


def as_uint8_video(video) -> np.ndarray:
    """A video -> uint8 (F, H, W, 3).

    Accepted: a list of images (anything `as_uint8_image` takes), a uint8 or float (in [0, 1]) array (F, H, W, 3),
    or a uint8 or float (in [0, 1]) tensor (3, F, H, W) (the pose-video layout the transformer takes).
    """
    if isinstance(video, (list, tuple)):
        if not video:
            raise ValueError("a video needs at least one frame, got an empty list")
        return np.stack([as_uint8_image(frame) for frame in video])
    if isinstance(video, torch.Tensor):
        if video.ndim != 4 or video.shape[0] != 3:
            raise ValueError(f"a video tensor must be (3, F, H, W), got shape {tuple(video.shape)}")
        # (3, F, H, W) -> (F, H, W, 3)
        video = _tensor_to_numpy(video).transpose(1, 2, 3, 0)
    video = np.asarray(video)
    if video.ndim != 4 or video.shape[-1] != 3:
        raise ValueError(f"a video array must be (F, H, W, 3), got shape {video.shape}")
    if video.shape[0] == 0:
        raise ValueError("a video needs at least one frame, got 0")
    return _to_uint8(video)


def _tensor_to_numpy(tensor: torch.Tensor) -> np.ndarray:
    tensor = tensor.detach().cpu()
    # uint8 stays uint8; other dtypes (bfloat16 has no numpy type) become float32.
    return tensor.numpy() if tensor.dtype == torch.uint8 else tensor.float().numpy()


def _to_uint8(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.uint16:
        return (array / UINT16_PER_UINT8).round().astype(np.uint8)
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"pixels must be uint8, uint16 or float in [0, 1], got dtype {array.dtype}")
    low, high = float(array.min()), float(array.max())
    # Written so that NaN fails it too.
    if not (low >= -FLOAT_RANGE_TOLERANCE and high <= 1.0 + FLOAT_RANGE_TOLERANCE):
        raise ValueError(
            f"float pixels must be in [0, 1], got values from {low:g} to {high:g}: divide uint8-range values "
            "(0..255) by 255, map [-1, 1] values with (x + 1) / 2"
        )
    return unit_to_uint8(array)


def _resize(image: np.ndarray, height: int, width: int, resample=PIL.Image.BILINEAR) -> np.ndarray:
    if image.shape[:2] == (height, width):
        return image
    return np.asarray(PIL.Image.fromarray(image).resize((width, height), resample))


def _panels(reference, pose, output) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Reference (H, W, 3), pose (F, H, W, 3) or None, and output (F, H, W, 3), all uint8 at the output's size."""
    output = as_uint8_video(output)
    num_frames, height, width, _ = output.shape
    reference = _resize(as_uint8_image(reference), height, width)
    if pose is not None:
        pose = as_uint8_video(pose)
        if len(pose) < num_frames:
            raise ValueError(f"the pose video has {len(pose)} frames but the output has {num_frames}")
        pose = np.stack([_resize(frame, height, width) for frame in pose[:num_frames]])
    return reference, pose, output


def preview_frames(reference, pose, output) -> np.ndarray:
    """uint8 (F, H, 3 W, 3): reference, pose and output frame side by side at the output's size (pose=None, as in
    text-image-to-video: reference and output only, (F, H, 2 W, 3))."""
    reference, pose, output = _panels(reference, pose, output)
    # (H, W, 3) -> (F, H, W, 3), a view, not a copy per frame
    references = np.broadcast_to(reference, output.shape)
    panels = [references, output] if pose is None else [references, pose, output]
    # n x (F, H, W, 3) -> (F, H, n W, 3)
    return np.concatenate(panels, axis=2)


def write_preview_video(path: str | os.PathLike, reference, pose, output, fps: float) -> Path:
    """Write reference | pose | output side by side as an H.264 MP4 (atomically, through `write_video`).

    `pose` may be None (reference | output)."""
    return Path(write_video(path, preview_frames(reference, pose, output), fps))


@dataclasses.dataclass(frozen=True)
class SheetRow:
    """One row of a contact sheet: `label` names it, `frames` (F, H, W, 3) fill its columns, `still` (an image, or
    None for a blank cell) fills its first column."""

    label: str
    frames: Any
    still: Any = None


def clip_sheet(
    rows: Sequence[SheetRow], num_columns: int = 8, title: str | None = None, label_rows: bool = False
) -> PIL.Image.Image:
    """The one contact-sheet layout: evenly spaced frames in columns (a strip above names each), one row per
    `SheetRow`, the rows' stills in the first column ("reference"); an optional title strip above and, with
    `label_rows`, a left margin naming the rows. Every cell is drawn at the first row's frame size, scaled up
    (nearest neighbour) to at least `MIN_SHEET_CELL_HEIGHT` pixels high; frames beyond the shortest row's are
    not shown."""
    if not rows:
        raise ValueError("a contact sheet needs at least one row")
    first = as_uint8_video(rows[0].frames)
    _, height, width, _ = first.shape
    videos = [first] + [as_uint8_video(row.frames) for row in rows[1:]]
    num_frames = min(len(video) for video in videos)
    indices = np.unique(np.linspace(0, num_frames - 1, min(num_columns, num_frames)).round().astype(int))
    blank = np.full((height, width, 3), 255, np.uint8)
    stills = [blank if row.still is None else _resize(as_uint8_image(row.still), height, width) for row in rows]
    columns = [("reference", stills)]
    columns += [(f"frame {index}", [_resize(video[index], height, width) for video in videos]) for index in indices]

    scale = max(1, -(-MIN_SHEET_CELL_HEIGHT // height))
    cell_height, cell_width = height * scale, width * scale
    left_margin = ROW_LABEL_WIDTH if label_rows else 0
    top = LABEL_HEIGHT if title is not None else 0
    grid_top = top + LABEL_HEIGHT
    sheet = PIL.Image.new("RGB", (left_margin + len(columns) * cell_width, grid_top + len(rows) * cell_height),
                          "white")  # fmt: skip
    draw = PIL.ImageDraw.Draw(sheet)
    font = PIL.ImageFont.load_default()
    if title is not None:
        draw.text((2, 1), title[: sheet.width // TITLE_CHAR_WIDTH], fill="black", font=font)
    for column, (label, cells) in enumerate(columns):
        left = left_margin + column * cell_width
        draw.text((left + 2, top + 1), label, fill="black", font=font)
        for row, cell in enumerate(cells):
            tile = PIL.Image.fromarray(cell).resize((cell_width, cell_height), PIL.Image.NEAREST)
            sheet.paste(tile, (left, grid_top + row * cell_height))
    if label_rows:
        for row, sheet_row in enumerate(rows):
            draw.text((2, grid_top + row * cell_height + cell_height // 2), sheet_row.label, fill="black", font=font)
    return sheet


def stack_sheets(sheets: Sequence[PIL.Image.Image]) -> PIL.Image.Image:
    """Sheets top to bottom, left-aligned on white (sheets of clips of other sizes are other widths)."""
    stacked = PIL.Image.new("RGB", (max(sheet.width for sheet in sheets), sum(sheet.height for sheet in sheets)),
                            "white")  # fmt: skip
    top = 0
    for sheet in sheets:
        stacked.paste(sheet, (0, top))
        top += sheet.height
    return stacked


def contact_sheet(reference, pose, output, num_columns: int = 8, reference_pose=None) -> PIL.Image.Image:
    """A generated clip's sheet (`clip_sheet`): the poses on the top row, the outputs below; the first column holds
    the reference pose (blank if not given) over the reference image. Without a pose (text-image-to-video) the
    sheet has the output row only."""
    reference, pose, output = _panels(reference, pose, output)
    rows = [] if pose is None else [SheetRow("pose", pose, reference_pose)]
    return clip_sheet([*rows, SheetRow("output", output, reference)], num_columns=num_columns)


def write_contact_sheet(
    path: str | os.PathLike,
    reference,
    pose,
    output,
    num_columns: int = 8,
    reference_pose=None,
) -> Path:
    """Save `contact_sheet(...)` as a PNG: written to a temporary file beside `path`, then renamed into place."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"the contact sheet is a PNG; give a path ending in .png, got {path}")
    sheet = contact_sheet(reference, pose, output, num_columns=num_columns, reference_pose=reference_pose)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as temporary:
        sheet.save(temporary, format="PNG")
    return path


__all__ = [
    "SheetRow",
    "as_uint8_image",
    "as_uint8_video",
    "clip_sheet",
    "contact_sheet",
    "preview_frames",
    "stack_sheets",
    "write_contact_sheet",
    "write_preview_video",
]
