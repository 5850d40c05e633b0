"""The SynthX base in the package's layout (`animatex_pp.demo.base`): packaged without its VAE and pose streams, in
float16; put together with its codec into a pipeline that loads with fresh, zero-output streams; refused with a
codec it was not pretrained on; and the shipped one whole."""

import json

import pytest
import torch
from safetensors.torch import load_file

import animatex_pp.demo.base as base_module
from animatex_pp.demo.base import BASE_FIT_FILE, base_pipeline, check_base, package_base, shipped_base
from animatex_pp.demo.codec import WEIGHTS_FILE, shipped_codec
from animatex_pp.io.stages import file_digest
from animatex_pp.models.transformer import AnimateXTransformer3DModel
from animatex_pp.pipelines.loading import load_pipeline
from animatex_pp.pipelines.pipeline_animatex import AnimateXPipeline
from animatex_pp.testing import tiny_components

STREAMS = tuple(f"{name}." for name in AnimateXTransformer3DModel.stream_names)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny pipeline folder, as a base's pretraining exports it, and a codec folder holding its VAE."""
    folder = tmp_path_factory.mktemp("export")
    components = tiny_components(seed=3)
    AnimateXPipeline(**components).save_pretrained(folder / "pipeline")
    components["vae"].save_pretrained(folder / "codec" / "vae")
    return folder / "pipeline", folder / "codec"


def _stream_outputs_are_zero(transformer: AnimateXTransformer3DModel) -> bool:
    last_layers = [transformer.pose_video_encoder.layers[-1], transformer.reference_pose_encoder.layers[-1],
                   transformer.implicit_pose_indicator.out_proj]  # fmt: skip
    return all(not parameter.any() for layer in last_layers for parameter in layer.parameters())


def test_a_packaged_base_has_no_vae_nor_streams_and_loads_with_its_codec_as_the_export(exported, tmp_path):
    pipeline, codec = exported
    record = {"recipe": "synthx_base", "steps": 3}
    package_base(pipeline, codec, tmp_path / "base", record)

    assert not (tmp_path / "base" / "vae").exists()
    fit = json.loads((tmp_path / "base" / BASE_FIT_FILE).read_text())
    assert fit["codec_sha256"] == file_digest(codec / "vae" / WEIGHTS_FILE) and fit["steps"] == 3
    stored = load_file(tmp_path / "base" / "transformer" / WEIGHTS_FILE)
    original = load_file(pipeline / "transformer" / WEIGHTS_FILE)
    assert set(stored) == {name for name in original if not name.startswith(STREAMS)} and fit["parameters"] == sum(
        tensor.numel() for tensor in stored.values())  # fmt: skip
    assert {tensor.dtype for tensor in stored.values()} == {torch.float16}

    loaded = load_pipeline(base_pipeline(tmp_path / "base", codec, tmp_path / "assembled"))
    weights = loaded.transformer.state_dict()
    for name, value in original.items():
        if not name.startswith(STREAMS):
            assert torch.equal(weights[name], value.half().float()), name  # float16 on disk, float32 loaded
    assert weights["patch_embedding.weight"].dtype == torch.float32 and _stream_outputs_are_zero(loaded.transformer)
    assert torch.equal(loaded.vae.state_dict()["encoder.conv_in.weight"],
                       load_file(codec / "vae" / WEIGHTS_FILE)["encoder.conv_in.weight"])  # fmt: skip


def test_a_base_is_refused_with_a_codec_it_was_not_pretrained_on(exported, tmp_path):
    pipeline, codec = exported
    other = tmp_path / "other"
    torch.manual_seed(1)
    tiny_components(seed=9)["vae"].save_pretrained(other / "vae")
    package_base(pipeline, codec, tmp_path / "base", {})
    for base in (tmp_path / "base", pipeline):  # the package's layout (its record), a pipeline folder (its vae/)
        assert check_base(base, codec) == base
        with pytest.raises(ValueError, match="pretrained on another codec"):
            base_pipeline(base, other, tmp_path / "assembled")
    assert not (tmp_path / "assembled").exists()
    with pytest.raises(FileNotFoundError, match="no base in"):
        check_base(codec, codec)


def test_the_shipped_base_was_pretrained_on_the_shipped_codec_and_loads(tmp_path):
    base = shipped_base()
    fit = json.loads((base / BASE_FIT_FILE).read_text())
    assert fit["codec_sha256"] == file_digest(shipped_codec() / "vae" / WEIGHTS_FILE)
    assert fit["recipe"] == "synthx_base" and fit["steps"] > 0 and fit["stored_dtype"] == "float16"
    pipe = load_pipeline(base_pipeline(base, shipped_codec(), tmp_path / "pipeline"))
    base_parameters = sum(p.numel() for name, p in pipe.transformer.named_parameters() if not name.startswith(STREAMS))
    assert base_parameters == fit["parameters"] and _stream_outputs_are_zero(pipe.transformer)


def test_a_damaged_install_names_the_missing_base_file(tmp_path, monkeypatch):
    monkeypatch.setattr(base_module, "SHIPPED_BASE", tmp_path)
    with pytest.raises(FileNotFoundError, match=r"the package's base is incomplete .*--pretrain-base OUT"):
        shipped_base()
