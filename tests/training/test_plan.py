"""`mode=plan` (the one plan switch): parameter counts and DeepSpeed's memory estimate on the meta device, without
weights or a world."""

import json
import math

import pytest
import torch

from animatex_pp.cli import main
from animatex_pp.models.presets import get_preset
from animatex_pp.models.transformer import AnimateXTransformer3DModel
from animatex_pp.training import train
from animatex_pp.training.config import compose_config
from animatex_pp.training.model import apply_adapters, param_groups
from animatex_pp.training.schema import load_train_config

PAPER = "recipe=animatex_pp_wan14b_480p"


def linear(inputs: int, outputs: int) -> int:
    return inputs * outputs + outputs


def wan_i2v_linear_parameters(preset: dict) -> int:
    """The Wan2.1 I2V DiT's linear and conv weights, from the preset's dims (its norms add about 0.02 % more)."""
    width = preset["num_attention_heads"] * preset["attention_head_dim"]
    ffn, added = preset["ffn_dim"], preset["added_kv_proj_dim"]
    # self-attention q, k, v, o; cross-attention q, k, v, o and the image keys and values; the FFN's two linears
    block = 4 * linear(width, width) + 4 * linear(width, width) + 2 * linear(added, width)
    block += linear(width, ffn) + linear(ffn, width)
    patch = math.prod(preset["patch_size"])
    embedders = preset["in_channels"] * patch * width + width  # patch embedding
    embedders += linear(preset["freq_dim"], width) + linear(width, width) + linear(width, 6 * width)  # time
    embedders += linear(preset["text_dim"], width) + linear(width, width)  # text
    embedders += linear(preset["image_dim"], preset["image_dim"]) + linear(preset["image_dim"], width)  # image
    embedders += linear(width, preset["out_channels"] * patch)  # output projection
    return preset["num_layers"] * block + embedders


def test_the_14b_recipe_plan_counts_wan_i2v_14b_and_a_small_lora(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the recipe's relative model.path does not exist here: the preset is planned
    result = train(compose_config([PAPER, "mode=plan", f"run_dir={tmp_path / 'run'}"]))
    assert not torch.distributed.is_initialized()

    preset = get_preset("wan2.1-i2v-14b-480p")
    width, ffn, layers = 5120, preset["ffn_dim"], preset["num_layers"]
    linears = wan_i2v_linear_parameters(preset)
    assert 16.3e9 < linears < 16.5e9  # Wan2.1-I2V-14B: the T2V model's 14B plus 2.1B of image cross-attention
    base = result["architecture"]["base"]
    assert 0 <= base - linears < 1e-3 * linears
    streams = result["architecture"]["total"] - base
    assert 0.1e9 < streams < 0.2e9  # the IPI's resampler and keypoint encoder, and two small conv stacks

    rank = 128
    # rank x (in + out) per adapted linear: 8 attention projections of width x width, the FFN's pair
    lora = layers * rank * (8 * 2 * width + 2 * (width + ffn))
    assert result["groups"]["lora"]["parameters"] == lora
    assert result["total_parameters"] == result["architecture"]["total"] + lora
    assert result["trainable_parameters"] == lora + streams
    assert result["trainable_parameters"] / result["total_parameters"] < 0.05
    assert result["groups"]["implicit_pose_indicator"]["lr"] == 5e-7

    memory = result["deepspeed"]
    assert (memory["stage"], memory["num_gpus"]) == (3, 8)
    total, trainable = result["total_parameters"], result["trainable_parameters"]
    largest = linear(width, 6 * width)  # the time projection to the six modulation vectors
    assert result["largest_layer_parameters"] == largest
    # ZeRO-3: the gathered largest layer in fp32, plus 18 bytes a parameter (16-bit weight and gradient, fp32
    # master weight, gradient and Adam moments) split over 8 GPUs; with adapters, frozen weights only, as the fp32
    # partitions the trainer builds, and whole on every GPU what ZeRO-3 does not partition: the parameters of at most
    # 100,000 elements (DeepSpeed's persistence threshold) in fp32 and the buffers (the rotary tables)
    assert memory["per_gpu_bytes"] == 4 * largest + 18 * total // 8
    with torch.device("meta"):
        model = AnimateXTransformer3DModel.from_preset("wan2.1-i2v-14b-480p")
        apply_adapters(model, load_train_config(compose_config([PAPER, "mode=plan", "run_dir=/tmp/unused"])).adapter)
    small = sum(parameter.numel() for parameter in model.parameters() if parameter.numel() <= 100_000)
    buffers = dict(model.named_buffers())  # Wan's rotary tables and the IPI's frame positions, in fp32
    assert sorted(buffers) == ["implicit_pose_indicator.keypoint_encoder.position_table", "rope.freqs_cos",
                               "rope.freqs_sin"]  # fmt: skip
    assert memory["unpartitioned_per_gpu_bytes"] == 4 * small + 4 * sum(buffer.numel() for buffer in buffers.values())
    assert memory["adapter_per_gpu_bytes"] == (4 * largest + 18 * trainable // 8 + 4 * (total - trainable) // 8
                                               + memory["unpartitioned_per_gpu_bytes"])  # fmt: skip
    assert memory["adapter_per_gpu_bytes"] < memory["per_gpu_bytes"] / 3

    activations = result["activations"]
    assert activations["latent_frames"] == 21 and activations["tokens_per_sample"]["480x832"] == 21 * 30 * 52
    assert activations["block_inputs_bytes_per_gpu"] == 21 * 30 * 52 * width * 2 * layers

    assert json.loads((tmp_path / "run" / "plan.json").read_text()) == json.loads(json.dumps(result))
    out = capsys.readouterr().out
    assert "| lora | 800 | 613,416,960 |" in out and "| frozen |" in out
    assert "8 GPUs per node" in out and "offload_param=cpu" in out and "not estimated" in out


def test_the_tiny_plan_counts_what_training_builds(tmp_path):
    cfg = compose_config(["mode=plan", f"run_dir={tmp_path}"])
    result = train(cfg)
    config = load_train_config(cfg)
    transformer = AnimateXTransformer3DModel.from_preset("tiny")  # on the CPU with its weights, as training builds it
    apply_adapters(transformer, config.adapter)
    groups = param_groups(transformer, config.adapter.param_groups, config.optim.lr)
    assert result["total_parameters"] == sum(parameter.numel() for parameter in transformer.parameters())
    assert result["groups"] == {group.name: {"tensors": len(group.names), "parameters": group.count, "lr": group.lr}
                                for group in groups}  # fmt: skip
    # ZeRO-0 on one GPU: every state whole, 2 + 18 bytes a parameter
    assert result["deepspeed"]["per_gpu_bytes"] == 20 * result["total_parameters"]


def test_offload_leaves_little_but_weights_on_the_gpu(tmp_path):
    zero2 = train(compose_config(["mode=plan", "deepspeed=zero2_offload", "trainer.num_processes=2",
                                  f"run_dir={tmp_path}"]))  # fmt: skip
    assert zero2["deepspeed"]["per_gpu_bytes"] == 2 * zero2["total_parameters"]  # the 16-bit weights only
    zero3 = train(compose_config(["mode=plan", "deepspeed=zero3_offload", "trainer.num_processes=2",
                                  f"run_dir={tmp_path}"]))  # fmt: skip
    memory = zero3["deepspeed"]
    # the largest layer gathered in fp32, and with the adapters what ZeRO-3 leaves whole (small parameters, buffers)
    assert memory["per_gpu_bytes"] == 4 * zero3["largest_layer_parameters"]
    assert memory["adapter_per_gpu_bytes"] == memory["per_gpu_bytes"] + memory["unpartitioned_per_gpu_bytes"]
    assert memory["per_cpu_bytes"] > memory["per_gpu_bytes"]


def test_a_pipeline_folder_is_planned_from_its_transformer_config(tmp_path):
    with torch.device("meta"):
        AnimateXTransformer3DModel.from_preset("tiny", num_layers=3).save_config(tmp_path / "pipe" / "transformer")
    result = train(compose_config([PAPER, "mode=plan", f"model.path={tmp_path / 'pipe'}", f"run_dir={tmp_path}"]))
    assert result["model"] == str(tmp_path / "pipe" / "transformer" / "config.json")
    with torch.device("meta"):
        expected = sum(p.numel() for p in AnimateXTransformer3DModel.from_preset("tiny", num_layers=3).parameters())
    assert result["architecture"]["total"] == expected

    (tmp_path / "not_a_pipeline").mkdir()
    with pytest.raises(FileNotFoundError, match="not a pipeline folder"):
        train(compose_config([PAPER, "mode=plan", f"model.path={tmp_path / 'not_a_pipeline'}", f"run_dir={tmp_path}"]))


def test_a_pretrained_model_takes_only_its_stream_switches_from_model_transformer(tmp_path):
    with torch.device("meta"):
        AnimateXTransformer3DModel.from_preset("tiny").save_config(tmp_path / "pipe" / "transformer")
    common = [PAPER, "mode=plan", f"model.path={tmp_path / 'pipe'}", f"run_dir={tmp_path}"]
    result = train(compose_config([*common, "+model.transformer.use_ipi=false"]))
    assert result["model"].endswith("{'use_ipi': False}") and "implicit_pose_indicator" not in result["architecture"]
    with pytest.raises(ValueError, match=r"\['num_layers'\] apply to a tiny model.*use_ipi"):
        train(compose_config([*common, "+model.transformer.num_layers=2"]))


def test_the_plan_command_writes_plan_json(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["train", PAPER, "mode=plan", f"hydra.run.dir={tmp_path / 'run'}"]) == 0
    plan = json.loads((tmp_path / "run" / "plan.json").read_text())
    assert plan["deepspeed"]["stage"] == 3 and plan["trainable_parameters"] < 0.05 * plan["total_parameters"]
    assert '"adapter_per_gpu_gib": 9.8' in capsys.readouterr().out  # the command's summary of the returned numbers


def test_plan_mode_is_one_switch(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["train", PAPER, "trainer.plan=true", f"hydra.run.dir={tmp_path / 'run'}"]) == 1  # Hydra's refusal
    assert "Key 'plan' not in 'TrainerConfig'" in capsys.readouterr().err
    assert not (tmp_path / "run" / "plan.json").exists()
