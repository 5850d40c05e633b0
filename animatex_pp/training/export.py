"""Whole weights out of the engine: the export at the end of a run, and the copy validation generates with.

Export writes the trainable weights (LoRA adapter + pose streams, gathered under ZeRO-3) as safetensors and a
complete pipeline folder that `AnimateXPipeline.from_pretrained` loads, the LoRA folded into the DiT by diffusers'
`fuse_lora` or kept as diffusers' LoRA file beside it (`trainer.export.merge_lora`); either way diffusers'
`unload_lora` then puts the plain linears back, so the folder's transformer is a plain `AnimateXTransformer3DModel`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from animatex_pp.io.files import atomic_directory, atomic_output

TRAINABLE_FILE = "trainable.safetensors"
PIPELINE_FOLDER = "pipeline"


def gathered_state(model: torch.nn.Module, trainable_only: bool, is_main: bool) -> dict[str, torch.Tensor]:
    """Whole parameters in fp32 on rank 0's CPU (buffers are rebuilt from the config), gathered one at a time under
    ZeRO-3 so that no rank holds the whole model on its device; a collective call (other ranks get an empty dict).

    A trainable parameter comes from the optimizer's fp32 master (`deepspeed.utils.safe_get_full_fp32_param`) where
    the engine keeps one apart from the weight the forward reads, which may be its 16-bit rounding.
    """
    import deepspeed
    from deepspeed.utils import safe_get_full_fp32_param

    state = {}
    for name, parameter in model.named_parameters():
        if trainable_only and not parameter.requires_grad:
            continue
        master = safe_get_full_fp32_param(parameter) if parameter.requires_grad else None
        if master is not None:
            if is_main:
                state[name] = master.detach().float().cpu().clone()
            continue
        with deepspeed.zero.GatheredParameters([parameter], modifier_rank=None):
            if is_main:
                state[name] = parameter.detach().float().cpu().clone()
    return state


def cast_parameters_like(model: torch.nn.Module, template: torch.nn.Module) -> torch.nn.Module:
    """`model` with each parameter in the dtype of `template`'s parameter of that name; buffers (Wan's rotary
    tables) keep theirs, as `ModelMixin.from_pretrained` keeps them: a bf16 rotary table shifts every position."""
    dtypes = {name: parameter.dtype for name, parameter in template.named_parameters()}
    for name, parameter in model.named_parameters():
        parameter.data = parameter.data.to(dtypes[name])
    return model


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


def export(pipeline, model: torch.nn.Module, out: Path, merge_lora: bool, is_main: bool) -> Path | None:
    """Write `out/trainable.safetensors` and the pipeline folder `out/pipeline`; collective under ZeRO-3."""
    state = gathered_state(model, trainable_only=False, is_main=is_main)
    if not is_main:
        return None
    out.mkdir(parents=True, exist_ok=True)
    trainable = sorted(name for name, parameter in model.named_parameters() if parameter.requires_grad)
    with atomic_output(out / TRAINABLE_FILE) as temporary:
        save_file({name: state[name].contiguous() for name in trainable}, str(temporary))

    transformer = materialize(model, state)
    lora_layers = lora_config = None
    if getattr(transformer, "peft_config", None):
        if merge_lora:
            transformer.fuse_lora()
        else:
            from peft.utils import get_peft_model_state_dict

            lora_layers = get_peft_model_state_dict(transformer)
            # rank and alpha travel with the weights: without them a loader takes alpha = rank (scale 1)
            lora_config = next(iter(transformer.peft_config.values())).to_dict()
        transformer.unload_lora()
    exported = type(pipeline)(**dict(pipeline.components, transformer=transformer))
    with atomic_directory(out / PIPELINE_FOLDER) as folder:
        exported.save_pretrained(folder)
        if lora_layers is not None:
            type(pipeline).save_lora_weights(folder, transformer_lora_layers=lora_layers,
                                             transformer_lora_adapter_metadata=lora_config)  # fmt: skip
    return out / PIPELINE_FOLDER
