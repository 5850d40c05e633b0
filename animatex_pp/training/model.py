"""The model side of training: the pipeline whose encoders make the inputs, the transformer's trainable part, and
the optimizer over it.

Partial-parameter training (docs/training.md, "Partial-parameter training"): peft LoRA on the DiT modules a name
pattern selects (official: q, k, v, o of self- and cross-attention and both FFN linears), the pose streams trained
in full, any further modules a pattern selects trained in full, everything else frozen. Parameter groups take their
own learning rates by name pattern (Animate-X trains its IPI at 5e-7 and the rest at 5e-5), and `trainable_table`
prints what trains.

Under ZeRO-3 the transformer is built partitioned (`partitioned_transformer`): no rank ever holds it whole, on its
device or in host memory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from diffusers.optimization import get_scheduler
from diffusers.utils import SAFE_WEIGHTS_INDEX_NAME, SAFETENSORS_WEIGHTS_NAME
from peft import LoraConfig

from animatex_pp.models.pose_streams import sinusoidal_position_table
from animatex_pp.models.transformer import AnimateXTransformer3DModel
from animatex_pp.models.weight_files import check_pipeline_folder
from animatex_pp.pipelines.checks import torch_dtype
from animatex_pp.pipelines.loading import REBUILD_HINT, load_pipeline
from animatex_pp.pipelines.pipeline_animatex import AnimateXPipeline
from animatex_pp.training.schema import (
    AdapterConfig,
    ModelConfig,
    ModelSource,
    OptimConfig,
    ParamGroupConfig,
    WeightDtype,
)


def build_pipeline(
    model: ModelConfig | Mapping[str, Any], deepspeed_settings: Mapping[str, Any] | None = None
) -> AnimateXPipeline:
    """The tiny in-process pipeline (`source: tiny`) or a pipeline folder (`source: pretrained`, `path`), from the
    `model` config section (or the same section as a dict).

    With the DeepSpeed config of a ZeRO-3 run (`distributed.deepspeed_config`) the transformer is built partitioned
    over the ranks of the world already joined (`partitioned_transformer`), in fp32; the other components as usual.
    """
    if isinstance(model, Mapping):
        model = ModelConfig(**model)
    is_zero3 = deepspeed_settings is not None and deepspeed_settings["zero_optimization"]["stage"] == 3
    zero3 = deepspeed_settings if is_zero3 else None
    if ModelSource(model.source) == ModelSource.tiny:
        from animatex_pp.testing import tiny_components

        components = tiny_components(seed=model.init_seed, **model.transformer)
        if zero3 is not None:
            # the tiny model's random weights exist only in-process: they are the source the partitions load from
            whole = components["transformer"]
            state = whole.state_dict()
            components["transformer"] = partitioned_transformer(whole.config, state.get, zero3)
        if model.path:
            # a SynthX VAE (or any other component folder) replaces the random one
            from diffusers import AutoencoderKLWan

            components["vae"] = AutoencoderKLWan.from_pretrained(model.path, subfolder="vae")
        return AnimateXPipeline(**components)
    overrides = model.pretrained_overrides()
    if not model.path:
        raise ValueError(
            "model.source=pretrained needs model.path=FOLDER: a pipeline folder (`animatex-pp convert`, a training "
            "run's export/pipeline, or the SynthX base that `animatex-pp demo` writes in DIR/base/pipeline)"
        )
    # The VAE and the CLIPs stay in float32, as the pipeline runs them.
    dtype = WeightDtype(model.dtype).value
    check_pipeline_folder(model.path, "the pipeline folder", REBUILD_HINT)
    folder = Path(model.path) / "transformer"
    if zero3 is None:
        if not overrides:
            return load_pipeline(model.path, dtype=dtype)
        transformer = AnimateXTransformer3DModel.from_pretrained(folder, torch_dtype=torch_dtype(dtype), **overrides)
        return load_pipeline(model.path, dtype=dtype, transformer=transformer)
    with _safetensors_reader(folder) as read:
        config = {**AnimateXTransformer3DModel.load_config(folder), **overrides}
        transformer = partitioned_transformer(config, read, zero3)
    return load_pipeline(model.path, dtype=dtype, transformer=transformer)


@contextlib.contextmanager
def _safetensors_reader(folder: Path):
    """A function from weight name to tensor (None for a name the folder lacks) over a diffusers model folder's
    safetensors (one file, or shards and their index), reading one tensor at a time."""
    from safetensors import safe_open

    index = folder / SAFE_WEIGHTS_INDEX_NAME
    if index.is_file():
        files = {name: folder / file for name, file in json.loads(index.read_text())["weight_map"].items()}
    elif (folder / SAFETENSORS_WEIGHTS_NAME).is_file():
        with safe_open(folder / SAFETENSORS_WEIGHTS_NAME, framework="pt") as single:
            files = dict.fromkeys(single.keys(), folder / SAFETENSORS_WEIGHTS_NAME)
    else:
        raise ValueError(
            f"{folder} holds no {SAFETENSORS_WEIGHTS_NAME} (nor a sharded {SAFE_WEIGHTS_INDEX_NAME}): ZeRO-3 loads "
            f"the transformer from safetensors; {REBUILD_HINT}"
        )
    with contextlib.ExitStack() as stack:
        opened = {path: stack.enter_context(safe_open(path, framework="pt")) for path in set(files.values())}
        yield lambda name: opened[files[name]].get_tensor(name) if name in files else None


def partitioned_transformer(
    config: Mapping[str, Any], read: Callable[[str], torch.Tensor | None], zero3_settings: Mapping[str, Any]
) -> AnimateXTransformer3DModel:
    """The transformer of `config`, its weights read by name from `read`, partitioned by ZeRO-3 as it is built.

    diffusers' `from_pretrained` knows nothing of ZeRO-3, and the model cannot be built under `deepspeed.zero.Init`:
    that context partitions each submodule as soon as it is built, and the model's own `__init__` then initialises
    the pose streams' (already partitioned) weights. So the model is built on the meta device (nothing allocated),
    then each module in turn, its children first, gets its weights on the device and is partitioned with
    `deepspeed.zero.Init(module=...)`, which broadcasts rank 0's values; one module is whole at a time. Streams the
    weights lack (a plain Wan2.1 folder) are initialised as `from_pretrained` does, gathered.
    """
    import deepspeed

    device = _local_device()
    with torch.device("meta"):
        transformer = AnimateXTransformer3DModel.from_config(config)
    _compute_unstored_buffers(transformer, device)
    stream_prefixes = {name: f"{name}." for name in transformer.streams()}
    fresh = sorted(name for name, prefix in stream_prefixes.items() if read(_first_parameter_name(transformer, name))
                   is None)  # fmt: skip
    fresh_prefixes = tuple(stream_prefixes[name] for name in fresh)
    missing = []
    # named_modules lists a module before its children: reversed, every child is partitioned before its parent
    for prefix, module in reversed(list(transformer.named_modules())):
        local = [name for name, _ in module.named_parameters(recurse=False)]
        local += [name for name, buffer in module.named_buffers(recurse=False) if buffer.is_meta]
        if not local:
            continue
        module.to_empty(device=device, recurse=False)
        with torch.no_grad():
            for name in local:
                key = f"{prefix}.{name}" if prefix else name
                value = read(key)
                if value is not None:
                    getattr(module, name).copy_(value)
                elif not key.startswith(fresh_prefixes):
                    missing.append(key)
        deepspeed.zero.Init(module=module, config_dict_or_path=dict(zero3_settings))
    if missing:
        raise ValueError(f"the transformer's weights lack {len(missing)} tensors ({missing[:3]}): {REBUILD_HINT}")
    if fresh:
        parameters = [parameter for name in fresh for parameter in getattr(transformer, name).parameters()]
        with deepspeed.zero.GatheredParameters(parameters, modifier_rank=0):
            transformer.initialize_stream_weights(fresh)
    return transformer


def _first_parameter_name(transformer: AnimateXTransformer3DModel, stream: str) -> str:
    name, _ = next(iter(getattr(transformer, stream).named_parameters()))
    return f"{stream}.{name}"


def _compute_unstored_buffers(transformer: AnimateXTransformer3DModel, device: torch.device) -> None:
    """The buffers no checkpoint stores (computed in `__init__`, empty on the meta device), computed on `device`:
    Wan's rotary tables and the IPI's sinusoidal frame positions."""
    config = transformer.config
    with torch.device("cpu"):
        transformer.rope = type(transformer.rope)(config.attention_head_dim, config.patch_size,
                                                  config.rope_max_seq_len).to(device)  # fmt: skip
    ipi = transformer.implicit_pose_indicator
    if ipi is not None:
        table = ipi.keypoint_encoder.position_table
        ipi.keypoint_encoder.position_table = sinusoidal_position_table(*table.shape).to(device)
    stored = transformer.state_dict(keep_vars=True)
    unstored = [name for name, buffer in transformer.named_buffers() if buffer.is_meta and name not in stored]
    if unstored:
        raise RuntimeError(f"buffers {unstored} are neither in the checkpoint nor computed by the ZeRO-3 build")


def _local_device() -> torch.device:
    """This rank's device (the world sets the current CUDA device per rank)."""
    return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")


def cast_trainable_to_fp32(transformer: torch.nn.Module) -> None:
    """The trainable parameters in fp32 (diffusers' `cast_training_params`), the frozen ones as they were loaded: under
    bf16 autocast the optimizer updates fp32 weights, which an update of lr x gradient cannot round away."""
    from diffusers.training_utils import cast_training_params

    cast_training_params(transformer, dtype=torch.float32)


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
