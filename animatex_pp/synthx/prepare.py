"""The `data=synthx` option's data step: build the SynthX benchmark when the training run needs it and it is not
there yet (`data.prepare`, which `animatex-pp train` calls before training; docs/training.md, "The data step")."""

from __future__ import annotations

import logging
from pathlib import Path

from animatex_pp.synthx.build import METADATA_FILES, BuildConfig, build

logger = logging.getLogger("animatex_pp.synthx")


def build_if_missing(metadata: str, folder: str, size: int, frames: int, train: int, test: int, seed: int,
                     cache: str | None = None) -> Path | None:  # fmt: skip
    """Build SynthX into `folder` unless the run has what it reads: a precompute cache, or the metadata file (any
    file `data.metadata` names, this build's `train.jsonl` or another). Returns the folder when it built one."""
    folder = Path(folder)
    if cache or Path(metadata).exists() or Path(metadata).resolve() != (folder / METADATA_FILES["train"]).resolve():
        return None  # nothing to make, or a file of the user's that training reports missing
    if folder.exists():
        raise ValueError(
            f"data.prepare.folder {folder} exists but has no {METADATA_FILES['train']}: delete it, or point "
            "data.metadata at a SynthX train.jsonl"
        )
    folder.parent.mkdir(parents=True, exist_ok=True)
    logger.info("building SynthX into %s (data.prepare)", folder)
    build(folder, BuildConfig(size=size, frames=frames, train=train, test=test, seed=seed))
    return folder
