"""Placement: precompute moves only the encoders it runs (never the transformer), and the dtype a run on a device
computes in by default."""

import json

import torch

import animatex_pp.pipelines.loading as loading
from animatex_pp.cli import main
from animatex_pp.pipelines.placement import ENCODERS, default_dtype, move_encoders
from animatex_pp.testing import tiny_pipeline


def devices(module: torch.nn.Module) -> set[str]:
    return {parameter.device.type for parameter in module.parameters()}


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
    rows = [json.loads(line) for line in (clip_folder / "metadata.jsonl").read_text().splitlines()[:1]]
    metadata = tmp_path / "one.jsonl"
    metadata.write_text(json.dumps({**rows[0], "video": str(clip_folder / rows[0]["video"]),
                                    "pose": str(clip_folder / rows[0]["pose"])}) + "\n")  # fmt: skip
    out = tmp_path / "cache"
    code = main(["precompute", str(metadata), "--model", str(model), "--out", str(out), "--frames", "9",
                 "--bucket", "96x64", "--quiet"])  # fmt: skip
    assert code == 0
    assert "1 clips in 1 shards" in capsys.readouterr().out
    assert sorted(name for name, _, _ in moved) == sorted(ENCODERS)  # the transformer: never
    assert all(to_args == ("cpu",) for _, to_args, _ in moved)


def test_default_dtype_is_bf16_on_a_cuda_device_with_native_bf16_else_fp32(monkeypatch):
    assert default_dtype("cpu") == "fp32"
    # A card with native bfloat16 (Ampere and later).
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    assert default_dtype("cuda") == "bf16" and default_dtype(torch.device("cuda", 1)) == "bf16"
    assert default_dtype("cpu") == "fp32" and default_dtype("mps") == "fp32"
    # An older card, which emulates bfloat16 only: float32.
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    assert default_dtype("cuda") == "fp32"
