"""Getting a pipeline: from a folder (VAE and CLIPs in float32, a damaged folder said to be so), a folder's geometry
from its configs alone, and a pipeline built from Wan2.1 weights and a released checkpoint."""

import json
import shutil

import pytest
import torch

from animatex_pp import AnimateXPipeline
from animatex_pp.pipelines.loading import component_dtypes, load_pipeline, pipeline_from_wan, read_pipeline_geometry
from animatex_pp.testing import tiny_pipeline
from tests.helpers.official_release import write_release


def test_a_folder_loads_with_the_vae_and_the_clips_in_float32(model_dir):
    pipe = load_pipeline(model_dir, dtype="bf16")
    assert isinstance(pipe, AnimateXPipeline)
    assert pipe.transformer.dtype == pipe.text_encoder.dtype == torch.bfloat16
    assert pipe.vae.dtype == pipe.image_encoder.dtype == pipe.motion_encoder.dtype == torch.float32
    assert component_dtypes(torch.float16) == {
        "vae": torch.float32,
        "image_encoder": torch.float32,
        "motion_encoder": torch.float32,
        "default": torch.float16,
    }
    with pytest.raises(ValueError, match="dtype must be one of bf16, fp16, fp32, got 'float64'"):
        load_pipeline(model_dir, dtype="float64")


def test_a_damaged_folder_is_a_value_error_that_says_so(model_dir, tmp_path):
    damaged = shutil.copytree(model_dir, tmp_path / "model")
    weights = damaged / "transformer" / "diffusion_pytorch_model.safetensors"
    whole = weights.read_bytes()
    weights.write_bytes(whole[:-1000])
    with pytest.raises(ValueError, match=f"{weights} is truncated: it holds {len(whole) - 1000} of the"):
        load_pipeline(damaged)
    weights.write_bytes(whole)
    (damaged / "text_encoder" / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="could not be loaded as a pipeline .*: the folder is incomplete or damaged"):
        load_pipeline(damaged)


def test_a_folders_geometry_comes_from_its_configs_alone(model_dir, tmp_path):
    # The JSON files without a single weight.
    configs = tmp_path / "configs"
    for path in model_dir.rglob("*.json"):
        (configs / path.relative_to(model_dir)).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, configs / path.relative_to(model_dir))
    assert read_pipeline_geometry(configs) == tiny_pipeline(seed=0).geometry
    index = json.loads((configs / "model_index.json").read_text())
    index["motion_encoder"] = [None, None]
    (configs / "model_index.json").write_text(json.dumps(index))
    assert read_pipeline_geometry(configs).ipi_frames is None
    (configs / "vae" / "config.json").unlink()
    with pytest.raises(ValueError, match="vae/config.json could not be read"):
        read_pipeline_geometry(configs)


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    return write_release(tmp_path_factory.mktemp("release"))


def test_wan_weights_and_a_release_make_a_pipeline(release):
    wan, checkpoint, clip = release / "wan", release / "animate-x++.ckpt", release / "clip"
    pipe = pipeline_from_wan(wan, checkpoint, clip, scheduler="euler", shift=3.0, dtype="fp32", preset="tiny")
    assert type(pipe.scheduler).__name__ == "FlowMatchEulerDiscreteScheduler" and pipe.scheduler.config.shift == 3.0
    assert pipe.motion_encoder is not None and pipe.geometry.ipi_frames == 9
    assert pipe.vae.dtype == pipe.motion_encoder.dtype == torch.float32
    assert pipe.transformer.pose_video_encoder.layers[-1].weight.abs().sum() > 0  # the release's weights
    with pytest.raises(ValueError, match="has an implicit pose indicator, which needs the CLIP it was trained with"):
        pipeline_from_wan(wan, checkpoint, preset="tiny")
    with pytest.raises(ValueError, match="scheduler must be one of unipc, euler, got 'ddim'"):
        pipeline_from_wan(wan, checkpoint, clip, scheduler="ddim")
    with pytest.raises(FileNotFoundError):
        pipeline_from_wan(release / "missing", checkpoint, clip)
