"""A synthetic Animate-X++ release: an independent re-implementation of the official pose modules (DiffSynth /
Animate-X++ layouts and key names, seq-first transformer, hand-written attention) at the tiny preset's sizes, whose
state dict plus LoRA pairs in DiffSynth names is the checkpoint the importer and `animatex-pp convert` read; and
`write_release`, the folders a user converts: a diffusers Wan2.1 I2V model, a CLIP and that checkpoint.
"""

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers import WanImageToVideoPipeline, WanTransformer3DModel

from animatex_pp.models.presets import split_preset
from animatex_pp.testing import tiny_components

BASE_CONFIG, STREAM_CONFIG = split_preset("tiny")
INNER_DIM = BASE_CONFIG["num_attention_heads"] * BASE_CONFIG["attention_head_dim"]
LORA_RANK = 4
# Where each DiffSynth LoRA target lives in diffusers' Wan block (written out here, independently of the converter).
DIFFSYNTH_TARGETS = {
    "self_attn.q": lambda block: block.attn1.to_q,
    "self_attn.k": lambda block: block.attn1.to_k,
    "self_attn.v": lambda block: block.attn1.to_v,
    "self_attn.o": lambda block: block.attn1.to_out[0],
    "cross_attn.q": lambda block: block.attn2.to_q,
    "cross_attn.k": lambda block: block.attn2.to_k,
    "cross_attn.v": lambda block: block.attn2.to_v,
    "cross_attn.o": lambda block: block.attn2.to_out[0],
    "ffn.0": lambda block: block.ffn.net[0].proj,
    "ffn.2": lambda block: block.ffn.net[2],
}


# ----------------------------------------------------------------------------- the official modules, re-implemented


def official_conv3d_stack(hidden, out):
    conv = nn.Conv3d
    return nn.Sequential(
        conv(3, hidden, 3, 1, 1), nn.SiLU(),
        conv(hidden, hidden, 3, 1, 1), nn.SiLU(),
        conv(hidden, hidden, 3, 1, 1), nn.SiLU(),
        conv(hidden, hidden, 3, (1, 2, 2), 1), nn.SiLU(),
        conv(hidden, hidden, 3, (2, 2, 2), 1), nn.SiLU(),
        conv(hidden, hidden, 3, (2, 2, 2), 1), nn.SiLU(),
        conv(hidden, out, (1, 2, 2), (1, 2, 2), 0),
    )  # fmt: skip


def official_conv2d_stack(hidden, out):
    conv = nn.Conv2d
    return nn.Sequential(
        conv(3, hidden, 3, 1, 1), nn.SiLU(),
        conv(hidden, hidden, 3, 1, 1), nn.SiLU(),
        conv(hidden, hidden, 3, 1, 1), nn.SiLU(),
        conv(hidden, hidden, 3, 2, 1), nn.SiLU(),
        conv(hidden, hidden, 3, 2, 1), nn.SiLU(),
        conv(hidden, out, 3, 2, 1),
    )  # fmt: skip


class OfficialEncoderLayer(nn.Module):
    """DETR-style post-norm layer, sequence-first, ReLU."""

    def __init__(self, d, heads, ffn):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d, heads)
        self.linear1, self.linear2 = nn.Linear(d, ffn), nn.Linear(ffn, d)
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)

    def forward(self, src):
        src = self.norm1(src + self.self_attn(src, src, src)[0])
        return self.norm2(src + self.linear2(F.relu(self.linear1(src))))


class OfficialKeypointEncoder(nn.Module):
    """`pose_embedding_before` (DwposeEncoder)."""

    def __init__(self, d, heads, layers, ffn, max_len, input_dim=36):
        super().__init__()
        self.increase_embed_dim = nn.Sequential(nn.Linear(input_dim, d // 2), nn.Linear(d // 2, d))
        self.encoder = nn.Module()
        self.encoder.layers = nn.ModuleList([OfficialEncoderLayer(d, heads, ffn) for _ in range(layers)])
        self.pos_embed = nn.Module()
        angles = np.array([[p / np.power(10000, 2 * (j // 2) / d) for j in range(d)] for p in range(max_len)])
        angles[:, 0::2], angles[:, 1::2] = np.sin(angles[:, 0::2]), np.cos(angles[:, 1::2])
        self.pos_embed.register_buffer("pos_table", torch.FloatTensor(angles).unsqueeze(0))
        self.pre_image_condition_p = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))

    def forward(self, x):  # x: (1, L, 36) -> (L, 1, d)
        x = self.increase_embed_dim(x).permute(1, 0, 2)
        x = x + self.pos_embed.pos_table[:, : x.shape[0]].permute(1, 0, 2)
        for layer in self.encoder.layers:
            x = layer(x)
        return self.pre_image_condition_p(x)


class OfficialPerceiverAttention(nn.Module):
    def __init__(self, dim, dim_head, heads):
        super().__init__()
        self.heads, self.dim_head = heads, dim_head
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, dim_head * heads, bias=False)
        self.to_kv = nn.Linear(dim, dim_head * heads * 2, bias=False)
        self.to_out = nn.Linear(dim_head * heads, dim, bias=False)

    def forward(self, x, latents):
        x, latents = self.norm1(x), self.norm2(latents)
        b, length, _ = latents.shape
        q = self.to_q(latents)
        k, v = self.to_kv(torch.cat((x, latents), dim=-2)).chunk(2, dim=-1)
        q, k, v = (t.view(b, t.shape[1], self.heads, -1).transpose(1, 2) for t in (q, k, v))
        scale = 1 / math.sqrt(math.sqrt(self.dim_head))
        weight = torch.softmax((q * scale) @ (k * scale).transpose(-2, -1), dim=-1)
        return self.to_out((weight @ v).permute(0, 2, 1, 3).reshape(b, length, -1))


class OfficialResampler(nn.Module):
    """`pose_embedding_after`."""

    def __init__(self, dim, depth, dim_head, heads, embedding_dim, output_dim, ff_mult, frames, latent_frames, inner):
        super().__init__()
        self.latents = nn.Parameter(torch.randn(1, 1, dim) / dim**0.5)
        self.proj_in = nn.Linear(embedding_dim, dim)
        self.proj_out = nn.Linear(dim, output_dim)
        self.norm_out = nn.LayerNorm(output_dim)
        self.proj_out2 = nn.Linear(output_dim, inner)
        self.proj_conv = nn.Conv1d(frames, latent_frames, kernel_size=3, stride=1, padding=1)
        feed_forward = lambda: nn.Sequential(  # noqa: E731
            nn.LayerNorm(dim),
            nn.Linear(dim, dim * ff_mult, bias=False),
            nn.GELU(),
            nn.Linear(dim * ff_mult, dim, bias=False),
        )
        self.layers = nn.ModuleList(
            [nn.ModuleList([OfficialPerceiverAttention(dim, dim_head, heads), feed_forward()]) for _ in range(depth)]
        )

    def forward(self, x, latents):  # x: (F, 1, clip), latents: (F, 1, dim) -> (F_lat, 1, inner)
        latents = self.latents.repeat(x.size(0), 1, 1) + latents
        x = self.proj_in(x)
        for attn, ff in self.layers:
            latents = attn(x, latents) + latents
            latents = ff(latents) + latents
        latents = self.norm_out(self.proj_out(latents)).permute(1, 0, 2)
        return self.proj_out2(self.proj_conv(latents).permute(1, 0, 2))


class OfficialStreams(nn.Module):
    def __init__(self, with_ipi=True):
        super().__init__()
        c = STREAM_CONFIG
        self.dwpose_embedding = official_conv3d_stack(c["pose_video_hidden_channels"], INNER_DIM)
        self.randomref_embedding_pose = official_conv2d_stack(c["reference_pose_hidden_channels"], 20)
        if with_ipi:
            self.pose_embedding_before = OfficialKeypointEncoder(
                c["ipi_encoder_dim"], c["ipi_encoder_heads"], c["ipi_encoder_layers"], c["ipi_encoder_ffn_dim"],
                c["ipi_encoder_max_frames"],
            )  # fmt: skip
            self.pose_embedding_after = OfficialResampler(
                c["ipi_resampler_dim"], c["ipi_resampler_depth"], c["ipi_resampler_head_dim"],
                c["ipi_resampler_heads"], c["ipi_clip_dim"], c["ipi_resampler_output_dim"],
                c["ipi_resampler_ff_mult"], c["ipi_num_frames"], c["ipi_num_latent_frames"], INNER_DIM,
            )  # fmt: skip
        generator = torch.Generator().manual_seed(7)
        with torch.no_grad():
            for parameter in self.parameters():  # non-zero everywhere, like trained weights
                parameter.copy_(0.2 * torch.randn(parameter.shape, generator=generator))

    def ipi(self, keypoints, clip):  # one sample: (F, 18, 2), (F, D) -> (F_lat, inner)
        flat = keypoints.permute(0, 2, 1).reshape(1, keypoints.shape[0], -1)  # 'f dim c -> f (dim c)'
        pose = self.pose_embedding_before(flat)  # (F, 1, d)
        return self.pose_embedding_after(clip.unsqueeze(1), pose)[:, 0]


def synthetic_release(wan, with_ipi=True, seed=3):
    """(state dict with the official key names, the oracle streams) for the tiny Wan model."""
    streams = OfficialStreams(with_ipi)
    state = {key: value.clone() for key, value in streams.state_dict().items()}
    generator = torch.Generator().manual_seed(seed)
    for index, block in enumerate(wan.blocks):
        for name, module_of in DIFFSYNTH_TARGETS.items():
            out_features, in_features = module_of(block).weight.shape
            prefix = f"pipe.dit.blocks.{index}.{name}"
            state[f"{prefix}.lora_A.default.weight"] = 0.1 * torch.randn(LORA_RANK, in_features, generator=generator)
            state[f"{prefix}.lora_B.default.weight"] = 0.1 * torch.randn(out_features, LORA_RANK, generator=generator)
    return state, streams


def write_release(folder: Path) -> Path:
    """`folder` with `wan/` (a tiny diffusers Wan2.1 I2V pipeline), `clip/` (a motion encoder) and
    `animate-x++.ckpt` (the synthetic release for that Wan transformer, in the official key names)."""
    components = tiny_components(seed=0)
    motion_encoder = components.pop("motion_encoder")
    base_config, _ = split_preset("tiny")
    torch.manual_seed(0)
    components["transformer"] = WanTransformer3DModel(**base_config).eval()
    WanImageToVideoPipeline(**components).save_pretrained(folder / "wan")
    motion_encoder.save_pretrained(folder / "clip")
    state, _ = synthetic_release(components["transformer"])
    torch.save(state, folder / "animate-x++.ckpt")
    return folder
