"""The model side of training: the pipeline whose encoders make the inputs, the transformer's trainable part, and
the optimizer over it.

Partial-parameter training (docs/training.md, "Partial-parameter training"): peft LoRA on the DiT modules a name
pattern selects (official: q, k, v, o of self- and cross-attention and both FFN linears), the pose streams trained
in full, any further modules a pattern selects trained in full, everything else frozen. Parameter groups take their
own learning rates by name pattern (Animate-X trains its IPI at 5e-7 and the rest at 5e-5), and `trainable_table`
prints what trains.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from diffusers.optimization import get_scheduler
from peft import LoraConfig

from animatex_pp.models.transformer import AnimateXTransformer3DModel
from animatex_pp.pipelines.loading import load_pipeline
from animatex_pp.pipelines.pipeline_animatex import AnimateXPipeline
from animatex_pp.training.schema import (
    AdapterConfig,
    ModelConfig,
    ModelSource,
    OptimConfig,
    ParamGroupConfig,
    WeightDtype,
)


def build_pipeline(model: ModelConfig | Mapping[str, Any]) -> AnimateXPipeline:
    """The tiny in-process pipeline (`source: tiny`) or a pipeline folder (`source: pretrained`, `path`), from the
    `model` config section (or the same section as a dict)."""
    if isinstance(model, Mapping):
        model = ModelConfig(**model)
    if ModelSource(model.source) == ModelSource.tiny:
        from animatex_pp.testing import tiny_components

        components = tiny_components(seed=model.init_seed, **model.transformer)
        if model.path:
            # a SynthX VAE (or any other component folder) replaces the random one
            from diffusers import AutoencoderKLWan

            components["vae"] = AutoencoderKLWan.from_pretrained(model.path, subfolder="vae")
        return AnimateXPipeline(**components)
    if model.transformer:
        raise ValueError(
            f"model.transformer overrides {sorted(model.transformer)} apply to a tiny model; a pretrained one keeps "
            "its config"
        )
    # The VAE and the CLIPs stay in float32, as the pipeline runs them.
    return load_pipeline(model.path, dtype=WeightDtype(model.dtype).value)


@dataclasses.dataclass(frozen=True)
class ParamGroup:
    name: str
    lr: float
    names: tuple[str, ...]
    parameters: tuple[torch.nn.Parameter, ...]

    @property
    def count(self) -> int:
        return sum(parameter.numel() for parameter in self.parameters)


def apply_adapters(transformer: AnimateXTransformer3DModel, adapter: AdapterConfig) -> None:
    """Freeze the transformer, add LoRA where `adapter.lora.target_modules` matches, unfreeze streams and patterns."""
    transformer.requires_grad_(False)
    lora = adapter.lora
    if lora is not None:
        config = LoraConfig(
            r=lora.rank,
            lora_alpha=lora.alpha,
            lora_dropout=lora.dropout,
            target_modules=lora.target_modules,
            init_lora_weights=True,
        )
        try:
            transformer.add_adapter(config)
        except ValueError as error:
            raise ValueError(
                f"adapter.lora.target_modules {lora.target_modules!r} matches no module of the transformer "
                f"({error}): use module names such as blocks.0.attn1.to_q"
            ) from None
        for name, parameter in transformer.named_parameters():
            if "lora_" in name:
                parameter.requires_grad_(True)
    if adapter.train_streams:
        for parameter in transformer.stream_parameters():
            parameter.requires_grad_(True)
    for pattern in adapter.train_patterns:
        regex = re.compile(pattern)
        matched = [parameter for name, parameter in transformer.named_parameters() if regex.search(name)]
        if not matched:
            raise ValueError(f"adapter.train_patterns {pattern!r} matches no parameter of the transformer")
        for parameter in matched:
            parameter.requires_grad_(True)
    if not any(parameter.requires_grad for parameter in transformer.parameters()):
        raise ValueError("nothing would train: give adapter.lora, adapter.train_streams or adapter.train_patterns")


def param_groups(
    transformer: torch.nn.Module, groups: Sequence[ParamGroupConfig], default_lr: float
) -> list[ParamGroup]:
    """Trainable parameters split by name pattern (first match wins); the rest form group `other` at `default_lr`."""
    compiled = [(group.name, re.compile(group.pattern), group.lr or default_lr) for group in groups]
    members: dict[str, list[tuple[str, torch.nn.Parameter]]] = {name: [] for name, _, _ in compiled}
    members["other"] = []
    for name, parameter in transformer.named_parameters():
        if not parameter.requires_grad:
            continue
        group = next((group for group, regex, _ in compiled if regex.search(name)), "other")
        members[group].append((name, parameter))
    rates = {name: lr for name, _, lr in compiled} | {"other": default_lr}
    return [
        ParamGroup(name, rates[name], tuple(n for n, _ in params), tuple(p for _, p in params))
        for name, params in members.items()
        if params
    ]


def build_optimizer(
    groups: Sequence[ParamGroup], optim: OptimConfig, max_steps: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """AdamW over the parameter groups, each at its rate, and diffusers' schedule `optim.scheduler` over `max_steps`
    optimizer steps (DeepSpeed steps it once per optimizer step)."""
    optimizer = torch.optim.AdamW(
        [{"params": list(group.parameters), "lr": group.lr, "name": group.name} for group in groups],
        betas=tuple(optim.betas),
        weight_decay=optim.weight_decay,
        eps=optim.eps,
    )
    scheduler = get_scheduler(
        optim.scheduler, optimizer, num_warmup_steps=optim.warmup_steps, num_training_steps=max_steps
    )
    return optimizer, scheduler


def trainable_table(transformer: torch.nn.Module, groups: Sequence[ParamGroup]) -> str:
    """A markdown table of the trainable parameters per group, and the frozen rest."""
    total = sum(parameter.numel() for parameter in transformer.parameters())
    rows = ["| group | tensors | parameters | share | lr |", "|---|---|---|---|---|"]
    for group in groups:
        rows.append(
            f"| {group.name} | {len(group.names)} | {group.count:,} | {group.count / total:.2%} | {group.lr:g} |"
        )
    trained = sum(group.count for group in groups)
    rows.append(f"| frozen | - | {total - trained:,} | {(total - trained) / total:.2%} | - |")
    return "\n".join(rows)
