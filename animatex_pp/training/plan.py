"""`mode=plan`: what a run would train and the GPU memory its model states need, without any weights.

The transformer is built on the meta device (nothing allocated) from what training would load: the tiny preset
with `model.transformer` overrides, a pipeline folder's `transformer/config.json`, or, when that folder does not
exist yet, the preset `model.preset` names. The adapters and parameter groups are applied by the training code
itself, so the table is the one a run prints at its start.

Memory comes from DeepSpeed's ZeRO estimators for the configured stage on `trainer.num_processes` GPUs of one node.
Their `..._all_live(model)` variants count a model's parameters once per `data_ptr()`, which is 0 for every meta
tensor, so the counts are computed here and given to the `..._all_cold` variants. DeepSpeed assumes every parameter
trains (16-bit weights and gradients, fp32 master weights and Adam states); with adapters only the trainable part
carries gradients and optimizer states, so the plan gives that estimate as well: DeepSpeed's formula for the
trainable parameters plus the frozen ones: a 16-bit copy under ZeRO 0-2, fp32 partitions under ZeRO-3 (the trainer
builds the transformer partitioned, in fp32, under `deepspeed.zero.Init`), plus what ZeRO-3 leaves whole on every GPU:
the parameters at or below DeepSpeed's persistence threshold and the buffers. Activations are not estimated, beyond
the hidden states every block keeps for backward. Nothing here makes a process group: the estimators only compute and
print.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from animatex_pp.io.files import atomic_output
from animatex_pp.models.transformer import AnimateXTransformer3DModel, count_parameters
from animatex_pp.pipelines.geometry import VaeFactors
from animatex_pp.training.model import apply_adapters, param_groups, trainable_table
from animatex_pp.training.schema import ModelConfig, ModelSource, TrainConfig

PLAN_FILE = "plan.json"
# The 16-bit weights and activations DeepSpeed's estimates assume (bf16 on GPU).
HALF_BYTES = 2
# ZeRO-3 partitions the transformer's weights in fp32 (`training.model.partitioned_transformer`).
FULL_BYTES = 4
# DeepSpeed's `stage3_param_persistence_threshold` default: smaller parameters stay whole on every GPU.
PERSISTENCE_THRESHOLD = 100_000
GIB = 2**30


def build_meta_transformer(model: ModelConfig) -> tuple[AnimateXTransformer3DModel, str]:
    """The transformer training would build, on the meta device, and where its config came from."""
    overrides = dict(model.transformer)
    if model.source == ModelSource.tiny:
        with torch.device("meta"):
            transformer = AnimateXTransformer3DModel.from_preset("tiny", **overrides)
        return transformer, f"preset tiny {overrides or ''}".strip()
    overrides = model.pretrained_overrides()
    switched = f" {overrides}" if overrides else ""
    folder = Path(model.path) if model.path else None
    if folder is not None and folder.exists():
        config_file = folder / "transformer" / "config.json"
        if not config_file.is_file():
            raise FileNotFoundError(f"model.path={folder} is not a pipeline folder: no {config_file}")
        with torch.device("meta"):
            transformer = AnimateXTransformer3DModel.from_config(
                {**AnimateXTransformer3DModel.load_config(config_file.parent), **overrides}
            )
        return transformer, f"{config_file}{switched}"
    if not model.preset:
        raise ValueError(f"no pipeline folder at model.path={folder}: give the folder's path, or model.preset=NAME")
    with torch.device("meta"):
        transformer = AnimateXTransformer3DModel.from_preset(model.preset, **overrides)
    return transformer, f"preset {model.preset}{switched} (no pipeline folder at {folder})"


def vae_factors(model: ModelConfig) -> VaeFactors:
    """The factors of the VAE training would load: its folder's config when `model.path` has one, else Wan's."""
    config_file = Path(model.path) / "vae" / "config.json" if model.path else None
    if config_file is not None and config_file.is_file():
        return VaeFactors.from_config(json.loads(config_file.read_text()))
    return VaeFactors()


def zero_estimate(
    stage: int,
    offload_optimizer: bool,
    offload_param: bool,
    total: int,
    trainable: int,
    largest_layer: int,
    gpus: int,
    unpartitioned: int = 0,
) -> dict[str, Any]:
    """DeepSpeed's model-state memory for this setup: its printed table and, in bytes, the configured option with
    every parameter trained (DeepSpeed's assumption) and, per GPU, with only the trainable ones (the adapters' case);
    `unpartitioned` is the bytes ZeRO-3 keeps whole on every GPU (`unpartitioned_bytes`).

    No CPU figure for the adapters' case: besides offloaded states, DeepSpeed's CPU column holds the model as every
    rank loads it before partitioning (fp32, frozen weights included), which the adapters do not change.
    """
    from deepspeed.runtime.zero.stage3 import (
        estimate_zero3_model_states_mem_needs,
        estimate_zero3_model_states_mem_needs_all_cold,
    )
    from deepspeed.runtime.zero.stage_1_and_2 import (
        estimate_zero2_model_states_mem_needs,
        estimate_zero2_model_states_mem_needs_all_cold,
    )

    frozen = total - trainable
    table = io.StringIO()
    if stage == 3:
        # The trainer builds the transformer partitioned (zero.Init): no rank holds it whole in host memory.
        options = {"cpu_offload": offload_optimizer, "cpu_offload_params": offload_param, "zero_init": True}
        label = f"offload_param={int(offload_param)}, offload_optimizer={int(offload_optimizer)}, zero_init=1"
        estimator = "DeepSpeed's ZeRO-3 estimator"
        with contextlib.redirect_stdout(table):
            estimate_zero3_model_states_mem_needs_all_cold(total, largest_layer, num_gpus_per_node=gpus)
        cpu, gpu, _ = estimate_zero3_model_states_mem_needs(total, largest_layer, gpus, **options)
        _, gpu_adapter, _ = estimate_zero3_model_states_mem_needs(trainable, largest_layer, gpus, **options)
        # ZeRO-3 partitions the frozen weights too (in fp32), or keeps them on the CPU with offload_param; the
        # persistent small parameters and the buffers stay whole on every GPU.
        gpu_adapter += (0 if offload_param else FULL_BYTES * frozen // gpus) + unpartitioned
    else:
        partitions = 1 if stage == 0 else gpus
        options = {"cpu_offload": offload_optimizer}
        label = f"offload_optimizer={int(offload_optimizer)}"
        estimator = {
            0: "DeepSpeed's ZeRO-1/2 estimator for one GPU, as ZeRO-0 replicates every state on every GPU",
            1: "DeepSpeed's ZeRO-1/2 estimator, which partitions gradients as ZeRO-2 does (ZeRO-1 keeps them whole)",
            2: "DeepSpeed's ZeRO-1/2 estimator",
        }[stage]
        with contextlib.redirect_stdout(table):
            estimate_zero2_model_states_mem_needs_all_cold(total, num_gpus_per_node=partitions)
        cpu, gpu = estimate_zero2_model_states_mem_needs(total, partitions, **options)
        _, gpu_adapter = estimate_zero2_model_states_mem_needs(trainable, partitions, **options)
        # Frozen weights are outside the optimizer: their 16-bit copy sits whole on every GPU.
        gpu_adapter += HALF_BYTES * frozen
    return {
        "stage": stage,
        "num_gpus": gpus,
        "num_nodes": 1,
        "options": label,
        "estimator": estimator,
        "per_gpu_bytes": gpu,
        "per_cpu_bytes": cpu,
        "adapter_per_gpu_bytes": gpu_adapter,
        "unpartitioned_per_gpu_bytes": unpartitioned if stage == 3 else 0,
        # DeepSpeed formats its offload device enum, which Python 3.11+ prints by its qualified name
        "table": table.getvalue().rstrip("\n").replace("OffloadDeviceEnum.cpu", "cpu"),
    }


def unpartitioned_bytes(transformer: torch.nn.Module) -> int:
    """What ZeRO-3 keeps whole on every GPU: the parameters at or below DeepSpeed's persistence threshold (fp32), which
    it does not partition after the first forward, and the buffers (the rotary tables), which it never partitions."""
    persistent = sum(p.numel() for p in transformer.parameters() if p.numel() <= PERSISTENCE_THRESHOLD)
    buffers = sum(buffer.numel() * buffer.element_size() for buffer in transformer.buffers())
    return FULL_BYTES * persistent + buffers


def activation_side(config: TrainConfig, model_config: Mapping[str, Any]) -> dict[str, Any]:
    """Tokens per sample for every bucket, and the hidden states all blocks keep for backward at the largest one."""
    clips = config.data.clips
    factors = vae_factors(config.model)
    patch_t, patch_h, patch_w = model_config["patch_size"]
    latent_frames = factors.latent_frames(clips.num_frames)
    grid = {}
    for height, width in clips.buckets:
        latent_height, latent_width = factors.latent_size(height, width)
        grid[f"{height}x{width}"] = (latent_frames // patch_t, latent_height // patch_h, latent_width // patch_w)
    tokens = {bucket: frames * rows * columns for bucket, (frames, rows, columns) in grid.items()}
    width = model_config["num_attention_heads"] * model_config["attention_head_dim"]
    kept = config.data.batch_size * max(tokens.values()) * width * HALF_BYTES * model_config["num_layers"]
    return {
        "latent_frames": latent_frames,
        "token_grid": grid,
        "tokens_per_sample": tokens,
        "block_inputs_bytes_per_gpu": kept,
        "note": "activations are not estimated; block_inputs_bytes_per_gpu is a lower bound (the bf16 hidden states "
        "entering every block, what gradient checkpointing keeps), for data.batch_size samples of the largest bucket",
    }


def _gib(size: int) -> str:
    return f"{size / GIB:,.2f} GiB"


def plan(config: TrainConfig) -> dict[str, Any]:
    """Print the trainable-parameter table and the memory estimate of the run `config` describes; write and return
    them (also as `plan.json` in `run_dir`). The config's own checks have refused what training would refuse."""
    ds = config.deepspeed
    transformer, origin = build_meta_transformer(config.model)
    architecture = count_parameters(transformer)
    # peft builds LoRA layers on the default device before moving them beside their base layer: on the meta device
    # that allocates nothing (else 2.4 GB for the 14B model's rank-128 LoRA, and seconds of random initialisation).
    with torch.device("meta"):
        apply_adapters(transformer, config.adapter)
    groups = param_groups(transformer, config.adapter.param_groups, config.optim.lr)
    total = sum(parameter.numel() for parameter in transformer.parameters())
    trainable = sum(group.count for group in groups)
    largest_layer = max(sum(p.numel() for p in module.parameters(recurse=False)) for module in transformer.modules())
    gpus = config.trainer.num_processes
    memory = zero_estimate(ds.stage, ds.offload_optimizer, ds.offload_param, total, trainable, largest_layer, gpus,
                           unpartitioned_bytes(transformer))  # fmt: skip
    activations = activation_side(config, transformer.config)
    result = {
        "mode": "plan",
        "model": origin,
        "total_parameters": total,
        "trainable_parameters": trainable,
        "frozen_parameters": total - trainable,
        "largest_layer_parameters": largest_layer,
        "architecture": architecture,
        "groups": {
            group.name: {"tensors": len(group.names), "parameters": group.count, "lr": group.lr} for group in groups
        },
        # the configured option's model states per GPU, as DeepSpeed estimates them and with the adapters
        "deepspeed_per_gpu_gib": round(memory["per_gpu_bytes"] / GIB, 2),
        "adapter_per_gpu_gib": round(memory["adapter_per_gpu_bytes"] / GIB, 2),
        "deepspeed": memory,
        "activations": activations,
    }
    tokens = ", ".join(f"{count:,} at {bucket}" for bucket, count in activations["tokens_per_sample"].items())
    print(
        f"plan: transformer from {origin}, built on the meta device (no weights)\n"
        f"parameters: {total:,} total, {trainable:,} trainable ({trainable / total:.2%})\n"
        f"{trainable_table(transformer, groups)}\n\n"
        f"ZeRO-{ds.stage} on {gpus} GPU(s) of one node, model states, from {memory['estimator']} (it assumes "
        f"every parameter trains):\n{memory['table']}\n"
        f"configured ({memory['options']}): {_gib(memory['per_gpu_bytes'])} per GPU, "
        f"{_gib(memory['per_cpu_bytes'])} CPU\n"
        f"with the adapters (gradients and optimizer states for the {trainable:,} trainable parameters only, the "
        f"frozen ones as {'fp32 partitions' if ds.stage == 3 else '16-bit weights'}"
        f"{', and ' + _gib(memory['unpartitioned_per_gpu_bytes']) + ' left whole' if ds.stage == 3 else ''}): "
        f"{_gib(memory['adapter_per_gpu_bytes'])} per GPU\n"
        f"activations: not estimated; tokens per sample: {tokens} ({activations['latent_frames']} latent frames); "
        f"the block inputs kept for backward alone take at least {_gib(activations['block_inputs_bytes_per_gpu'])} "
        f"per GPU at batch {config.data.batch_size}",
        flush=True,
    )
    with atomic_output(Path(config.run_dir) / PLAN_FILE) as temporary:
        temporary.write_text(json.dumps(result, indent=1))
    return result
