"""Checkpoints that a kill at any moment cannot break, resume, and export of the trained weights.

A checkpoint is DeepSpeed's own (model, optimizer and scheduler state, one set of files per rank, under ZeRO
partitioned as the run was) plus `state.json`: the next step, the sampler's state and the config the weights
depend on, which resume checks before it loads anything. It is written under a hidden `.partial` name and
renamed to `step-NNNNNNNN` when every rank has finished; `latest.json` is then replaced atomically. A run killed
while saving therefore still has the previous checkpoint and a `latest.json` that names it. DeepSpeed reads its
checkpoint files with `torch.load` (pickle): a checkpoint is trusted as the run that wrote it; exports are
safetensors.

Export writes the trainable weights (LoRA adapter + pose streams, gathered under ZeRO-3) as safetensors and a
complete pipeline folder that `AnimateXPipeline.from_pretrained` loads, the LoRA merged into the DiT or kept as a
diffusers LoRA file beside it (`export.merge_lora`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from animatex_pp.io.files import atomic_directory, atomic_output

LATEST_FILE = "latest.json"
STATE_FILE = "state.json"
TAG_PATTERN = re.compile(r"^step-(\d{8})$")
TRAINABLE_FILE = "trainable.safetensors"


def tag_for(step: int) -> str:
    return f"step-{step:08d}"


def latest_checkpoint(root: Path) -> Path | None:
    """The checkpoint `latest.json` names, or None when the folder holds none."""
    latest = root / LATEST_FILE
    if not latest.is_file():
        return None
    path = root / json.loads(latest.read_text())["tag"]
    return path if path.is_dir() else None


def save_checkpoint(
    engine, root: Path, step: int, state: dict[str, Any], keep: int, is_main: bool, extra: Callable | None = None
) -> Path:
    """Save on every rank (a collective call); rank 0 adds `state.json` (the run's own state: JSON, read before any
    weight loads) and whatever `extra(folder)` writes (the EMA), publishes the checkpoint and prunes all but the
    `keep` newest."""
    partial = f".{tag_for(step)}.partial"
    engine.save_checkpoint(str(root), tag=partial, save_latest=False)
    torch.distributed.barrier()
    final = root / tag_for(step)
    if is_main:
        (root / partial / STATE_FILE).write_text(json.dumps(state))
        if extra is not None:
            extra(root / partial)
        if final.exists():
            shutil.rmtree(final)
        os.replace(root / partial, final)
        with atomic_output(root / LATEST_FILE) as temporary:
            temporary.write_text(json.dumps({"tag": final.name, "step": step}))
        tags = sorted(path for path in root.iterdir() if TAG_PATTERN.match(path.name))
        for old in tags[: max(0, len(tags) - keep)]:
            shutil.rmtree(old)
    torch.distributed.barrier()
    return final


def read_state(path: Path) -> dict[str, Any]:
    """A checkpoint's own state (step, sampler, config), without loading its weights."""
    state_file = path / STATE_FILE
    if not state_file.is_file():
        raise ValueError(f"{path} is not a complete checkpoint (no {STATE_FILE}): give another, or resume=auto")
    return json.loads(state_file.read_text())


def load_checkpoint(engine, path: Path) -> None:
    """Load a checkpoint folder's weights, optimizer and scheduler states into the engine."""
    loaded, _ = engine.load_checkpoint(str(path.parent), tag=path.name)
    if loaded is None:
        raise ValueError(f"checkpoint {path} could not be loaded: its files are missing or incomplete")


def config_differences(saved: dict[str, Any], current: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested config dicts, with both values."""
    differences = []
    for key in sorted(set(saved) | set(current)):
        name = f"{prefix}{key}"
        old, new = saved.get(key), current.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            differences += config_differences(old, new, f"{name}.")
        elif old != new:
            differences.append(f"{name}: {old!r} in the checkpoint, {new!r} now")
    return differences


def gathered_state(model: torch.nn.Module, trainable_only: bool, is_main: bool) -> dict[str, torch.Tensor]:
    """Whole parameters on rank 0's CPU (buffers are rebuilt from the config), gathered one at a time under ZeRO-3
    so that no rank holds the whole model on its device; a collective call (other ranks get an empty dict)."""
    import deepspeed

    state = {}
    for name, parameter in model.named_parameters():
        if trainable_only and not parameter.requires_grad:
            continue
        with deepspeed.zero.GatheredParameters([parameter], modifier_rank=None):
            if is_main:
                state[name] = parameter.detach().float().cpu().clone()
    return state


def materialize(template: torch.nn.Module, state: dict[str, torch.Tensor]) -> torch.nn.Module:
    """A fresh transformer of `template`'s config and adapters, holding `state` (whole, even if the template's
    parameters are partitioned by ZeRO-3)."""
    model = type(template).from_config(template.config)
    for adapter_name, config in getattr(template, "peft_config", {}).items():
        model.add_adapter(config, adapter_name=adapter_name)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or [name for name in missing if name in dict(model.named_parameters())]:
        raise RuntimeError(f"the gathered weights do not fit the model (missing {missing[:3]}, unexpected "
                           f"{unexpected[:3]})")  # fmt: skip
    return model.to(next(iter(state.values())).dtype if state else torch.float32).eval()


def _merge_lora(transformer: torch.nn.Module) -> None:
    """Fold every peft LoRA layer into its base linear and put the base layer back in its place."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    for name, module in list(transformer.named_modules()):
        if isinstance(module, BaseTunerLayer):
            module.merge()
            parent_name, _, child = name.rpartition(".")
            setattr(transformer.get_submodule(parent_name) if parent_name else transformer, child, module.base_layer)
    transformer._hf_peft_config_loaded = False
    transformer.peft_config = {}


def export(pipeline, model: torch.nn.Module, out: Path, merge_lora: bool, is_main: bool) -> Path | None:
    """Write `out/trainable.safetensors` and the pipeline folder `out/pipeline`; collective under ZeRO-3."""
    state = gathered_state(model, trainable_only=False, is_main=is_main)
    if not is_main:
        return None
    out.mkdir(parents=True, exist_ok=True)
    trainable = {name for name, parameter in model.named_parameters() if parameter.requires_grad}
    with atomic_output(out / TRAINABLE_FILE) as temporary:
        save_file({name: state[name].contiguous() for name in sorted(trainable)}, str(temporary))

    transformer = materialize(model, state)
    has_lora = any("lora_" in name for name in trainable)
    lora_layers = None
    if has_lora and merge_lora:
        _merge_lora(transformer)
    elif has_lora:
        from peft.utils import get_peft_model_state_dict

        lora_layers = get_peft_model_state_dict(transformer)
        _strip_lora(transformer)
    exported = type(pipeline)(**dict(pipeline.components, transformer=transformer))
    with atomic_directory(out / "pipeline") as folder:
        exported.save_pretrained(folder)
        if lora_layers is not None:
            type(pipeline).save_lora_weights(folder, transformer_lora_layers=lora_layers)
    return out / "pipeline"


def _strip_lora(transformer: torch.nn.Module) -> None:
    """Put every LoRA layer's base linear back, unmerged (the adapter is saved on its own)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    for name, module in list(transformer.named_modules()):
        if isinstance(module, BaseTunerLayer):
            parent_name, _, child = name.rpartition(".")
            setattr(transformer.get_submodule(parent_name) if parent_name else transformer, child, module.base_layer)
    transformer._hf_peft_config_loaded = False
    transformer.peft_config = {}
