"""The SynthX base's pretraining (`animatex_pp.demo.base`): every clip as image + caption -> video, trained by the
real trainer from the precompute cache, exported as a pipeline and in the package's layout, and continued by the
same call."""

import json

import pytest
import torch
from diffusers import AutoencoderKLWan

from animatex_pp.demo.base import BASE_FIT_FILE, I2V_METADATA, base_pipeline, pretrain_base
from animatex_pp.demo.codec import VAE_CONFIG
from animatex_pp.pipelines.loading import load_pipeline
from animatex_pp.synthx.build import BuildConfig

pytestmark = pytest.mark.slow
TINY_BUILD = BuildConfig(train=8, test=2, seed=0)


@pytest.fixture(scope="module")
def codec(tmp_path_factory):
    folder = tmp_path_factory.mktemp("codec")
    torch.manual_seed(0)
    AutoencoderKLWan(**VAE_CONFIG).save_pretrained(folder / "vae")
    return folder


def test_the_base_trains_on_every_clip_as_ti2v_exports_and_continues(codec, tmp_path):
    out = tmp_path / "base"
    metrics = pretrain_base(out, codec, steps=3, build_config=TINY_BUILD, progress=False)

    rows = [json.loads(line) for line in (out / "synthx" / I2V_METADATA).read_text().splitlines()]
    split = (out / "synthx" / "train.jsonl").read_text().splitlines()
    assert len(rows) == len(split) == TINY_BUILD.train and {row["task"] for row in rows} == {"ti2v"}
    logged = [json.loads(line) for line in (out / "train" / "losses.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in logged] == [1, 2, 3]
    assert {task for entry in logged for task in entry["tasks"]} == {"ti2v"}

    pipe = load_pipeline(metrics["export"])
    trained_vae = pipe.vae.state_dict()
    for name, value in AutoencoderKLWan.from_pretrained(codec / "vae").state_dict().items():
        assert torch.equal(trained_vae[name], value), name  # the codec is frozen: the base is trained on its latents

    # the package's layout of it, as weights/base ships: no VAE, its codec recorded, loadable with that codec
    fit = json.loads((out / "base" / BASE_FIT_FILE).read_text())
    assert fit["steps"] == 3 and fit["recipe"] == "synthx_base" and not (out / "base" / "vae").exists()
    assert load_pipeline(base_pipeline(out / "base", codec, tmp_path / "assembled")).transformer is not None

    again = pretrain_base(out, codec, steps=3, build_config=TINY_BUILD, progress=False)
    assert again["export"] == metrics["export"]
    assert len((out / "train" / "losses.jsonl").read_text().splitlines()) == 3  # nothing retrained


def test_a_folder_without_a_codec_is_refused_before_any_work(tmp_path):
    with pytest.raises(FileNotFoundError, match="no codec in"):
        pretrain_base(tmp_path / "base", tmp_path, steps=1, build_config=TINY_BUILD, progress=False)
    assert not (tmp_path / "base").exists()
