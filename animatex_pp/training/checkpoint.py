"""Checkpoints that a kill at any moment cannot break, and resuming from them.

A checkpoint is DeepSpeed's own (model, optimizer and scheduler state, one set of files per rank, under ZeRO
partitioned as the run was) plus `state.json`: the optimizer steps done, the sampler's state (its next micro-step)
and the config the weights depend on, which resume checks before any model loads. It is written under a hidden
`.partial` name and renamed to `step-NNNNNNNN` when every rank has finished; `latest.json` is then replaced
atomically. A run killed while saving therefore still has the previous checkpoint and a `latest.json` that names
it. DeepSpeed reads its checkpoint files with `torch.load` (pickle): a checkpoint is trusted as the run that wrote
it; exports are safetensors.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from animatex_pp.io.files import atomic_output
from animatex_pp.io.stages import differences as setting_differences
from animatex_pp.training.schema import TrainConfig

logger = logging.getLogger("animatex_pp.training")

LATEST_FILE = "latest.json"
STATE_FILE = "state.json"
TAG_PATTERN = re.compile(r"^step-(\d{8})$")
# Config sections a resumed run must share with its checkpoint (what the weights and their optimizer state mean).
TRACKED_SECTIONS = ("model", "adapter", "optim", "deepspeed", "task_mix", "seed")


def tag_for(step: int) -> str:
    return f"step-{step:08d}"


def tracked_config(config: TrainConfig) -> dict[str, Any]:
    """The tracked sections as JSON has them (what `state.json` holds)."""
    sections = {name: getattr(config, name) for name in TRACKED_SECTIONS}
    plain = {name: dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value
             for name, value in sections.items()}  # fmt: skip
    return json.loads(json.dumps(plain))


def read_state(path: Path) -> dict[str, Any]:
    """A checkpoint's own state (step, sampler, config), without loading its weights."""
    state_file = path / STATE_FILE
    if not state_file.is_file():
        raise ValueError(f"{path} is not a complete checkpoint (no {STATE_FILE}): give another, or resume=auto")
    return json.loads(state_file.read_text())


class CheckpointManager:
    """The run's `checkpoints/` folder: which checkpoint to resume from (its config checked), saving and pruning,
    loading. Saving and loading are collective calls (every rank takes part)."""

    def __init__(self, root: Path, config: TrainConfig, is_main: bool):
        self.root = root
        self.tracked = tracked_config(config)
        self.keep = config.trainer.keep_checkpoints
        self.is_main = is_main
        root.mkdir(parents=True, exist_ok=True)

    def latest(self) -> Path | None:
        """The checkpoint `latest.json` names, or None when the folder holds none."""
        latest = self.root / LATEST_FILE
        if not latest.is_file():
            return None
        path = self.root / json.loads(latest.read_text())["tag"]
        return path if path.is_dir() else None

    def resume_point(self, resume: str | None) -> Path | None:
        """The checkpoint `resume` names (null: none, auto: the latest), refused when it was trained with another
        config; starting afresh over existing checkpoints is refused too (nothing is overwritten)."""
        latest = self.latest()
        if resume is None:
            if latest is not None:
                raise ValueError(
                    f"{self.root} already holds checkpoint {latest.name}: resume it with resume=auto, or train in "
                    "another run folder (run_dir=... or hydra.run.dir=...)"
                )
            return None
        path = latest if resume == "auto" else Path(resume)
        if path is None:
            logger.info("resume=auto: no checkpoint in %s yet, starting fresh", self.root)
            return None
        differences = setting_differences(read_state(path)["config"], self.tracked, saved_as="in the checkpoint")
        if differences:
            raise ValueError(
                f"checkpoint {path} was trained with another config ({'; '.join(differences)}): resume with the "
                "same model, adapter, optimizer, DeepSpeed and task-mix settings, or start a new run folder"
            )
        return path

    def save(self, engine, step: int, state: dict[str, Any], extra: Callable[[Path], None] | None = None) -> Path:
        """Save at `step` optimizer steps; rank 0 adds `state.json` (with the tracked config) and whatever
        `extra(folder)` writes (the EMA), publishes the checkpoint and prunes all but the newest `keep`."""
        partial = f".{tag_for(step)}.partial"
        engine.save_checkpoint(str(self.root), tag=partial, save_latest=False)
        torch.distributed.barrier()
        final = self.root / tag_for(step)
        if self.is_main:
            (self.root / partial / STATE_FILE).write_text(json.dumps({**state, "step": step, "config": self.tracked}))
            if extra is not None:
                extra(self.root / partial)
            if final.exists():
                shutil.rmtree(final)
            os.replace(self.root / partial, final)
            with atomic_output(self.root / LATEST_FILE) as temporary:
                temporary.write_text(json.dumps({"tag": final.name, "step": step}))
            tags = sorted(path for path in self.root.iterdir() if TAG_PATTERN.match(path.name))
            for old in tags[: max(0, len(tags) - self.keep)]:
                shutil.rmtree(old)
        torch.distributed.barrier()
        return final

    def load(self, engine, path: Path, extra: Callable[[Path], None] | None = None) -> dict[str, Any]:
        """Load a checkpoint's weights, optimizer and scheduler states into the engine (and `extra(folder)`: the
        EMA); its state (step, sampler)."""
        loaded, _ = engine.load_checkpoint(str(path.parent), tag=path.name)
        if loaded is None:
            raise ValueError(f"checkpoint {path} could not be loaded: its files are missing or incomplete")
        if extra is not None:
            extra(path)
        state = read_state(path)
        logger.info("resumed from %s at step %d", path, state["step"])
        return state
