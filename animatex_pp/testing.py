"""A complete, tiny `AnimateXPipeline` built in-process from random weights, for tests, docs and benchmarks.

No file is downloaded: the tokenizer comes from an in-memory vocabulary, every model from a small config and a seed.
Its sizes follow the transformer's `tiny` preset (width 32, 4 blocks, IPI windows of 9 frames), so it runs 2
denoising steps of 9 frames at 32 x 32 in about a second on a CPU.

    >>> from animatex_pp.testing import tiny_pipeline
    >>> pipe = tiny_pipeline(seed=0)
"""

from __future__ import annotations

import string

import torch
from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler
from transformers import (
    CLIPImageProcessorPil,
    CLIPVisionConfig,
    CLIPVisionModel,
    CLIPVisionModelWithProjection,
    T5Tokenizer,
    UMT5Config,
    UMT5EncoderModel,
)

from animatex_pp.models.presets import get_preset
from animatex_pp.models.transformer import AnimateXTransformer3DModel

TINY_IMAGE_SIZE = 32  # the tiny CLIPs' input size; patch 2 gives Wan's 16 x 16 + 1 = 257 image tokens

# Words of typical prompts get their own pieces; any other text falls back to single characters.
_WORDS = (
    "a an the person girl boy character is are dancing dances walking jumping waving arms legs in on with of and "
    "background flames fire burning light lights city street sky night stage water rain snow trees wind moving "
    "anime cartoon realistic video high quality blurry static"
).split()


def tiny_tokenizer() -> T5Tokenizer:
    """A umT5-style unigram tokenizer from an in-memory vocabulary: specials, whole words, then characters."""
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    pieces += [(f"\u2581{word}", -1.0) for word in _WORDS]
    pieces += [(character, -5.0) for character in string.ascii_letters + string.digits + string.punctuation]
    pieces += [(f"\u2581{character}", -4.0) for character in string.ascii_lowercase]
    return T5Tokenizer(vocab=pieces, extra_ids=0)


def tiny_components(seed: int = 0, **transformer_overrides) -> dict:
    """The components of a tiny `AnimateXPipeline` (also valid for `diffusers.WanImageToVideoPipeline`, minus the
    motion encoder), each initialised from `seed`.

    `transformer_overrides` change the transformer's `tiny` preset (e.g. a wider model for benchmarks); the text
    encoder and the two CLIPs follow its `text_dim`, `image_dim` and `ipi_clip_dim`.
    """
    preset = {**get_preset("tiny"), **transformer_overrides}
    tokenizer = tiny_tokenizer()

    torch.manual_seed(seed)
    text_encoder = UMT5EncoderModel(
        UMT5Config(
            vocab_size=len(tokenizer),
            d_model=preset["text_dim"],
            d_kv=16,
            d_ff=64,
            num_layers=2,
            num_heads=2,
            relative_attention_num_buckets=8,
            relative_attention_max_distance=32,
            feed_forward_proj="gated-gelu",
        )
    ).eval()

    torch.manual_seed(seed + 1)
    # Wan's image encoder: penultimate hidden states, width = the transformer's image_dim.
    image_encoder = CLIPVisionModel(
        CLIPVisionConfig(
            hidden_size=preset["image_dim"],
            intermediate_size=48,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=TINY_IMAGE_SIZE,
            patch_size=2,
        )
    ).eval()
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": TINY_IMAGE_SIZE}, crop_size={"height": TINY_IMAGE_SIZE, "width": TINY_IMAGE_SIZE}
    )

    torch.manual_seed(seed + 2)
    # The IPI's CLIP: pooled, projected embedding, width = the transformer's ipi_clip_dim.
    motion_encoder = CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            image_size=TINY_IMAGE_SIZE,
            patch_size=8,
            projection_dim=preset["ipi_clip_dim"],
        )
    ).eval()

    torch.manual_seed(seed + 3)
    vae = AutoencoderKLWan(
        base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True]
    ).eval()

    torch.manual_seed(seed + 4)
    transformer = AnimateXTransformer3DModel.from_preset("tiny", **transformer_overrides).eval()

    return {
        "tokenizer": tokenizer,
        "text_encoder": text_encoder,
        "image_encoder": image_encoder,
        "image_processor": image_processor,
        "motion_encoder": motion_encoder,
        "vae": vae,
        "transformer": transformer,
        # The official sampler: flow matching with shift 5.
        "scheduler": FlowMatchEulerDiscreteScheduler(shift=5.0),
    }


def tiny_pipeline(seed: int = 0):
    """A complete `AnimateXPipeline` of tiny random components (streams at their zero initialisation)."""
    from animatex_pp.pipelines.pipeline_animatex import AnimateXPipeline

    return AnimateXPipeline(**tiny_components(seed))
