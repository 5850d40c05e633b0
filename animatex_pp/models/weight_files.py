"""Checks that model folders and weight files on disk are whole, before minutes are spent loading them.

A download or copy cut short leaves a folder without its weight file, or a safetensors file shorter than its header
says; loading such a folder fails deep inside diffusers or transformers with a traceback that names neither the file
nor the fix. These checks read only the small safetensors headers (8 bytes of length, then JSON) and file sizes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = ["check_model_folder", "check_pipeline_folder", "check_safetensors"]

# Weight files diffusers and transformers look for, with the index files of sharded checkpoints.
WEIGHT_NAMES = ("diffusion_pytorch_model", "model")
REDOWNLOAD = "the download or copy is incomplete or damaged: copy or download it again"


def check_safetensors(path: str | os.PathLike) -> None:
    """Raise a ValueError naming `path` unless its header parses and its file holds every byte the header lists."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as file:
        prefix = file.read(8)
        header_length = int.from_bytes(prefix, "little") if len(prefix) == 8 else None
        if header_length is None or header_length > size - 8:
            raise ValueError(f"{path} is truncated ({size} bytes, no complete safetensors header): {REDOWNLOAD}")
        try:
            header = json.loads(file.read(header_length))
            data_end = max(
                (entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"), default=0
            )
        except (ValueError, KeyError, TypeError, IndexError):
            raise ValueError(f"{path} is not a valid safetensors file (corrupt header): {REDOWNLOAD}") from None
    expected = 8 + header_length + data_end
    if size < expected:
        raise ValueError(
            f"{path} is truncated: it holds {size} of the {expected} bytes its header lists; {REDOWNLOAD}"
        )


def check_model_folder(folder: str | os.PathLike, what: str) -> None:
    """A diffusers/transformers model folder: `config.json` plus a weight file (or every shard an index names)."""
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise ValueError(f"{what} {folder} has no config.json: {REDOWNLOAD}")
    for name in WEIGHT_NAMES:
        index = folder / f"{name}.safetensors.index.json"
        if index.is_file():
            try:
                shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            except (ValueError, KeyError, AttributeError):
                raise ValueError(f"{index} is not a valid shard index: {REDOWNLOAD}") from None
            for shard in shards:
                if not (folder / shard).is_file():
                    raise ValueError(f"{what} {folder} lacks {shard}, which {index.name} lists: {REDOWNLOAD}")
                check_safetensors(folder / shard)
            return
        if (folder / f"{name}.safetensors").is_file():
            check_safetensors(folder / f"{name}.safetensors")
            return
        if (folder / f"{name}.bin").is_file():
            return  # a pickle checkpoint: nothing cheap to check
    raise ValueError(
        f"{what} {folder} has no weight file ({' or '.join(f'{n}.safetensors' for n in WEIGHT_NAMES)}): {REDOWNLOAD}"
    )


def check_pipeline_folder(folder: str | os.PathLike, what: str, hint: str) -> None:
    """A diffusers pipeline folder: a readable `model_index.json` whose every model component is whole.

    Components with a `config.json` are models and need weights; tokenizers, schedulers and image processors only
    need their folder.
    """
    folder = Path(folder)
    try:
        index = json.loads((folder / "model_index.json").read_text())
    except ValueError:
        raise ValueError(f"{folder / 'model_index.json'} is not valid JSON: {REDOWNLOAD}. {hint}") from None
    for name, entry in index.items():
        if name.startswith("_") or not isinstance(entry, list) or entry[0] is None:
            continue
        component = folder / name
        if not component.is_dir():
            raise ValueError(f"{what} {folder} lacks its {name}/ folder, which model_index.json lists. {hint}")
        if (component / "config.json").is_file():
            check_model_folder(component, f"the {name} folder")
