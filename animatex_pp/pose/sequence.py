"""`PoseSequence`: one person's keypoints over frames, the data every other pose tool reads and writes.

Coordinates are normalised image coordinates: x / width and y / height of the source image, (0, 0) the top-left
corner, so a pose can be drawn at any resolution. Points may fall outside [0, 1] (a limb leaving the frame, or a
retargeted skeleton larger than its image). A point is detected when its confidence is >= 0.3
(`skeleton.CONF_THRESHOLD`); an undetected point keeps whatever coordinates the detector gave and is ignored.
"""

from __future__ import annotations

import json
import math
import os
import zipfile
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from animatex_pp.io.files import atomic_output
from animatex_pp.io.video import source_frame_index
from animatex_pp.pose.skeleton import CONF_THRESHOLD, NUM_BODY, NUM_FACE, NUM_FEET, NUM_HAND

__all__ = ["PoseSequence"]

FORMAT = "animatex_pp.PoseSequence/1"
# Point-axis shape of each part; coordinates add a trailing 2, confidences do not.
PART_SHAPES = {"body": (NUM_BODY,), "feet": (NUM_FEET,), "hands": (2, NUM_HAND), "face": (NUM_FACE,)}
OPTIONAL_PARTS = ("feet", "hands", "face")


@dataclass(eq=False)
class PoseSequence:
    """Frames x OpenPose-18 body keypoints, with optional feet, hands and face, and their confidences.

    Fields (F frames):
        body: float32 (F, 18, 2) normalised (x, y); body_conf: float32 (F, 18).
        width, height: size in pixels of the images the keypoints were measured on.
        fps: frame rate, or None when unknown (a single image).
        feet: (F, 6, 2) COCO-WholeBody order (left big toe, small toe, heel, then right); feet_conf (F, 6).
        hands: (F, 2, 21, 2), left hand then right; hands_conf (F, 2, 21).
        face: (F, 68, 2) iBUG-68 order; face_conf (F, 68).
    An optional part and its confidence are both given or both None.
    """

    body: np.ndarray
    body_conf: np.ndarray
    width: int
    height: int
    fps: float | None = None
    feet: np.ndarray | None = None
    feet_conf: np.ndarray | None = None
    hands: np.ndarray | None = None
    hands_conf: np.ndarray | None = None
    face: np.ndarray | None = None
    face_conf: np.ndarray | None = None

    def __post_init__(self) -> None:
        if isinstance(self.width, bool) or not isinstance(self.width, (int, np.integer)) or self.width < 1:
            raise ValueError(f"width must be a positive integer (pixels of the source image), got {self.width!r}")
        if isinstance(self.height, bool) or not isinstance(self.height, (int, np.integer)) or self.height < 1:
            raise ValueError(f"height must be a positive integer (pixels of the source image), got {self.height!r}")
        self.width, self.height = int(self.width), int(self.height)
        if self.fps is not None:
            if not (isinstance(self.fps, (int, float, np.number)) and math.isfinite(self.fps) and self.fps > 0):
                raise ValueError(f"fps must be a positive number or None, got {self.fps!r}")
            self.fps = float(self.fps)
        num_frames = None
        for part, shape in PART_SHAPES.items():
            points, conf = getattr(self, part), getattr(self, f"{part}_conf")
            if points is None and conf is None and part != "body":
                continue
            if points is None or conf is None:
                raise ValueError(f"give both {part} and {part}_conf, or neither")
            points = np.ascontiguousarray(points, dtype=np.float32)
            conf = np.ascontiguousarray(conf, dtype=np.float32)
            if points.ndim != len(shape) + 2 or points.shape[1:] != (*shape, 2):
                raise ValueError(
                    f"{part} must have shape (frames, {', '.join(map(str, shape))}, 2), got {points.shape}"
                )
            if conf.shape != points.shape[:-1]:
                raise ValueError(f"{part}_conf must have shape {points.shape[:-1]}, got {conf.shape}")
            if num_frames is None:
                num_frames = len(points)
            elif len(points) != num_frames:
                raise ValueError(f"{part} has {len(points)} frames but body has {num_frames}")
            if not (np.isfinite(points).all() and np.isfinite(conf).all()):
                raise ValueError(f"{part} holds NaN or inf: mark a missing point with confidence 0 instead")
            setattr(self, part, points)
            setattr(self, f"{part}_conf", conf)
        if num_frames == 0:
            raise ValueError("a PoseSequence needs at least one frame")

    # -- size and parts ---------------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.body)

    def __repr__(self) -> str:
        # Height first, and said so, as --size and every other message of the library print sizes.
        fps = "unknown" if self.fps is None else f"{self.fps:g}"
        size = f"{self.height}x{self.width} (HxW)"
        return f"PoseSequence(frames={len(self)}, parts={self.parts}, size={size}, fps={fps})"

    @property
    def parts(self) -> tuple[str, ...]:
        """Names of the parts present, body first."""
        return ("body",) + tuple(part for part in OPTIONAL_PARTS if getattr(self, part) is not None)

    def _arrays(self) -> dict[str, np.ndarray]:
        """Every per-frame array present, by field name."""
        names = [name for part in self.parts for name in (part, f"{part}_conf")]
        return {name: getattr(self, name) for name in names}

    # -- time -------------------------------------------------------------------------------------------------------

    def __getitem__(self, index: int | slice | np.ndarray | list[int]) -> PoseSequence:
        """Frames by index: an int gives a 1-frame sequence; a slice with step s divides fps by |s|."""
        fps = self.fps
        if isinstance(index, (int, np.integer)):
            if not -len(self) <= index < len(self):
                raise IndexError(f"frame {index} out of range for a sequence of {len(self)} frames")
            index = [int(index)]
        elif isinstance(index, slice):
            if fps is not None and index.step is not None:
                fps = fps / abs(index.step)
        else:
            index = np.asarray(index)
            if index.dtype == bool or not np.issubdtype(index.dtype, np.integer) or index.ndim != 1:
                raise TypeError("index frames with an int, a slice or a 1-D array of ints")
        arrays = {name: array[index] for name, array in self._arrays().items()}
        if len(arrays["body"]) == 0:
            raise ValueError(f"index {index} selects no frames of a sequence of {len(self)} frames")
        return replace(self, fps=fps, **arrays)

    def resample(self, fps: float | None = None, num_frames: int | None = None) -> PoseSequence:
        """Resample in time by nearest frame (missing points stay missing), to a frame rate or to a frame count.

        `fps` uses the rule `read_video(fps=...)` uses, so a pose resampled to a rate stays aligned with the video
        read at that rate. `num_frames` spreads that many frames evenly over the sequence.
        """
        if (fps is None) == (num_frames is None):
            raise ValueError("give exactly one of fps or num_frames")
        if fps is not None:
            if self.fps is None:
                raise ValueError(
                    "this sequence has no fps: set it (dataclasses.replace(pose, fps=...)) or use num_frames"
                )
            if not fps > 0:
                raise ValueError(f"fps must be positive, got {fps}")
            count = math.ceil(len(self) * fps / self.fps) + 1
            indices = [source_frame_index(k, self.fps, fps) for k in range(count)]
            indices = [i for i in indices if i < len(self)]
            new_fps = float(fps)
        else:
            if not isinstance(num_frames, (int, np.integer)) or num_frames < 1:
                raise ValueError(f"num_frames must be a positive integer, got {num_frames!r}")
            indices = [min(source_frame_index(k, len(self), num_frames), len(self) - 1) for k in range(num_frames)]
            new_fps = None if self.fps is None else self.fps * num_frames / len(self)
        return replace(self[np.asarray(indices, dtype=np.int64)], fps=new_fps)

    # -- model inputs -----------------------------------------------------------------------------------------------

    def ipi_keypoints(self, conf_threshold: float = CONF_THRESHOLD) -> np.ndarray:
        """The implicit pose indicator's input: float32 (F, 18, 2) normalised body points, -1 where undetected.

        As the official data preparation does it: coordinates divided by the image size, both coordinates of a
        point set to -1 where its confidence is below `conf_threshold`. The model flattens each frame
        coordinate-major itself.
        """
        detected = self.body_conf >= conf_threshold  # (F, 18)
        return np.where(detected[..., None], self.body, np.float32(-1.0)).astype(np.float32)

    # -- files ------------------------------------------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> Path:
        """Save losslessly: `.npz` (compact) or `.json` (for people and other tools). Written atomically."""
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix not in (".npz", ".json"):
            raise ValueError(f"save a PoseSequence as .npz or .json, got {path}")
        if not path.parent.is_dir():
            raise FileNotFoundError(f"folder {path.parent} does not exist: create it before saving {path.name}")
        with atomic_output(path) as temporary, open(temporary, "wb") as file:
            if suffix == ".npz":
                meta = {"format": np.array(FORMAT), "width": np.array(self.width), "height": np.array(self.height)}
                meta["fps"] = np.array(np.nan if self.fps is None else self.fps, dtype=np.float64)
                np.savez_compressed(file, **meta, **self._arrays())
            else:
                file.write(json.dumps(self.to_dict()).encode("utf-8"))
        return path

    def to_dict(self) -> dict[str, Any]:
        """Plain lists and numbers (float32 values widen to float exactly, so a JSON round trip is lossless)."""
        data: dict[str, Any] = {"format": FORMAT, "width": self.width, "height": self.height, "fps": self.fps}
        data["num_frames"] = len(self)
        data.update({name: array.tolist() for name, array in self._arrays().items()})
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "data") -> PoseSequence:
        if data.get("format") != FORMAT:
            raise ValueError(f"{source} is not a saved PoseSequence (format {data.get('format')!r}, want {FORMAT!r})")
        missing = [key for key in ("width", "height", "body", "body_conf") if key not in data]
        if missing:
            raise ValueError(f"{source} lacks {', '.join(missing)}: it is not a complete PoseSequence")
        names = [field.name for field in fields(cls)]
        return cls(**{name: data[name] for name in names if data.get(name) is not None})

    @classmethod
    def load(cls, path: str | os.PathLike) -> PoseSequence:
        """Load a sequence saved by `save` (never unpickles: object arrays in an .npz are refused)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"pose file not found: {path}")
        suffix = path.suffix.lower()
        if suffix == ".json":
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as error:
                raise ValueError(f"pose file {path} is not valid JSON ({error})") from error
            if not isinstance(data, dict):
                raise ValueError(f"pose file {path} holds a JSON {type(data).__name__}, not a PoseSequence object")
            return cls.from_dict(data, source=str(path))
        if suffix != ".npz":
            raise ValueError(f"load a PoseSequence from .npz or .json, got {path}")
        if not zipfile.is_zipfile(path):
            raise ValueError(f"pose file {path} is not an .npz archive: save poses with PoseSequence.save")
        try:
            with np.load(path, allow_pickle=False) as archive:
                data = {key: archive[key] for key in archive.files}
        except ValueError as error:
            raise ValueError(f"pose file {path} holds pickled objects, which are never loaded ({error})") from error
        except (OSError, EOFError, zipfile.BadZipFile) as error:
            raise ValueError(f"pose file {path} is not a readable .npz archive ({error})") from error
        data = {key: value.item() if value.ndim == 0 else value for key, value in data.items()}
        if isinstance(data.get("fps"), float) and math.isnan(data["fps"]):
            data["fps"] = None
        return cls.from_dict(data, source=str(path))
