"""Placement: precompute moves only the encoders it runs and never reads the transformer's weights, and the dtype a
run on a device computes in by default."""

import json
from pathlib import Path

import safetensors
import safetensors.torch
import torch

import animatex_pp.pipelines.loading as loading
from animatex_pp.cli import main
from animatex_pp.data.cache import precompute
from animatex_pp.data.clips import ClipConfig
from animatex_pp.data.encode import ConditionEncoder
from animatex_pp.pipelines.pipeline_animatex import AnimateXPipeline
from animatex_pp.pipelines.placement import ENCODERS, default_dtype, move_encoders, transformer_without_weights
from animatex_pp.testing import tiny_pipeline


def devices(module: torch.nn.Module) -> set[str]:
    return {parameter.device.type for parameter in module.parameters()}


def one_clip_metadata(clip_folder: Path, tmp_path: Path) -> Path:
    """A metadata file of the dataset's first clip (an animation clip with its pose), with absolute paths."""
    rows = [json.loads(line) for line in (clip_folder / "metadata.jsonl").read_text().splitlines()[:1]]
    metadata = tmp_path / "one.jsonl"
    metadata.write_text(json.dumps({**rows[0], "video": str(clip_folder / rows[0]["video"]),
                                    "pose": str(clip_folder / rows[0]["pose"])}) + "\n")  # fmt: skip
    return metadata


def precompute_command(metadata: Path, model: Path, out: Path) -> list[str]:
    return ["precompute", str(metadata), "--model", str(model), "--out", str(out), "--frames", "9",
            "--bucket", "96x64", "--quiet"]  # fmt: skip


def test_move_encoders_moves_the_encoders_and_leaves_the_transformer():
    pipe = tiny_pipeline()
    assert move_encoders(pipe, "meta") is pipe
    for name in ENCODERS:
        assert devices(getattr(pipe, name)) == {"meta"}, name
    assert devices(pipe.transformer) == {"cpu"}


def test_precompute_moves_only_the_encoders(clip_folder, tmp_path, monkeypatch, capsys):
    model = tmp_path / "tiny"
    tiny_pipeline().save_pretrained(model)
    moved = []
    load = loading.load_pipeline

    def load_and_spy(*args, **kwargs):
        """The pipeline loaded, each component's `.to` recording its calls (the move itself still happens)."""
        pipe = load(*args, **kwargs)
        for name, component in pipe.components.items():
            if isinstance(component, torch.nn.Module):

                def spy(*to_args, _name=name, _to=component.to, **to_kwargs):
                    moved.append((_name, to_args, to_kwargs))
                    return _to(*to_args, **to_kwargs)

                component.to = spy
        return pipe

    monkeypatch.setattr(loading, "load_pipeline", load_and_spy)
    code = main(precompute_command(one_clip_metadata(clip_folder, tmp_path), model, tmp_path / "cache"))
    assert code == 0
    assert "1 clips in 1 shards" in capsys.readouterr().out
    assert sorted(name for name, _, _ in moved) == sorted(ENCODERS)  # the transformer: never
    assert all(to_args == ("cpu",) for _, to_args, _ in moved)


def test_transformer_without_weights_has_the_folders_config_and_streams_on_meta(model_dir):
    loaded = loading.load_pipeline(model_dir).transformer
    skeleton = transformer_without_weights(model_dir)
    # Keys with "_" are diffusers' bookkeeping (where a model was loaded from), not the model's settings.
    settings = [{key: value for key, value in model.config.items() if not key.startswith("_")}
                for model in (skeleton, loaded)]  # fmt: skip
    assert settings[0] == settings[1]
    assert devices(skeleton) == {"meta"}
    assert {name: tuple(p.shape) for name, p in skeleton.named_parameters()} == {
        name: tuple(p.shape) for name, p in loaded.named_parameters()
    }


def test_precompute_reads_no_transformer_weight_and_writes_the_cache_of_the_whole_pipeline(
    clip_folder, model_dir, tmp_path, monkeypatch, capsys
):
    metadata = one_clip_metadata(clip_folder, tmp_path)
    # The cache as precompute made it with the whole pipeline loaded, the transformer's weights included.
    whole = tmp_path / "whole"
    config = ClipConfig(num_frames=9, max_stride=1, buckets=((96, 64),), seed=0)
    precompute(metadata, whole, ConditionEncoder(loading.load_pipeline(model_dir, dtype="fp32")), config,
               encoder_name=str(model_dir.resolve()), progress=False)  # fmt: skip
    read_file = safetensors.torch.load_file

    # The two ways diffusers reads a model's safetensors weights (the transformer is a diffusers model), spied on.
    read = []

    def spy(function):
        def reading(path, *args, **kwargs):
            read.append(Path(path).resolve())
            return function(path, *args, **kwargs)

        return reading

    monkeypatch.setattr(safetensors.torch, "load_file", spy(safetensors.torch.load_file))
    monkeypatch.setattr(safetensors, "safe_open", spy(safetensors.safe_open))
    loaded = []
    load = loading.load_pipeline
    monkeypatch.setattr(loading, "load_pipeline", lambda *args, **kwargs: loaded.append(load(*args, **kwargs))
                        or loaded[-1])  # fmt: skip
    # The worst case of diffusers' pipeline-wide device with a meta component among those on the CPU (which one it
    # reports follows set order): the encoding must run each encoder on its own device, never on this one.
    monkeypatch.setattr(AnimateXPipeline, "device", property(lambda self: torch.device("meta")))
    out = tmp_path / "cache"
    assert main(precompute_command(metadata, model_dir, out)) == 0
    assert "1 clips in 1 shards" in capsys.readouterr().out

    transformer_folder = (model_dir / "transformer").resolve()
    assert read and not [path for path in read if path.is_relative_to(transformer_folder)]
    assert devices(loaded[0].transformer) == {"meta"}
    shards = sorted(path.name for path in whole.glob("shard-*.safetensors"))
    assert shards == sorted(path.name for path in out.glob("shard-*.safetensors")) and shards
    for name in shards:
        expected, written = read_file(whole / name), read_file(out / name)
        assert sorted(written) == sorted(expected)
        assert any(key.endswith("/driving_embeds") for key in written)  # every encoder ran
        for key, tensor in expected.items():
            assert written[key].dtype == tensor.dtype and torch.equal(written[key], tensor), key
    assert json.loads((out / "index.json").read_text()) == json.loads((whole / "index.json").read_text())


def test_default_dtype_is_bf16_on_a_cuda_device_with_native_bf16_else_fp32(monkeypatch):
    assert default_dtype("cpu") == "fp32"
    # A card with native bfloat16 (Ampere and later).
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    assert default_dtype("cuda") == "bf16" and default_dtype(torch.device("cuda", 1)) == "bf16"
    assert default_dtype("cpu") == "fp32" and default_dtype("mps") == "fp32"
    # An older card, which emulates bfloat16 only: float32.
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    assert default_dtype("cuda") == "fp32"
