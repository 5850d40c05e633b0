"""Argument checks every `animatex-pp` command shares: files and folders that must exist, outputs that must be
writable and must not overwrite an input, numbers, sizes, seeds, devices, dtypes.

argparse `type=` functions raise `argparse.ArgumentTypeError` (argparse names the option); the others raise
`FileNotFoundError` for a missing file and `ValueError` for a wrong one, which `animatex_pp.cli` prints as one line
with exit code 2.
"""

from __future__ import annotations

import argparse
import math
import tempfile
from collections.abc import Mapping, Set
from pathlib import Path

from animatex_pp.pose.render import MAX_SIDE

POSE_SUFFIXES = frozenset({".npz", ".json"})
VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".mkv", ".avi", ".webm", ".gif"})
DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


def _existing_file(path: str, what: str, suffixes: Set[str] | None = None) -> Path:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{what} not found: {path}")
    if not path.is_file():
        raise ValueError(f"{what} must be a file, got a directory: {path}")
    if suffixes is not None and path.suffix.lower() not in suffixes:
        raise ValueError(f"{what} must be one of {', '.join(sorted(suffixes))}, got {path.name}")
    return path


def _existing_dir(path: str, what: str, marker: str, hint: str) -> Path:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{what} not found: {path}")
    if not (path / marker).is_file():
        raise ValueError(f"{path} is not {what}: it has no {marker}. {hint}")
    return path


def _writable_folder(folder: Path, option: str) -> None:
    """Try to create a file in `folder` (permission bits alone miss read-only mounts and ACLs)."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise ValueError(f"{option}: cannot write in {folder} ({error.strerror}): choose another folder") from None


def _refuse_inputs(path: Path, option: str, inputs: Mapping[str, Path | None]) -> None:
    """An output must never be an input file (or hold one, for a directory output that replaces a folder)."""
    target = path.resolve()
    for input_option, input_path in inputs.items():
        if input_path is None:
            continue
        source = input_path.resolve()
        if source == target or target in source.parents:
            raise ValueError(
                f"{option} {path} would overwrite {input_option} {input_path}: inputs are never overwritten, choose "
                "another output path"
            )


def _size(text: str) -> tuple[int, int]:
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


def _finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = _finite_float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    value = _finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None


def _seed(text: str) -> int:
    value = _integer(text)
    # torch.Generator.manual_seed takes 64-bit values.
    if not 0 <= value < 2**64:
        raise argparse.ArgumentTypeError(f"must be between 0 and 2**64 - 1, got {text}")
    return value


def _open_image(path: Path, what: str):
    """The image at `path` as a viewer shows it (`animatex_pp.io.image`); unreadable is a ValueError, exit code 2."""
    from animatex_pp.io.image import read_image

    return read_image(path, what)


def _positive_int(text: str) -> int:
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _torch_dtype(name: str):
    import torch

    return getattr(torch, DTYPES[name])


def _output_path(path: str | Path, suffix: str, what: str, inputs: Mapping[str, Path | None]) -> Path:
    path = Path(path)
    if path.suffix.lower() != suffix:
        raise ValueError(f"{what} must end in {suffix}, got {path}")
    if path.is_dir():
        raise ValueError(f"{what} {path} is a directory: give the path of a {suffix} file")
    if not path.parent.exists():
        raise FileNotFoundError(f"the folder for {what} does not exist: {path.parent}")
    if not path.parent.is_dir():
        raise ValueError(f"{what} {path}: {path.parent} is not a folder")
    _writable_folder(path.parent, what)
    _refuse_inputs(path, what, inputs)
    return path


def _check_device(name: str) -> None:
    """Refuse a device torch cannot name or this machine does not have, before anything is loaded."""
    import torch

    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"--device {name} is not a torch device: use cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"--device {name}: this machine has no CUDA device (or this torch has no CUDA); use cpu")
        if device.index is not None and device.index >= count:
            raise ValueError(f"--device {name}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"--device {name}: MPS is not available on this machine; use cpu")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"--device {name}: use cpu, cuda, cuda:N or mps")
