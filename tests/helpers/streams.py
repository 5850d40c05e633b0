"""Pose streams with weights that speak: a fresh model's zero-initialised output layers make every stream silent,
so a test that compares stream outputs would compare zeros."""

import torch

from animatex_pp import AnimateXPipeline


def randomize_streams(pipe: AnimateXPipeline, seed: int = 0) -> None:
    """Give every pose stream of `pipe`'s transformer non-zero weights, like trained ones."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in pipe.transformer.stream_parameters():
            parameter.copy_(0.2 * torch.randn(parameter.shape, generator=generator))
