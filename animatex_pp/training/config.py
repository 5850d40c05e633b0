"""Where the Hydra configs and recipes are, and composing them from Python (tests, notebooks).

An installed wheel holds the repository's top-level `conf/` (the config groups) as the package `animatex_pp.conf`
and `recipes/` as `animatex_pp.recipes`; a source checkout (tests run from it, and an editable install maps it)
has both beside the package.

Hydra finds a config group only as a folder named after the group under a search-path root, and the recipes are a
top-level folder of their own, so `register_recipes` stores every `recipes/NAME.yaml` in Hydra's ConfigStore as
group `recipe`, option NAME, package `_global_` (what the files' `# @package _global_` header says), before any
config is composed. That resolves the same in a checkout, an editable install and a wheel. A user adds recipes of
their own through Hydra's search path, `hydra.searchpath=[file:///my/configs]` with `recipe/NAME.yaml` inside:
file sources are searched before the ConfigStore, so their file wins over a stored recipe of the same name.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from animatex_pp.data.clips import ClipConfig

CONFIG_NAME = "train"
RECIPE_GROUP = "recipe"


def _package_or_checkout(package: str, folder: str, marker: str) -> Path:
    """The installed package `package`'s folder, or the checkout's top-level `folder`; it must hold `marker`."""
    try:
        installed = Path(str(importlib.resources.files(package)))
    except ModuleNotFoundError:
        installed = None
    if installed is not None and any(installed.glob(marker)):
        return installed
    checkout = Path(__file__).resolve().parents[2] / folder
    if not any(checkout.glob(marker)):
        raise FileNotFoundError(f"the training {folder} are missing (no {package} package, no {checkout}): "
                                "reinstall animatex_pp")  # fmt: skip
    return checkout


def config_dir() -> Path:
    """The folder holding `train.yaml` and the config groups."""
    return _package_or_checkout("animatex_pp.conf", "conf", f"{CONFIG_NAME}.yaml")


def recipes_dir() -> Path:
    """The folder holding the runnable recipes, `NAME.yaml`."""
    return _package_or_checkout("animatex_pp.recipes", "recipes", "*.yaml")


def recipe_names() -> list[str]:
    return sorted(path.stem for path in recipes_dir().glob("*.yaml"))


def register_recipes() -> None:
    """Store every recipe in Hydra's ConfigStore as `recipe=NAME` (package `_global_`); idempotent."""
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    store = ConfigStore.instance()
    for path in sorted(recipes_dir().glob("*.yaml")):
        store.store(group=RECIPE_GROUP, name=path.stem, node=OmegaConf.load(path), package="_global_")


def compose_config(overrides: list[str] | tuple[str, ...] = ()) -> DictConfig:
    """The training config for these command-line style overrides, as `animatex-pp train` would compose it
    (without Hydra's run folder: give `run_dir=...`)."""
    from hydra import compose, initialize_config_dir

    register_recipes()
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        return compose(CONFIG_NAME, overrides=list(overrides))


def clip_config(data: dict[str, Any], seed: int) -> ClipConfig:
    """The `data.clips` section as the datasets take it (buckets as tuples), with the seed of their draws."""
    clips = data["clips"]
    return ClipConfig(**{**clips, "buckets": tuple(tuple(bucket) for bucket in clips["buckets"])}, seed=seed)
