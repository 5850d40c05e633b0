"""Randomness as a function, not a state (docs/data.md, Randomness).

Every random choice of training — the task of a step, a clip's window and reference frame, the EPI augmentation,
a replacement for a clip that failed to decode, condition dropout, the noise level and the noise — is drawn from a
generator made for it from `(seed, stream, step, rank, sample, ...)`. A resumed run therefore replays exactly
without pickled generator states, data workers need no coordination, and two ranks agree on whatever they derive
from the same keys (the task of a step) while differing where the rank is a key (their samples' noise).
"""

from __future__ import annotations

import numpy as np
import torch

# One number per kind of choice, so that two choices drawn from the same keys are still independent.
STREAMS = {
    "plan": 1,  # the task and resolution bucket of each step (keys: step block)
    "shuffle": 2,  # a task's sample order in an epoch (keys: task, bucket, epoch)
    "window": 3,  # a clip's stride, start and reference frame (keys: step, rank, sample)
    "epi": 4,  # the EPI augmentation of a clip's pose (keys: step, rank, sample)
    "replacement": 5,  # the clip that replaces one that failed to decode (keys: step, rank, sample, attempt)
    "dropout": 6,  # condition dropout (keys: step, rank)
    "sigma": 7,  # the noise level (keys: step, rank)
    "noise": 8,  # the noise (keys: step, rank)
}


def seed_sequence(seed: int, stream: str, *keys: int) -> np.random.SeedSequence:
    if stream not in STREAMS:
        raise ValueError(f"unknown random stream {stream!r}: use one of {', '.join(STREAMS)}")
    entropy = [int(seed), STREAMS[stream], *(int(key) for key in keys)]
    if min(entropy) < 0:
        raise ValueError(f"seeds and keys must be non-negative integers, got {entropy}")
    return np.random.SeedSequence(entropy)


def numpy_generator(seed: int, stream: str, *keys: int) -> np.random.Generator:
    """A numpy generator for one choice, made from `(seed, stream, *keys)`."""
    return np.random.default_rng(seed_sequence(seed, stream, *keys))


def torch_generator(seed: int, stream: str, *keys: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A torch generator for one choice (noise, σ, dropout), made from `(seed, stream, *keys)`."""
    generator = torch.Generator(device=device)
    # 63 bits: torch seeds are signed 64-bit integers.
    generator.manual_seed(int(seed_sequence(seed, stream, *keys).generate_state(1, np.uint64)[0]) >> 1)
    return generator
