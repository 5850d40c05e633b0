"""What the model does on CUDA, checked on a CPU: the attention backend per (device, dtype, card), and a bf16 model
whose layer norms CUDA's kernel accepts."""

import pytest
import torch
import torch.nn.functional as F
from diffusers import WanTransformer3DModel
from diffusers.models import attention_dispatch
from diffusers.models.attention_dispatch import _AttentionBackendRegistry

from animatex_pp import AnimateXTransformer3DModel
from animatex_pp.models.presets import split_preset
from animatex_pp.models.transformer import resolve_attention_backend
from tests.helpers.transformer_inputs import make_inputs, run

CUDA, CPU = torch.device("cuda"), torch.device("cpu")
AMPERE, VOLTA = (8, 0), (7, 0)


@pytest.mark.parametrize(
    ("device", "dtype", "capability", "expected"),
    [
        (CUDA, torch.bfloat16, AMPERE, "flash"),
        (CUDA, torch.float16, (9, 0), "flash"),
        (CUDA, torch.float32, AMPERE, "native"),  # flash-attn refuses fp32 (`eval` runs in fp32)
        (CUDA, torch.float16, VOLTA, "native"),  # and cards before Ampere
        (CUDA, torch.float16, (7, 5), "native"),
        (CPU, torch.bfloat16, None, "native"),
    ],
)
def test_auto_chooses_flash_attn_only_for_half_precision_on_ampere_or_newer(
    monkeypatch, device, dtype, capability, expected
):
    monkeypatch.delenv("ANIMATEX_ATTENTION_BACKEND", raising=False)
    monkeypatch.setattr(attention_dispatch, "_CAN_USE_FLASH_ATTN", True)
    assert resolve_attention_backend("auto", device, dtype, capability) == expected


def test_auto_keeps_sdpa_when_diffusers_cannot_use_the_installed_flash_attn(monkeypatch):
    monkeypatch.delenv("ANIMATEX_ATTENTION_BACKEND", raising=False)
    # missing, older than diffusers' 2.6.3, or failing to import: diffusers' verdict is False
    monkeypatch.setattr(attention_dispatch, "_CAN_USE_FLASH_ATTN", False)
    assert resolve_attention_backend("auto", CUDA, torch.bfloat16, AMPERE) == "native"


def test_a_named_backend_or_the_environment_wins_over_auto(monkeypatch):
    monkeypatch.delenv("ANIMATEX_ATTENTION_BACKEND", raising=False)
    assert resolve_attention_backend("_native_math", CPU, torch.float32) == "_native_math"
    monkeypatch.setenv("ANIMATEX_ATTENTION_BACKEND", "_native_math")
    assert resolve_attention_backend("auto", CUDA, torch.bfloat16, AMPERE) == "_native_math"


@pytest.fixture
def tiny_model():
    torch.manual_seed(0)
    base_config, stream_config = split_preset("tiny")
    return AnimateXTransformer3DModel.from_wan(WanTransformer3DModel(**base_config), **stream_config).eval()


def test_choosing_a_backend_leaves_the_process_default_of_other_models(tiny_model):
    tiny_model.register_to_config(attention_backend="_native_math")
    before, _ = _AttentionBackendRegistry.get_active_backend()
    run(tiny_model, make_inputs())
    assert tiny_model.blocks[0].attn1.processor._attention_backend.value == "_native_math"
    assert _AttentionBackendRegistry.get_active_backend()[0] == before


_cpu_layer_norm = F.layer_norm


def _layer_norm_as_cuda(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    # CPU's kernel takes a bf16 input with fp32 weights; CUDA's raises this
    for parameter in (weight, bias):
        if parameter is not None and parameter.dtype != input.dtype:
            raise RuntimeError(f"expected scalar type {input.dtype} but found {parameter.dtype}")
    return _cpu_layer_norm(input, normalized_shape, weight, bias, eps)


def test_a_bf16_model_from_pretrained_has_bf16_streams_that_cuda_layer_norm_accepts(tiny_model, tmp_path, monkeypatch):
    tiny_model.save_pretrained(tmp_path / "transformer")
    model = AnimateXTransformer3DModel.from_pretrained(tmp_path / "transformer", torch_dtype=torch.bfloat16)
    for name, stream in model.streams().items():
        dtypes = {parameter.dtype for parameter in stream.parameters()}
        assert dtypes == {torch.bfloat16}, (name, dtypes)
    monkeypatch.setattr(F, "layer_norm", _layer_norm_as_cuda)
    inputs = {name: value.to(torch.bfloat16) if value.is_floating_point() else value
              for name, value in make_inputs().items()}  # fmt: skip
    with torch.enable_grad():  # the encoder layers' slow path, which calls the layer norm (as training does)
        output = model.train()(**inputs).sample
    assert output.dtype == torch.bfloat16 and torch.isfinite(output.float()).all()
