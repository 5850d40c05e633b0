"""bf16 training under DeepSpeed, checked on a CPU (DeepSpeed's mixed precision runs there): the frozen weights and
the modules Wan keeps in fp32 stay exact through a step, the export writes the optimizer's fp32 masters, and a ZeRO-3
validation keeps the rotary tables in fp32."""

import deepspeed
import torch
from deepspeed.utils import safe_get_full_fp32_param
from safetensors.torch import load_file

from animatex_pp.models.transformer import AnimateXTransformer3DModel
from animatex_pp.testing import tiny_components
from animatex_pp.training import train, validation
from animatex_pp.training import trainer as trainer_module
from animatex_pp.training.config import compose_config
from animatex_pp.training.export import TRAINABLE_FILE
from tests.helpers.training import tiny_overrides


def kept_in_fp32(name: str) -> bool:
    """Wan's `_keep_in_fp32_modules`, matched per name part as diffusers' loader matches them."""
    return any(module in name.split(".") for module in AnimateXTransformer3DModel._keep_in_fp32_modules)


def train_one_bf16_step(clip_folder, run_dir, monkeypatch, *extra) -> dict:
    """Train the tiny model one optimizer step on one rank with `deepspeed.bf16=true`; whether bf16 was on, the
    parameters' dtypes in the engine, and what it held when the run exported (its parameters, their fp32 masters)."""
    seen = {}
    real_initialize, real_export = deepspeed.initialize, trainer_module.export

    def recording_initialize(*args, **kwargs):
        returned = engine, *_ = real_initialize(*args, **kwargs)
        seen["bf16"] = engine.torch_autocast_enabled() or engine.bfloat16_enabled()
        seen["dtypes"] = {name: parameter.dtype for name, parameter in engine.module.named_parameters()}
        return returned

    def recording_export(pipeline, model, out, merge_lora, is_main):
        seen["parameters"] = {name: parameter.detach().clone() for name, parameter in model.named_parameters()}
        seen["trainable"] = [name for name, parameter in model.named_parameters() if parameter.requires_grad]
        masters = {name: safe_get_full_fp32_param(parameter) for name, parameter in model.named_parameters()
                   if parameter.requires_grad}  # fmt: skip
        seen["masters"] = {name: None if master is None else master.cpu().clone() for name, master in masters.items()}
        return real_export(pipeline, model, out, merge_lora, is_main)

    monkeypatch.setattr(deepspeed, "initialize", recording_initialize)
    monkeypatch.setattr(trainer_module, "export", recording_export)
    overrides = tiny_overrides(clip_folder / "metadata.jsonl", run_dir, "deepspeed.bf16=true", "trainer.max_steps=1",
                               *extra)  # fmt: skip
    train(compose_config(overrides))
    assert seen["bf16"]  # bf16 really was on: the checks mean something
    return seen


def test_a_bf16_step_leaves_frozen_and_fp32_modules_exact_and_the_export_writes_the_fp32_masters(
    clip_folder, tmp_path, monkeypatch
):
    original = dict(tiny_components(seed=0)["transformer"].named_parameters())  # the trainer's init, in fp32
    seen = train_one_bf16_step(clip_folder, tmp_path / "run", monkeypatch, "deepspeed=zero2")
    parameters, trainable = seen["parameters"], seen["trainable"]
    assert any(kept_in_fp32(name) for name in parameters)  # norms, time embedder, modulation table
    for name, parameter in parameters.items():
        if kept_in_fp32(name):
            assert parameter.dtype == torch.float32, name
        if name not in trainable:
            # peft moved the LoRA targets' weights under `base_layer`
            assert torch.equal(parameter, original[name.replace(".base_layer", "")]), name

    exported = load_file(tmp_path / "run" / "export" / TRAINABLE_FILE)
    assert sorted(exported) == sorted(trainable)
    for name in trainable:
        master = seen["masters"][name]
        assert master is not None and master.dtype == torch.float32, name  # ZeRO-2 keeps fp32 masters
        assert torch.equal(exported[name], master), name
    # the step moved the weights: the masters are not simply the initial values
    assert any(not torch.equal(exported[name], original[name]) for name in trainable if name in original)


def test_a_zero3_validation_under_bf16_keeps_the_rotary_tables_in_fp32(clip_folder, tmp_path, monkeypatch):
    generated_with = []
    real_generate = validation._generate

    def recording_generate(pipe, *args, **kwargs):
        transformer = pipe.transformer
        tensors = [*transformer.named_parameters(), *transformer.named_buffers()]
        generated_with.append({name: tensor.dtype for name, tensor in tensors})
        return real_generate(pipe, *args, **kwargs)

    monkeypatch.setattr(validation, "_generate", recording_generate)
    one_clip = ["deepspeed=zero3", "validation=default", "validation.every=1", "validation.num_samples=1",
                "validation.num_inference_steps=1", "trainer.export.enabled=false"]  # fmt: skip
    seen = train_one_bf16_step(clip_folder, tmp_path / "run", monkeypatch, *one_clip)
    assert len(generated_with) == 1  # one clip, generated with the gathered copy of the partitioned weights
    dtypes = generated_with[0]
    assert {name: dtypes[name] for name in ("rope.freqs_cos", "rope.freqs_sin")} == dict.fromkeys(
        ("rope.freqs_cos", "rope.freqs_sin"), torch.float32
    )
    assert {name: dtype for name, dtype in dtypes.items() if name in seen["dtypes"]} == seen["dtypes"]
