"""Import of released Animate-X++ checkpoints, checked against an independent re-implementation of the official code.

The oracle (`tests.helpers.official_release`) re-implements the official modules at tiny sizes. Its state dict, plus
LoRA pairs in DiffSynth names, *is* the synthetic release; its forward, injected into a plain diffusers Wan model
whose weights are merged by hand, is the reference output the converted model must reproduce.
"""

import copy
import datetime
import os
import stat

import pytest
import torch
from diffusers import WanTransformer3DModel

from animatex_pp.models.convert import (
    animatex_from_wan,
    convert_animatex_state_dict,
    infer_stream_config,
    load_animatex_checkpoint,
    official_ipi_blocks,
    save_safetensors,
)
from tests.helpers.official_release import (
    BASE_CONFIG,
    DIFFSYNTH_TARGETS,
    LORA_RANK,
    STREAM_CONFIG,
    synthetic_release,
)
from tests.helpers.transformer_inputs import BASE_INPUTS, make_inputs, run


def reference_output(wan, streams, state, inputs, with_ipi=True):
    """Hand-merged Wan + official stream outputs injected where the official DiT adds them."""
    merged = copy.deepcopy(wan)
    with torch.no_grad():
        for index, block in enumerate(merged.blocks):
            for name, module_of in DIFFSYNTH_TARGETS.items():
                prefix = f"pipe.dit.blocks.{index}.{name}"
                up, down = state[f"{prefix}.lora_B.default.weight"], state[f"{prefix}.lora_A.default.weight"]
                module_of(block).weight += up @ down

    pose_video = inputs["pose_video"]
    pose_video = torch.cat([pose_video[:, :, :1].repeat(1, 1, 3, 1, 1), pose_video], dim=2)
    with torch.no_grad():
        pose_tokens = streams.dwpose_embedding(pose_video)  # (B, D, F', H', W'), as patch_embedding's output
        reference = streams.randomref_embedding_pose(inputs["reference_pose"]).unsqueeze(2)
        hidden_states = inputs["hidden_states"].clone()
        hidden_states[:, 16:] += reference
        handles = [merged.patch_embedding.register_forward_hook(lambda module, args, output: output + pose_tokens)]
        if with_ipi:
            ipi = torch.stack(
                [
                    streams.ipi(k, c)
                    for k, c in zip(inputs["pose_keypoints"], inputs["driving_image_embeds"], strict=True)
                ]
            )  # (B, F_lat, D)

            def add_ipi(module, args):
                hidden, *rest = args
                tokens_per_frame = hidden.shape[1] // ipi.shape[1]
                return (hidden + ipi.repeat_interleave(tokens_per_frame, dim=1), *rest)

            for index in range(STREAM_CONFIG["ipi_block_start"], STREAM_CONFIG["ipi_block_end"]):
                handles.append(merged.blocks[index].register_forward_pre_hook(add_ipi))
        base_inputs = {**{k: inputs[k] for k in BASE_INPUTS}, "hidden_states": hidden_states}
        output = merged(**base_inputs).sample
    for handle in handles:
        handle.remove()
    return output


@pytest.fixture
def wan():
    torch.manual_seed(0)
    return WanTransformer3DModel(**BASE_CONFIG).eval()


def converted_inputs(with_ipi=True):
    inputs = make_inputs(5)
    if not with_ipi:
        inputs.pop("pose_keypoints"), inputs.pop("driving_image_embeds")
    return inputs


@pytest.mark.parametrize("with_ipi", [True, False], ids=["animate-x++", "animate-x++_simple"])
def test_converted_release_matches_the_official_computation(wan, with_ipi, tmp_path):
    state, streams = synthetic_release(wan, with_ipi)
    path = tmp_path / "animate-x++.ckpt"
    torch.save(state, path)
    inputs = converted_inputs(with_ipi)
    expected = reference_output(wan, streams, state, inputs, with_ipi)

    model = animatex_from_wan(copy.deepcopy(wan), path, **{k: v for k, v in STREAM_CONFIG.items() if k != "use_ipi"})
    assert (model.implicit_pose_indicator is not None) == with_ipi
    output = run(model.eval(), inputs)
    assert (output - run(wan, {k: inputs[k] for k in BASE_INPUTS})).abs().max() > 1e-2  # the release does something
    assert (output - expected).abs().max() <= 1e-4


def test_lora_as_peft_adapter_matches_merge(wan):
    state, _ = synthetic_release(wan)
    inputs = converted_inputs()
    merged = animatex_from_wan(copy.deepcopy(wan), state, lora="merge", **STREAM_CONFIG).eval()
    adapter = animatex_from_wan(copy.deepcopy(wan), state, lora="adapter", **STREAM_CONFIG).eval()
    assert "animatex" in adapter.peft_config
    torch.testing.assert_close(run(adapter, inputs), run(merged, inputs), rtol=1e-4, atol=1e-4)
    adapter.disable_adapters()
    no_lora = animatex_from_wan(
        copy.deepcopy(wan), {k: v for k, v in state.items() if "lora" not in k}, **STREAM_CONFIG
    )
    torch.testing.assert_close(run(adapter, inputs), run(no_lora.eval(), inputs), rtol=1e-5, atol=1e-5)


def test_safetensors_export_loads_identically(wan, tmp_path):
    state, _ = synthetic_release(wan)
    save_safetensors(state, tmp_path / "animate-x++.safetensors")
    assert not list(tmp_path.glob(".*.tmp"))
    loaded = load_animatex_checkpoint(tmp_path / "animate-x++.safetensors")
    assert loaded.keys() == state.keys() and all(torch.equal(loaded[k], state[k]) for k in state)


def test_lightning_wrapper_is_unwrapped(tmp_path):
    torch.save({"state_dict": {"dwpose_embedding.0.weight": torch.ones(2)}}, tmp_path / "wrapped.ckpt")
    assert list(load_animatex_checkpoint(tmp_path / "wrapped.ckpt")) == ["dwpose_embedding.0.weight"]


def test_stems_are_matched_anywhere_in_a_key():
    converted = convert_animatex_state_dict(
        {
            "module.dwpose_embedding.12.bias": torch.zeros(3),
            "pipe.pose_embedding_after.layers.0.0.norm1.weight": torch.zeros(3),
            "pose_embedding_after.layers.1.1.3.weight": torch.zeros(3),
            "pose_embedding_after.latents": torch.zeros(3),
            "pose_embedding_before.pre_image_condition_p.2.bias": torch.zeros(3),
        }
    )
    assert sorted(converted.streams) == [
        "implicit_pose_indicator.keypoint_encoder.output_mlp.2.bias",
        "implicit_pose_indicator.layers.0.attn.norm_context.weight",
        "implicit_pose_indicator.layers.1.ff.3.weight",
        "implicit_pose_indicator.query",
        "pose_video_encoder.layers.12.bias",
    ]


def test_bad_checkpoints_are_clear_errors(wan, tmp_path):
    state, _ = synthetic_release(wan)
    with pytest.raises(FileNotFoundError, match="not found"):
        load_animatex_checkpoint(tmp_path / "missing.ckpt")

    torch.save({"x": datetime.date(2025, 8, 13)}, tmp_path / "pickle.ckpt")  # an arbitrary object: refused
    with pytest.raises(ValueError, match="tensors-only"):
        load_animatex_checkpoint(tmp_path / "pickle.ckpt")

    with pytest.raises(ValueError, match=r"Unknown keys \(1\).*optimizer.step"):
        convert_animatex_state_dict({**state, "optimizer.step": torch.zeros(1)})
    with pytest.raises(ValueError, match="missing lora_A or lora_B.*blocks.0.attn1.to_q"):
        convert_animatex_state_dict(
            {k: v for k, v in state.items() if k != "pipe.dit.blocks.0.self_attn.q.lora_A.default.weight"}
        )
    with pytest.raises(ValueError, match=r"Missing \(1\).*pose_video_encoder.layers.12.bias"):
        animatex_from_wan(
            copy.deepcopy(wan), {k: v for k, v in state.items() if k != "dwpose_embedding.12.bias"}, **STREAM_CONFIG
        )
    with pytest.raises(ValueError, match="Shape mismatch.*reference_pose_encoder.layers.2.weight"):
        animatex_from_wan(
            copy.deepcopy(wan),
            {**state, "randomref_embedding_pose.2.weight": torch.zeros(5, 4, 3, 3)},
            **STREAM_CONFIG,
        )
    with pytest.raises(ValueError, match="another model size"):
        animatex_from_wan(
            copy.deepcopy(wan),
            {**state, "pipe.dit.blocks.0.ffn.2.lora_B.default.weight": torch.zeros(7, LORA_RANK)},
            **STREAM_CONFIG,
        )
    with pytest.raises(ValueError, match="use_ipi=True but the checkpoint has no"):
        simple = {k: v for k, v in state.items() if "pose_embedding_" not in k}
        animatex_from_wan(copy.deepcopy(wan), simple, **{**STREAM_CONFIG, "use_ipi": True})
    with pytest.raises(ValueError, match="differs from the sinusoid"):
        table_key = "pose_embedding_before.pos_embed.pos_table"
        animatex_from_wan(copy.deepcopy(wan), {**state, table_key: state[table_key] + 1}, **STREAM_CONFIG)


# ----------------------------------------------------------------------------- sizes from shapes, files on disk

HEAD_COUNTS = {key: STREAM_CONFIG[key] for key in ("ipi_encoder_heads", "ipi_resampler_heads")}


def test_stream_sizes_are_read_from_the_checkpoint(wan):
    state, _ = synthetic_release(wan)
    converted = convert_animatex_state_dict(state)
    inferred = infer_stream_config(converted.streams)
    shape_free = {"ipi_encoder_heads", "ipi_resampler_heads", "ipi_resampler_head_dim", "ipi_encoder_dropout"}
    shape_free |= {"ipi_block_start", "ipi_block_end"}
    expected = {key: value for key, value in STREAM_CONFIG.items() if key not in shape_free}
    assert inferred == {**expected, "ipi_num_keypoints": 18, "ipi_temporal_kernel_size": 3}
    # Only the head counts given: every width, depth and frame count comes from the shapes.
    model = animatex_from_wan(copy.deepcopy(wan), state, **HEAD_COUNTS)
    for key, value in inferred.items():
        assert model.config[key] == value, key
    assert model.config.ipi_resampler_head_dim == STREAM_CONFIG["ipi_resampler_head_dim"]


def test_ipi_blocks_default_to_the_official_rule_for_the_depth(wan):
    assert official_ipi_blocks(40) == {"ipi_block_start": 2, "ipi_block_end": 21}  # blocks 2..20 of Wan2.1-14B
    state, _ = synthetic_release(wan)
    model = animatex_from_wan(copy.deepcopy(wan), state, **HEAD_COUNTS)
    assert (model.config.ipi_block_start, model.config.ipi_block_end) == (2, 3)  # blocks 2..L/2 of 4


def test_a_size_that_disagrees_with_the_checkpoint_names_the_argument_and_both_values(wan):
    state, _ = synthetic_release(wan)
    with pytest.raises(ValueError, match=r"pose_video_hidden_channels=8 but the checkpoint's weights have 4"):
        animatex_from_wan(copy.deepcopy(wan), state, **HEAD_COUNTS, pose_video_hidden_channels=8)
    with pytest.raises(ValueError, match=r"ipi_resampler_heads=3 does not divide .* 32"):
        animatex_from_wan(copy.deepcopy(wan), state, ipi_resampler_heads=3)


def test_truncated_and_corrupt_checkpoints_say_so(wan, tmp_path):
    state, _ = synthetic_release(wan)
    save_safetensors(state, tmp_path / "release.safetensors")
    whole = (tmp_path / "release.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ValueError, match=r"cut.safetensors is truncated: it holds \d+ of the \d+ bytes.*again"):
        load_animatex_checkpoint(tmp_path / "cut.safetensors")
    (tmp_path / "header.safetensors").write_bytes(whole[:8] + b"{not json" + whole[17:])
    with pytest.raises(ValueError, match="header.safetensors is not a valid safetensors file"):
        load_animatex_checkpoint(tmp_path / "header.safetensors")
    torch.save(state, tmp_path / "release.ckpt")
    pickled = (tmp_path / "release.ckpt").read_bytes()
    (tmp_path / "cut.ckpt").write_bytes(pickled[: len(pickled) // 2])
    with pytest.raises(ValueError, match="cut.ckpt is truncated or corrupt.*download it again"):
        load_animatex_checkpoint(tmp_path / "cut.ckpt")


def test_saved_weights_get_the_users_umask_permissions(wan, tmp_path):
    previous = os.umask(0o027)
    try:
        save_safetensors({"x": torch.zeros(2)}, tmp_path / "x.safetensors")
        model = animatex_from_wan(copy.deepcopy(wan), synthetic_release(wan)[0], **HEAD_COUNTS)
        model.save_pretrained(tmp_path / "model")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "x.safetensors").stat().st_mode) == 0o640
    for path in (tmp_path / "model").iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o640, path.name  # safetensors writes 0o600 by itself
