"""Argument checks every `animatex-pp` command shares: files and folders that must exist, outputs that must be
writable and must not overwrite an input, numbers, sizes, seeds, devices, dtypes, and the pose extractor's options.

argparse `type=` functions raise `argparse.ArgumentTypeError` (argparse names the option); the others raise
`FileNotFoundError` for a missing file and `ValueError` for a wrong one, which `animatex_pp.cli` prints as one line
with exit code 2. The checks that the library's evaluation makes too live in `animatex_pp.pipelines.checks` and are
re-exported here, so a command imports every check from this module.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping, Set
from pathlib import Path

from animatex_pp.pipelines.checks import (
    DTYPES,
    check_device,
    existing_dir,
    existing_file,
    output_folder,
    refuse_inputs,
    torch_dtype,
    writable_folder,
)
from animatex_pp.pose.render import MAX_SIDE

__all__ = [
    "DTYPES",
    "DWPOSE_FILES",
    "POSE_SUFFIXES",
    "VIDEO_SUFFIXES",
    "add_pose_backend_arguments",
    "check_device",
    "existing_dir",
    "existing_file",
    "finite_float",
    "integer",
    "non_negative_float",
    "non_negative_int",
    "open_image",
    "output_folder",
    "output_path",
    "pose_backend_options",
    "positive_float",
    "positive_int",
    "refuse_inputs",
    "random_seed",
    "height_width",
    "torch_dtype",
    "writable_folder",
]

POSE_SUFFIXES = frozenset({".npz", ".json"})
VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".mkv", ".avi", ".webm", ".gif"})
# The two ONNX files of DWPose (Hugging Face yzd-v/DWPose), by the extractor option each is passed as.
DWPOSE_FILES = {"det_model": "yolox_l.onnx", "pose_model": "dw-ll_ucoco_384.onnx"}
DWPOSE_SOURCE = "Hugging Face yzd-v/DWPose"


# ----------------------------------------------------------------------------- argparse types


def height_width(text: str) -> tuple[int, int]:
    """'832x480' -> (832, 480): height x width, each side 1 to `MAX_SIDE` pixels (larger is a typo: the pose video
    alone would not fit in memory)."""
    try:
        height, width = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be HEIGHTxWIDTH, e.g. 832x480, got {text!r}") from None
    if height < 1 or width < 1:
        raise argparse.ArgumentTypeError(f"height and width must be positive, got {text!r}")
    if max(height, width) > MAX_SIDE:
        raise argparse.ArgumentTypeError(f"height and width must be at most {MAX_SIDE} pixels, got {text!r}")
    return height, width


def finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def positive_float(text: str) -> float:
    value = finite_float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def non_negative_float(text: str) -> float:
    value = finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None


def positive_int(text: str) -> int:
    value = integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def non_negative_int(text: str) -> int:
    value = integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def random_seed(text: str) -> int:
    value = integer(text)
    # torch.Generator.manual_seed takes 64-bit values.
    if not 0 <= value < 2**64:
        raise argparse.ArgumentTypeError(f"must be between 0 and 2**64 - 1, got {text}")
    return value


# ----------------------------------------------------------------------------- files


def open_image(path: Path, what: str):
    """The image at `path` as a viewer shows it (`animatex_pp.io.image`); unreadable is a ValueError, exit code 2."""
    from animatex_pp.io.image import read_image

    return read_image(path, what)


def output_path(path: str | Path, suffixes: Set[str], what: str, inputs: Mapping[str, Path | None]) -> Path:
    """A file to write: one of `suffixes`, not a directory, in an existing writable folder, and not an input."""
    path = Path(path)
    if path.suffix.lower() not in suffixes:
        raise ValueError(f"{what} must end in {' or '.join(sorted(suffixes))}, got {path}")
    if path.is_dir():
        raise ValueError(f"{what} {path} is a directory: give the path of a {' or '.join(sorted(suffixes))} file")
    if not path.parent.exists():
        raise FileNotFoundError(f"the folder for {what} does not exist: {path.parent}; create it first")
    if not path.parent.is_dir():
        raise ValueError(f"{what} {path}: {path.parent} is not a folder")
    writable_folder(path.parent, what)
    refuse_inputs(path, what, inputs)
    return path


# ----------------------------------------------------------------------------- the pose extractor


def add_pose_backend_arguments(parser: argparse.ArgumentParser, uses: str) -> None:
    """The pose extractor's options, the same in every command that extracts poses (`uses`: what it extracts)."""
    parser.add_argument(
        "--pose-backend",
        choices=("mediapipe", "dwpose"),
        default="mediapipe",
        help=f"pose extractor {uses} (default mediapipe, which ships its model; dwpose needs --dwpose-dir)",
    )
    parser.add_argument(
        "--dwpose-dir",
        metavar="DIR",
        help=f"--pose-backend dwpose: the folder of {' and '.join(DWPOSE_FILES.values())} ({DWPOSE_SOURCE})",
    )
    parser.add_argument("--no-hands", action="store_true", help="mediapipe: body and feet only (twice as fast)")


def pose_backend_options(args: argparse.Namespace) -> dict:
    """The keyword options `animatex_pp.pose.extract` takes for `args.pose_backend`, once the files exist."""
    if args.pose_backend == "mediapipe":
        if args.dwpose_dir:
            raise ValueError("--dwpose-dir is for --pose-backend dwpose: add --pose-backend dwpose, or drop it")
        return {"hands": not args.no_hands}
    if args.no_hands:
        raise ValueError("--no-hands is a mediapipe option (DWPose always finds the hands): drop it")
    if not args.dwpose_dir:
        raise ValueError(
            f"--pose-backend dwpose needs --dwpose-dir: the folder of {' and '.join(DWPOSE_FILES.values())} "
            f"(download them from {DWPOSE_SOURCE})"
        )
    folder = Path(args.dwpose_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"--dwpose-dir not found: {folder}")
    options = {}
    for option, name in DWPOSE_FILES.items():
        if not (folder / name).is_file():
            raise FileNotFoundError(f"--dwpose-dir {folder} has no {name}: download it from {DWPOSE_SOURCE}")
        options[option] = folder / name
    return options
