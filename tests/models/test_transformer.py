"""AnimateXTransformer3DModel: exact Wan parity at initialisation, stream isolation, gradients, presets, I/O."""

import dataclasses
import logging

import pytest
import torch
from diffusers import FirstBlockCacheConfig, WanTransformer3DModel
from safetensors.torch import save_file

from animatex_pp import AnimateXTransformer3DModel
from animatex_pp.models.presets import split_preset
from animatex_pp.models.transformer import count_parameters
from tests.helpers.transformer_inputs import BASE_INPUTS, BATCH, PIXEL_FRAMES, PIXEL_SIZE, make_inputs, run

# Each stream: its zero-initialised layers (the final one first), and the forward inputs it reads.
STREAM_OUTPUT_LAYERS = {
    "pose_video_encoder": ["pose_video_encoder.layers.12"],
    "reference_pose_encoder": ["reference_pose_encoder.layers.10"],
    "implicit_pose_indicator": [
        "implicit_pose_indicator.out_proj",
        "implicit_pose_indicator.keypoint_encoder.output_mlp.2",
    ],
}
STREAM_INPUTS = {
    "pose_video_encoder": ["pose_video"],
    "reference_pose_encoder": ["reference_pose"],
    "implicit_pose_indicator": ["pose_keypoints", "driving_image_embeds"],
}


@pytest.fixture
def wan_and_model():
    torch.manual_seed(0)
    base_config, stream_config = split_preset("tiny")
    wan = WanTransformer3DModel(**base_config).eval()
    model = AnimateXTransformer3DModel.from_wan(wan, **stream_config).eval()
    return wan, model


def perturb_output_layers(model, stream: str, seed: int = 1) -> None:
    generator = torch.Generator().manual_seed(seed)
    modules = dict(model.named_modules())
    with torch.no_grad():
        for name in STREAM_OUTPUT_LAYERS[stream]:
            for parameter in modules[name].parameters():
                parameter.copy_(0.05 * torch.randn(parameter.shape, generator=generator))


def test_output_equals_wan_at_initialisation(wan_and_model):
    wan, model = wan_and_model
    inputs = make_inputs()
    expected = run(wan, {k: inputs[k] for k in BASE_INPUTS})
    with_streams = run(model, inputs)
    without_streams = run(model, {k: inputs[k] for k in BASE_INPUTS})
    assert expected.abs().max() > 0.1
    assert (with_streams - expected).abs().max() <= 1e-5
    assert (without_streams - expected).abs().max() <= 1e-5


def test_freshly_built_model_matches_wan_with_same_weights():
    torch.manual_seed(0)
    model = AnimateXTransformer3DModel.from_preset("tiny").eval()
    base_config, _ = split_preset("tiny")
    wan = WanTransformer3DModel(**base_config).eval()
    base_state = {k: v for k, v in model.state_dict().items() if not k.startswith(model.stream_names)}
    wan.load_state_dict(base_state, strict=True)
    inputs = make_inputs(3)
    assert (run(model, inputs) - run(wan, {k: inputs[k] for k in BASE_INPUTS})).abs().max() <= 1e-5


def test_from_wan_shares_weights_and_leaves_wan_unchanged(wan_and_model):
    wan, model = wan_and_model
    assert model.blocks[0].attn1.to_q.weight.data_ptr() == wan.blocks[0].attn1.to_q.weight.data_ptr()
    assert type(wan.blocks[0]).__name__ == "WanTransformerBlock"
    with pytest.raises(ValueError, match="stream arguments only"):
        AnimateXTransformer3DModel.from_wan(wan, num_layers=2)


@pytest.mark.parametrize("stream", list(STREAM_OUTPUT_LAYERS))
def test_a_nonzero_stream_changes_the_output_through_its_own_input_only(wan_and_model, stream):
    _, model = wan_and_model
    perturb_output_layers(model, stream)
    inputs, other = make_inputs(0), make_inputs(1)
    reference = run(model, inputs)

    own_input_changed = run(model, inputs, **{name: other[name] for name in STREAM_INPUTS[stream]})
    assert (own_input_changed - reference).abs().max() > 1e-4

    foreign_inputs = [name for s, names in STREAM_INPUTS.items() if s != stream for name in names]
    foreign_changed = run(model, inputs, **{name: other[name] for name in foreign_inputs})
    assert (foreign_changed - reference).abs().max() <= 1e-6

    dropped = run(model, inputs, **{name: None for name in STREAM_INPUTS[stream]})
    assert (dropped - reference).abs().max() > 1e-4


def test_ipi_enters_only_its_block_range(wan_and_model):
    _, model = wan_and_model
    perturb_output_layers(model, "implicit_pose_indicator")
    seen = {}
    hooks = [
        block.register_forward_pre_hook(
            lambda module, args, kwargs, index=index: seen.__setitem__(index, args[4] is not None), with_kwargs=True
        )
        for index, block in enumerate(model.blocks)
    ]
    run(model, make_inputs())
    for hook in hooks:
        hook.remove()
    start, end = model.config.ipi_block_start, model.config.ipi_block_end
    assert seen == {index: start <= index < end for index in range(model.config.num_layers)}


def test_gradients_reach_every_stream_parameter(wan_and_model):
    _, model = wan_and_model
    model.train()
    inputs = make_inputs()

    # At initialisation each stream's final (zero) layer receives gradient, so training can move it. (The IPI's
    # second zero layer sits behind the first, so its gradient starts once out_proj has moved, as in the original.)
    model(**inputs).sample.square().mean().backward()
    modules = dict(model.named_modules())
    for layers in STREAM_OUTPUT_LAYERS.values():
        assert modules[layers[0]].weight.grad.abs().sum() > 0, layers[0]
    model.zero_grad(set_to_none=True)

    # Once they are non-zero, every parameter of every stream receives gradient.
    for stream in STREAM_OUTPUT_LAYERS:
        perturb_output_layers(model, stream)
    model(**inputs).sample.square().mean().backward()
    no_gradient = [
        name
        for name, parameter in model.named_parameters()
        if name.startswith(model.stream_names) and (parameter.grad is None or parameter.grad.abs().sum() == 0)
    ]
    assert no_gradient == []


def test_gradient_checkpointing_gives_the_same_gradients(wan_and_model):
    _, model = wan_and_model
    for stream in STREAM_OUTPUT_LAYERS:
        perturb_output_layers(model, stream)
    inputs = make_inputs()

    def stream_gradients():
        model.zero_grad(set_to_none=True)
        model(**inputs).sample.square().mean().backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if n.startswith(model.stream_names)}

    plain = stream_gradients()
    model.enable_gradient_checkpointing()
    checkpointed = stream_gradients()
    assert plain.keys() == checkpointed.keys()
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], rtol=1e-4, atol=1e-6)


def test_first_block_cache_reuses_the_residual_without_adding_the_ipi_twice(wan_and_model):
    _, model = wan_and_model
    perturb_output_layers(model, "implicit_pose_indicator")
    inputs = make_inputs()
    expected = run(model, inputs)
    calls = []
    hook = model.blocks[-1].attn1.register_forward_pre_hook(lambda *args: calls.append(1))
    # A huge threshold: the second call computes only the first block and reuses the cached tail residual.
    model.enable_cache(FirstBlockCacheConfig(threshold=1e9))
    with model.cache_context("cond"):
        first = run(model, inputs)
        second = run(model, inputs)
    model.disable_cache()
    hook.remove()
    assert len(calls) == 1  # the last block ran on the first call only
    torch.testing.assert_close(first, expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(second, expected, rtol=0, atol=1e-5)


def test_pose_conditions_encoded_once_give_the_same_output(wan_and_model):
    _, model = wan_and_model
    for stream in STREAM_OUTPUT_LAYERS:
        perturb_output_layers(model, stream)
    inputs = make_inputs()
    stream_inputs = {k: v for k, v in inputs.items() if k not in BASE_INPUTS}
    base_inputs = {k: inputs[k] for k in BASE_INPUTS}
    with torch.no_grad():
        conditions = model.encode_pose_conditions(**stream_inputs)
    torch.testing.assert_close(run(model, base_inputs, pose_conditions=conditions), run(model, inputs), rtol=0, atol=0)

    # Dropping the explicit pose from the encoded conditions equals not giving the pose video.
    without_pose_video = dataclasses.replace(conditions, pose_tokens=None)
    torch.testing.assert_close(
        run(model, base_inputs, pose_conditions=without_pose_video),
        run(model, inputs, pose_video=None),
        rtol=0,
        atol=0,
    )
    with pytest.raises(ValueError, match="not both"):
        run(model, inputs, pose_conditions=conditions)


def test_save_and_load_round_trip_is_exact(wan_and_model, tmp_path):
    _, model = wan_and_model
    for stream in STREAM_OUTPUT_LAYERS:
        perturb_output_layers(model, stream)
    model.save_pretrained(tmp_path / "transformer")
    assert (tmp_path / "transformer" / "diffusion_pytorch_model.safetensors").is_file()
    loaded = AnimateXTransformer3DModel.from_pretrained(tmp_path / "transformer").eval()
    original_state, loaded_state = model.state_dict(), loaded.state_dict()
    assert original_state.keys() == loaded_state.keys()
    for key in original_state:
        assert torch.equal(original_state[key], loaded_state[key]), key
    inputs = make_inputs()
    assert torch.equal(run(model, inputs), run(loaded, inputs))


def test_from_pretrained_of_a_plain_wan_checkpoint_starts_as_wan(wan_and_model, tmp_path):
    wan, _ = wan_and_model
    wan.save_pretrained(tmp_path / "wan")
    _, stream_config = split_preset("tiny")
    model = AnimateXTransformer3DModel.from_pretrained(tmp_path / "wan", **stream_config).eval()
    assert not any(parameter.is_meta for parameter in model.parameters())
    inputs = make_inputs()
    assert (run(model, inputs) - run(wan, {k: inputs[k] for k in BASE_INPUTS})).abs().max() <= 1e-5


def test_streams_a_checkpoint_lacks_are_initialised_and_the_others_keep_their_weights(tmp_path):
    """A checkpoint without an IPI (the `_simple` release) loaded with `use_ipi=True`: the IPI starts fresh (zero
    output), the two pose-video streams keep the trained weights they were saved with."""
    torch.manual_seed(0)
    base_config, stream_config = split_preset("tiny")
    simple = AnimateXTransformer3DModel(**base_config, **{**stream_config, "use_ipi": False}).eval()
    for stream in ("pose_video_encoder", "reference_pose_encoder"):
        perturb_output_layers(simple, stream)
    simple.save_pretrained(tmp_path / "simple")
    loaded = AnimateXTransformer3DModel.from_pretrained(tmp_path / "simple", use_ipi=True).eval()
    saved = simple.state_dict()
    for name, tensor in loaded.state_dict().items():
        if name.startswith(("pose_video_encoder.", "reference_pose_encoder.")):
            assert torch.equal(tensor, saved[name]), name
    for name in STREAM_OUTPUT_LAYERS["implicit_pose_indicator"]:
        assert all(not parameter.any() for parameter in dict(loaded.named_modules())[name].parameters()), name


@pytest.mark.parametrize("name", ["wan2.1-i2v-14b-480p", "wan2.1-i2v-14b-720p"])
def test_14b_presets_instantiate_on_meta_and_report_parameter_counts(name):
    with torch.device("meta"):
        model = AnimateXTransformer3DModel.from_preset(name)
        wan = WanTransformer3DModel(**split_preset(name)[0])
    counts = count_parameters(model)
    assert counts["base"] == sum(p.numel() for p in wan.parameters())
    assert 16.0e9 < counts["base"] < 16.8e9  # Wan2.1 I2V 14B with its image projections
    assert set(counts) == {"pose_video_encoder", "reference_pose_encoder", "implicit_pose_indicator", "base", "total"}
    assert counts["total"] == counts["base"] + sum(counts[s] for s in model.stream_names)
    assert 0.05e9 < counts["implicit_pose_indicator"] < 0.3e9
    assert model.config.ipi_block_start == 2 and model.config.ipi_block_end == 21
    assert model.implicit_pose_indicator.temporal_proj.weight.shape == (21, 81, 3)
    assert model.pose_video_encoder.layers[-1].out_channels == 5120


def test_simple_model_without_ipi_rejects_ipi_inputs(wan_and_model):
    wan, _ = wan_and_model
    _, stream_config = split_preset("tiny")
    model = AnimateXTransformer3DModel.from_wan(wan, **{**stream_config, "use_ipi": False}).eval()
    assert model.implicit_pose_indicator is None
    inputs = make_inputs()
    with pytest.raises(ValueError, match="no such stream"):
        run(model, inputs)
    run(model, {k: v for k, v in inputs.items() if k not in ("pose_keypoints", "driving_image_embeds")})


@pytest.mark.parametrize(
    "override, message",
    [
        ({"pose_video": torch.rand(BATCH, 3, PIXEL_FRAMES + 4, PIXEL_SIZE, PIXEL_SIZE)}, "latent patch grid"),
        ({"reference_pose": torch.rand(BATCH, 3, PIXEL_SIZE * 2, PIXEL_SIZE)}, "generation resolution"),
        ({"pose_keypoints": torch.rand(BATCH, PIXEL_FRAMES - 1, 18, 2)}, "ipi_num_frames"),
        ({"driving_image_embeds": None}, "needs both"),
        ({"pose_video": torch.rand(BATCH, PIXEL_FRAMES, 3, PIXEL_SIZE, PIXEL_SIZE)}, r"\(B=2, 3, F, H, W\)"),
    ],
)
def test_bad_stream_inputs_are_clear_errors(wan_and_model, override, message):
    _, model = wan_and_model
    with pytest.raises(ValueError, match=message):
        run(model, make_inputs(), **override)


def test_bad_config_is_a_clear_error():
    with pytest.raises(ValueError, match="ipi_block_start"):
        AnimateXTransformer3DModel.from_preset("tiny", ipi_block_end=9)
    with pytest.raises(ValueError, match="condition channels"):
        AnimateXTransformer3DModel.from_preset("tiny", in_channels=16)


def test_configured_attention_backend_is_applied_on_first_forward(wan_and_model):
    _, model = wan_and_model
    model.register_to_config(attention_backend="_native_math")
    inputs = make_inputs()
    math_output = run(model, inputs)
    assert model.blocks[0].attn1.processor._attention_backend.value == "_native_math"
    model.register_to_config(attention_backend="auto")
    model._attention_backend_key = None
    native_output = run(model, inputs)
    assert model.blocks[0].attn1.processor._attention_backend.value == "native"
    torch.testing.assert_close(math_output, native_output, rtol=1e-4, atol=1e-5)


class _Records(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_diffusers_missing_weights_warning_is_dropped_only_when_every_missing_weight_is_a_streams_own(tmp_path):
    torch.manual_seed(0)
    base_config, stream_config = split_preset("tiny")
    model = AnimateXTransformer3DModel(**base_config, **stream_config)
    state = model.state_dict()
    streams = tuple(f"{name}." for name in model.stream_names)
    records, loading_logger = _Records(), logging.getLogger("diffusers.models.modeling_utils")
    loading_logger.addHandler(records)
    try:
        for folder, dropped in (("base", ()), ("damaged", ("proj_out.bias",))):
            model.save_pretrained(tmp_path / folder)
            kept = {name: tensor for name, tensor in state.items() if not name.startswith(streams)
                    and name not in dropped}  # fmt: skip
            save_file(kept, tmp_path / folder / "diffusion_pytorch_model.safetensors")
            records.messages.clear()
            AnimateXTransformer3DModel.from_pretrained(tmp_path / folder)
            warned = [message for message in records.messages if "newly initialized" in message]
            assert bool(warned) == bool(dropped), (folder, records.messages)
    finally:
        loading_logger.removeHandler(records)
    assert "proj_out.bias" in warned[0] and "pose_video_encoder" in warned[0]  # the whole list, streams included
