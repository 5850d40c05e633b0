"""The export's LoRA fold (diffusers' fuse_lora + unload_lora): the merged pipeline computes what the trained adapter
computes, and so does the unmerged one with its LoRA file loaded."""

import pytest
import torch

from animatex_pp.pipelines.pipeline_animatex import AnimateXPipeline
from animatex_pp.testing import tiny_pipeline
from animatex_pp.training.export import export
from animatex_pp.training.model import apply_adapters
from animatex_pp.training.schema import AdapterConfig, LoraSettings
from tests.helpers.streams import randomize_streams
from tests.helpers.transformer_inputs import make_inputs, run


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny pipeline with a LoRA of alpha 2 x rank (scale 2) whose up-projections left zero, and speaking streams."""
    pipeline = tiny_pipeline(seed=0)
    transformer = pipeline.transformer
    apply_adapters(transformer, AdapterConfig(lora=LoraSettings(rank=4, alpha=8)))
    randomize_streams(pipeline, seed=1)
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for name, parameter in transformer.named_parameters():
            if "lora_B" in name:
                parameter.copy_(0.1 * torch.randn(parameter.shape, generator=generator))
    transformer.eval()
    out = tmp_path_factory.mktemp("export")
    inputs = make_inputs(seed=3)
    return pipeline, run(transformer, inputs), inputs, out


def test_a_merged_export_computes_what_the_adapter_computes(trained):
    pipeline, expected, inputs, out = trained
    folder = export(pipeline, pipeline.transformer, out / "merged", merge_lora=True, is_main=True)
    merged = AnimateXPipeline.from_pretrained(folder).transformer
    assert not any("lora" in name for name in merged.state_dict())  # plain linears, the LoRA folded in
    torch.testing.assert_close(run(merged, inputs), expected, rtol=1e-5, atol=1e-5)


def test_an_unmerged_export_computes_it_with_its_lora_file_loaded(trained):
    pipeline, expected, inputs, out = trained
    folder = export(pipeline, pipeline.transformer, out / "adapter", merge_lora=False, is_main=True)
    pipe = AnimateXPipeline.from_pretrained(folder)
    base = run(pipe.transformer, inputs)
    assert (base - expected).abs().max() > 1e-3  # the LoRA changes the output: the comparison below means something
    pipe.load_lora_weights(folder)
    torch.testing.assert_close(run(pipe.transformer, inputs), expected, rtol=1e-5, atol=1e-5)
