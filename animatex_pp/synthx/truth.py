"""Ground truth of a SynthX clip, as the metrics need it: keypoints, masks and background motion per frame.

One safetensors file per clip (referenced by the metadata row's `truth` key), never a pickle:
    keypoints (F, 18, 2) float32, normalised as a PoseSequence; keypoints_conf (F, 18) float32, 0 where the
        character lacks the part (arms of an armless character, legs of a mermaid);
    labels (F, H, W) uint8: which part covers each pixel (0 background; names in the file's `labels` metadata);
    alpha (F, H, W) uint8: the character's and objects' exact coverage, 0-255;
    background_shift (F, 2) float32: the background content's displacement from frame 0, pixels (x right, y down);
    background_scale (F,) float32: its scale relative to frame 0 about the frame centre.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

from animatex_pp.synthx.textures import LABELS, OBJECT_LABELS

__all__ = ["ClipTruth", "clip_truth", "read_truth", "write_truth"]

FORMAT = "animatex_pp.synthx.truth/1"


@dataclass(frozen=True)
class ClipTruth:
    """A clip's ground truth (fields as the module docstring lists them)."""

    keypoints: np.ndarray
    keypoints_conf: np.ndarray
    labels: np.ndarray
    alpha: np.ndarray
    background_shift: np.ndarray
    background_scale: np.ndarray
    label_names: tuple[str, ...] = LABELS

    def character_masks(self) -> np.ndarray:
        """(F, H, W) bool: pixels whose centre the character covers."""
        objects = np.isin(self.labels, OBJECT_LABELS)
        return (self.labels > 0) & ~objects

    def foreground_masks(self) -> np.ndarray:
        """(F, H, W) bool: pixels the character or a moving object covers (what background motion must ignore)."""
        return self.labels > 0

    def part_masks(self, part: str) -> np.ndarray:
        """(F, H, W) bool: pixels of one part ("head", "r_forearm", ...)."""
        if part not in self.label_names:
            raise ValueError(f"unknown part {part!r}: choose one of {', '.join(self.label_names[1:])}")
        return self.labels == self.label_names.index(part)

    def background_motion(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per frame pair f -> f + 1: dx, dy (pixels per frame) and zoom (scale per frame), each (F - 1,), as
        `animatex_pp.eval.motion.estimate_background_motion` measures them."""
        step = np.diff(self.background_shift.astype(np.float64), axis=0)  # (F - 1, 2)
        scale = self.background_scale.astype(np.float64)
        return step[:, 0], step[:, 1], scale[1:] / scale[:-1]


def write_truth(path: str | os.PathLike, truth: ClipTruth) -> None:
    arrays = {
        "keypoints": truth.keypoints.astype(np.float32),
        "keypoints_conf": truth.keypoints_conf.astype(np.float32),
        "labels": truth.labels.astype(np.uint8),
        "alpha": truth.alpha.astype(np.uint8),
        "background_shift": truth.background_shift.astype(np.float32),
        "background_scale": truth.background_scale.astype(np.float32),
    }
    # One metadata key: safetensors writes its metadata map in hash order, which differs between processes, so
    # two keys would make the bytes depend on the process that wrote them.
    header = json.dumps({"format": FORMAT, "labels": list(truth.label_names)})
    save_file(arrays, str(path), metadata={"synthx": header})


def read_truth(path: str | os.PathLike) -> ClipTruth:
    """Load a clip's ground-truth file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ground-truth file not found: {path}")
    with safe_open(str(path), framework="numpy") as handle:
        header = json.loads((handle.metadata() or {}).get("synthx", "{}"))
    if header.get("format") != FORMAT:
        raise ValueError(f"{path} is not a SynthX ground-truth file (format {header.get('format')!r})")
    return ClipTruth(**load_file(str(path)), label_names=tuple(header["labels"]))


def clip_truth(metadata_path: str | os.PathLike, row: dict) -> ClipTruth:
    """The ground truth of one metadata row (its `truth` path is relative to the metadata file)."""
    if "truth" not in row:
        raise ValueError(f"row {row.get('id', '?')} of {metadata_path} has no 'truth' key: it is not a SynthX clip")
    return read_truth(Path(metadata_path).parent / row["truth"])
