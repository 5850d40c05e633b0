"""Where the Hydra configs and recipes are, what Hydra's ConfigStore holds, composing them from Python, and the
config's data step.

An installed wheel holds the repository's top-level `conf/` (the config groups) as the package `animatex_pp.conf`
and `recipes/` as `animatex_pp.recipes`; a source checkout (tests run from it, and an editable install maps it)
has both beside the package.

`register_configs` fills the ConfigStore before anything is composed:
- the schema `train_schema` (`schema.TrainConfig`), the first entry of `conf/train.yaml`'s defaults list, which
  types every key (docs/training.md, "Configs and their schema");
- every `recipes/NAME.yaml` as group `recipe`, option NAME, package `_global_` (what the files' `# @package
  _global_` header says). Hydra finds a config group only as a folder named after the group under a search-path
  root, and the recipes are a top-level folder of their own; stored this way they resolve the same in a checkout,
  an editable install and a wheel. A user adds recipes of their own through Hydra's search path,
  `hydra.searchpath=[file:///my/configs]` with `recipe/NAME.yaml` inside: file sources are searched before the
  ConfigStore, so their file wins over a stored recipe of the same name.
"""

from __future__ import annotations

import importlib.resources
import logging
from pathlib import Path

from omegaconf import DictConfig

from animatex_pp.training.distributed import launcher_rank, wait_for_path
from animatex_pp.training.schema import Mode, TrainConfig

logger = logging.getLogger("animatex_pp.training")

CONFIG_NAME = "train"
SCHEMA_NAME = "train_schema"
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


def register_configs() -> None:
    """Store the schema and every recipe in Hydra's ConfigStore; idempotent."""
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    store = ConfigStore.instance()
    store.store(name=SCHEMA_NAME, node=TrainConfig)
    for path in sorted(recipes_dir().glob("*.yaml")):
        store.store(group=RECIPE_GROUP, name=path.stem, node=OmegaConf.load(path), package="_global_")


def compose_config(overrides: list[str] | tuple[str, ...] = ()) -> DictConfig:
    """The training config for these command-line style overrides, as `animatex-pp train` would compose it
    (without Hydra's run folder: give `run_dir=...`)."""
    from hydra import compose, initialize_config_dir

    register_configs()
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        return compose(CONFIG_NAME, overrides=list(overrides))


def prepare_data(cfg: DictConfig) -> None:
    """Run the config's data step, `data.prepare` (a Hydra `_target_` call that makes the training data when it is
    missing; `data=synthx` builds SynthX), before `train(cfg)`. `animatex-pp train` calls this; `train` never does.

    Under a launcher (torchrun, deepspeed) only rank 0 runs it; the other ranks wait for the metadata file it writes
    (a run on a precompute cache reads no metadata: they go on at once).
    """
    from hydra.utils import call

    if cfg.mode != Mode.train or cfg.data.get("prepare") is None:
        return
    if launcher_rank() == 0:
        call(cfg.data.prepare)
    elif not cfg.data.cache:
        logger.info("waiting for rank 0's data step to write %s", cfg.data.metadata)
        wait_for_path(Path(cfg.data.metadata), "data.metadata, which rank 0's data step (data.prepare) writes")
