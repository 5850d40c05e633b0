"""Where the Hydra configs are, and composing them from Python (tests, notebooks).

An installed wheel holds the repository's top-level `conf/` as the package `animatex_pp.conf`; a source checkout
(tests run from it, and an editable install maps it) has it beside the package. A user adds recipes of their own
through Hydra's search path: `hydra.searchpath=[file:///my/recipes]` with `recipe/NAME.yaml` inside.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from animatex_pp.data.clips import ClipConfig

CONFIG_NAME = "train"


def config_dir() -> Path:
    """The folder holding `train.yaml` and the config groups."""
    try:
        installed = Path(str(importlib.resources.files("animatex_pp.conf")))
    except ModuleNotFoundError:
        installed = None
    if installed is not None and (installed / f"{CONFIG_NAME}.yaml").is_file():
        return installed
    checkout = Path(__file__).resolve().parents[2] / "conf"
    if not (checkout / f"{CONFIG_NAME}.yaml").is_file():
        raise FileNotFoundError(
            f"the training configs are missing (no animatex_pp.conf package, no {checkout}): reinstall animatex_pp"
        )
    return checkout


def compose_config(overrides: list[str] | tuple[str, ...] = ()) -> DictConfig:
    """The training config for these command-line style overrides, as `animatex-pp train` would compose it
    (without Hydra's run folder: give `run_dir=...`)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        return compose(CONFIG_NAME, overrides=list(overrides))


def clip_config(data: dict[str, Any], seed: int) -> ClipConfig:
    """The `data.clips` section as the datasets take it (buckets as tuples), with the seed of their draws."""
    clips = data["clips"]
    return ClipConfig(**{**clips, "buckets": tuple(tuple(bucket) for bucket in clips["buckets"])}, seed=seed)
