"""`animatex-pp eval --dtype auto` (the default): the dtype a GPU user would pick, bf16 on a CUDA device with native
bfloat16 and fp32 on the CPU, loaded and recorded in the run's settings; an explicit --dtype overrides it."""

import json

import pytest
import torch

import animatex_pp.eval.evaluate as evaluate_module
import animatex_pp.pipelines.loading as loading
from animatex_pp.cli import main
from animatex_pp.synthx.build import BuildConfig, build


class Loaded(Exception):
    """Raised in place of loading the pipeline: the test ends there."""


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthx") / "small"
    build(root, BuildConfig(size=32, frames=9, train=1, test=0, seed=5, ti2v_share=1.0), workers=1, progress=False)
    return root / "train.jsonl"


@pytest.fixture
def loaded_dtypes(monkeypatch):
    """The dtype each pipeline load asks for; the load then stops the run."""
    asked = []

    def record(folder, dtype=torch.float32):
        asked.append(dtype)
        raise Loaded

    monkeypatch.setattr(loading, "load_pipeline", record)
    return asked


@pytest.fixture
def capable_cuda(monkeypatch):
    """A machine with a CUDA card that computes in bfloat16 natively, as far as the evaluation can tell."""
    monkeypatch.setattr(evaluate_module, "check_device", lambda device: None)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)


def run(model_dir, split, out, *extra):
    with pytest.raises(Loaded):
        main(["eval", "--model", str(model_dir), "--data", str(split), "--out", str(out), "--steps", "1", *extra])
    return json.loads((out / "stage.json").read_text())["settings"]["dtype"]


@pytest.mark.parametrize(
    ("cuda", "extra", "expected"),
    [
        (False, [], "fp32"),
        (True, ["--device", "cuda"], "bf16"),
        (True, ["--device", "cuda", "--dtype", "fp32"], "fp32"),
        (False, ["--dtype", "bf16"], "bf16"),
    ],
    ids=["cpu-auto", "cuda-auto", "cuda-override", "cpu-override"],
)
def test_auto_dtype_is_what_the_device_computes_in(
    model_dir, split, tmp_path, loaded_dtypes, request, cuda, extra, expected
):
    if cuda:
        request.getfixturevalue("capable_cuda")
    assert run(model_dir, split, tmp_path / "out", *extra) == expected
    assert loaded_dtypes == [expected]
