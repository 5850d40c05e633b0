"""Checks of what a run is given, made before a pipeline loads: input files and folders, outputs that must be
writable and must never overwrite an input, the device, the dtype.

Each raises `FileNotFoundError` for something missing and `ValueError` for something wrong, with a message that
names the argument (`what`) and says what to do; the evaluation runner and the command line share them. Nothing
heavy is imported at module level, so a command line stays quick to start.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Set
from pathlib import Path

DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


def existing_file(path: str | Path, what: str, suffixes: Set[str] | None = None) -> Path:
    """`path` as a `Path`, once it is known to be a file (with one of `suffixes`, when given)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{what} not found: {path}")
    if not path.is_file():
        raise ValueError(f"{what} must be a file, got a directory: {path}")
    if suffixes is not None and path.suffix.lower() not in suffixes:
        raise ValueError(f"{what} must be one of {', '.join(sorted(suffixes))}, got {path.name}")
    return path


def existing_dir(path: str | Path, what: str, marker: str, hint: str) -> Path:
    """`path` as a `Path`, once it is known to be a folder holding the file `marker` (`hint`: how to get one)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{what} not found: {path}")
    if not (path / marker).is_file():
        raise ValueError(f"{path} is not {what}: it has no {marker}. {hint}")
    return path


def writable_folder(folder: Path, what: str) -> None:
    """Try to create a file in `folder` (permission bits alone miss read-only mounts and ACLs)."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise ValueError(f"{what}: cannot write in {folder} ({error.strerror}): choose another folder") from None


def refuse_inputs(path: Path, what: str, inputs: Mapping[str, Path | None]) -> None:
    """An output must never be an input file (or hold one, for a folder output that replaces a folder)."""
    target = path.resolve()
    for input_name, input_path in inputs.items():
        if input_path is None:
            continue
        source = input_path.resolve()
        if source == target or target in source.parents:
            raise ValueError(
                f"{what} {path} would overwrite {input_name} {input_path}: inputs are never overwritten, choose "
                "another output path"
            )


def output_folder(path: str | Path, what: str, purpose: str, inputs: Mapping[str, Path | None] | None = None) -> Path:
    """A folder to write `purpose` into (new, or one that exists), in a writable place, and neither an input nor
    holding one."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{what} {path} is a file: give a folder for {purpose}")
    if not path.exists() and not path.parent.is_dir():
        raise FileNotFoundError(f"the folder for {what} does not exist: {path.parent}; create it first")
    writable_folder(path if path.exists() else path.parent, what)
    refuse_inputs(path, what, inputs or {})
    return path


def check_device(name: str, what: str = "--device") -> None:
    """Refuse a device torch cannot name or this machine does not have, before anything is loaded."""
    import torch

    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"{what} {name} is not a torch device: use cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"{what} {name}: this machine has no CUDA device (or this torch has no CUDA); use cpu")
        if device.index is not None and device.index >= count:
            raise ValueError(f"{what} {name}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"{what} {name}: MPS is not available on this machine; use cpu")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"{what} {name}: use cpu, cuda, cuda:N or mps")


def torch_dtype(name: str, what: str = "dtype"):
    """The torch dtype of a short name: "bf16", "fp16" or "fp32"."""
    if name not in DTYPES:
        raise ValueError(f"{what} must be one of {', '.join(sorted(DTYPES))}, got {name!r}")
    import torch

    return getattr(torch, DTYPES[name])
