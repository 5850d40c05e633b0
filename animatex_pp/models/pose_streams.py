"""The three pose-conditioning streams that Animate-X++ grafts onto the Wan2.1 I2V DiT.

Read top-down: the zero-init helper, the explicit pose encoders (pose video, reference pose), then the implicit
pose indicator (keypoint encoder, Perceiver resampler, temporal compression, output projection).

Every stream ends in a layer that `AnimateXTransformer3DModel.initialize_stream_weights` zeroes with `zero_module`,
so a freshly built stream adds exactly nothing and the DiT starts from the base Wan model's output. Released
Animate-X++ weights replace those zeros.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange


def zero_module(module: nn.Module) -> nn.Module:
    """Zero every parameter of `module` (the output layer of each grafted stream) and return it."""
    for parameter in module.parameters():
        nn.init.zeros_(parameter)
    return module


def _conv_stack(
    conv: type[nn.Conv2d] | type[nn.Conv3d],
    in_channels: int,
    hidden_channels: int,
    out_channels: int,
    strides: Sequence[Sequence[int]],
    final_kernel_equals_stride: bool,
) -> nn.Sequential:
    """Convolutions with SiLU between them; the layout (indices 0, 2, 4, ...) matches the official checkpoints.

    All but the last layer are kernel 3, padding 1. The official pose-video stack ends with a conv whose kernel equals
    its stride (a patchify); the reference-pose stack ends with an ordinary kernel-3 conv.
    """
    layers: list[nn.Module] = []
    channels = in_channels
    for index, stride in enumerate(strides):
        is_last = index == len(strides) - 1
        next_channels = out_channels if is_last else hidden_channels
        if is_last and final_kernel_equals_stride:
            layers.append(conv(channels, next_channels, kernel_size=tuple(stride), stride=tuple(stride)))
        else:
            layers.append(conv(channels, next_channels, kernel_size=3, stride=tuple(stride), padding=1))
            if not is_last:
                layers.append(nn.SiLU())
        channels = next_channels
    return nn.Sequential(*layers)


class PoseVideoEncoder(nn.Module):
    """Explicit pose indicator: a rendered skeleton video to one token per DiT patch.

    Input (B, 3, F, H, W) in [0, 1] with F = 4k + 1. As the official code does, frame 0 is repeated so the frame
    count becomes a multiple of the temporal stride; the total stride then maps pixels onto the patch grid
    (temporal 4 = VAE, spatial 16 = VAE 8 x patch 2 for Wan2.1).
    """

    def __init__(self, hidden_channels: int, out_channels: int, strides: Sequence[Sequence[int]]):
        super().__init__()
        self.temporal_stride = math.prod(stride[0] for stride in strides)
        self.layers = _conv_stack(
            nn.Conv3d, 3, hidden_channels, out_channels, strides, final_kernel_equals_stride=True
        )

    def forward(self, pose_video: torch.Tensor) -> torch.Tensor:
        first_frame = pose_video[:, :, :1]
        # (B, 3, F, H, W) -> (B, 3, F + temporal_stride - 1, H, W)
        pose_video = torch.cat([first_frame.expand(-1, -1, self.temporal_stride - 1, -1, -1), pose_video], dim=2)
        if pose_video.device.type == "cpu":
            # oneDNN runs these full-resolution 3D convs ~2.5x faster channels-last (measured at 81 x 128 x 128).
            pose_video = pose_video.contiguous(memory_format=torch.channels_last_3d)
        return self.layers(pose_video)


class ReferencePoseEncoder(nn.Module):
    """The reference image's skeleton (B, 3, H, W) in [0, 1] -> (B, C_cond, H / 8, W / 8) I2V condition channels."""

    def __init__(self, hidden_channels: int, out_channels: int, strides: Sequence[Sequence[int]]):
        super().__init__()
        self.layers = _conv_stack(
            nn.Conv2d, 3, hidden_channels, out_channels, strides, final_kernel_equals_stride=False
        )

    def forward(self, reference_pose: torch.Tensor) -> torch.Tensor:
        return self.layers(reference_pose)


def sinusoidal_position_table(length: int, dim: int) -> torch.Tensor:
    """The Transformer's sinusoid table (length, dim): sin on even, cos on odd channels, as the official encoder."""
    positions = torch.arange(length, dtype=torch.float64).unsqueeze(1)
    frequencies = torch.pow(10000.0, 2 * (torch.arange(dim) // 2) / dim).to(torch.float64)
    angles = positions / frequencies
    table = torch.empty(length, dim, dtype=torch.float64)
    table[:, 0::2] = torch.sin(angles[:, 0::2])
    table[:, 1::2] = torch.cos(angles[:, 1::2])
    return table.float()


class KeypointEncoder(nn.Module):
    """Driving keypoints (B, F, K * 2), coordinate-major, -> one pose token per frame (B, F, d_model).

    Two linear layers lift the coordinates, sinusoidal frame positions are added once, a post-norm transformer
    encoder (torch's own layer, whose state-dict names the official checkpoint shares) mixes frames, and an MLP with
    a zero-init last layer produces the token that is added to the resampler's learnable query.
    """

    def __init__(
        self,
        input_dim: int,
        d_model: int,
        num_heads: int,
        num_layers: int,
        ffn_dim: int,
        dropout: float,
        max_frames: int,
    ):
        super().__init__()
        self.input_proj = nn.Sequential(nn.Linear(input_dim, d_model // 2), nn.Linear(d_model // 2, d_model))
        self.register_buffer("position_table", sinusoidal_position_table(max_frames, d_model), persistent=False)
        encoder_layer = nn.TransformerEncoderLayer(
            d_model, num_heads, ffn_dim, dropout, activation="relu", batch_first=True, norm_first=False
        )
        self.encoder = nn.TransformerEncoder(encoder_layer, num_layers, enable_nested_tensor=False)
        self.output_mlp = nn.Sequential(nn.Linear(d_model, d_model), nn.SiLU(), nn.Linear(d_model, d_model))

    def forward(self, keypoints: torch.Tensor) -> torch.Tensor:
        num_frames = keypoints.shape[1]
        tokens = self.input_proj(keypoints) + self.position_table[:num_frames].to(keypoints.dtype)
        return self.output_mlp(self.encoder(tokens))


class PerceiverAttention(nn.Module):
    """Queries attend to [context; queries] (the IP-Adapter resampler's attention), one frame per batch row."""

    def __init__(self, dim: int, num_heads: int, head_dim: int):
        super().__init__()
        self.num_heads = num_heads
        self.norm_context = nn.LayerNorm(dim)
        self.norm_query = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, num_heads * head_dim, bias=False)
        self.to_kv = nn.Linear(dim, 2 * num_heads * head_dim, bias=False)
        self.to_out = nn.Linear(num_heads * head_dim, dim, bias=False)

    def forward(self, context: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
        context, queries = self.norm_context(context), self.norm_query(queries)
        keys, values = self.to_kv(torch.cat([context, queries], dim=1)).chunk(2, dim=-1)
        # (N, L, heads * head_dim) -> (N, heads, L, head_dim)
        q, k, v = (rearrange(x, "n l (h d) -> n h l d", h=self.num_heads) for x in (self.to_q(queries), keys, values))
        out = F.scaled_dot_product_attention(q, k, v)
        # (N, heads, L, head_dim) -> (N, L, heads * head_dim)
        return self.to_out(rearrange(out, "n h l d -> n l (h d)"))


class PerceiverBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, head_dim: int, ff_mult: int):
        super().__init__()
        self.attn = PerceiverAttention(dim, num_heads, head_dim)
        self.ff = nn.Sequential(
            nn.LayerNorm(dim),
            nn.Linear(dim, dim * ff_mult, bias=False),
            nn.GELU(),
            nn.Linear(dim * ff_mult, dim, bias=False),
        )

    def forward(self, context: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
        queries = queries + self.attn(context, queries)
        return queries + self.ff(queries)


class ImplicitPoseIndicator(nn.Module):
    """IPI: driving keypoints + CLIP embeddings of the driving frames -> one vector per latent frame.

    Steps: (1) keypoint encoder -> pose token per frame; (2) query = learnable query + pose token; (3) Perceiver
    resampler with keys/values [CLIP token; query], per frame; (4) temporal compression F -> F_latent by a Conv1d
    that treats frames as channels (so it is tied to one frame count, `num_frames`); (5) zero-init projection to the
    DiT width. The result (B, F_latent, inner_dim) is broadcast over each latent frame's tokens by the DiT blocks.
    """

    def __init__(
        self,
        inner_dim: int,
        num_keypoints: int,
        encoder_dim: int,
        encoder_heads: int,
        encoder_layers: int,
        encoder_ffn_dim: int,
        encoder_dropout: float,
        encoder_max_frames: int,
        clip_dim: int,
        resampler_dim: int,
        resampler_depth: int,
        resampler_heads: int,
        resampler_head_dim: int,
        resampler_ff_mult: int,
        resampler_output_dim: int,
        num_frames: int,
        num_latent_frames: int,
        temporal_kernel_size: int,
    ):
        super().__init__()
        self.num_frames = num_frames
        self.num_keypoints = num_keypoints
        # 1. Keypoint encoder
        self.keypoint_encoder = KeypointEncoder(
            2 * num_keypoints,
            encoder_dim,
            encoder_heads,
            encoder_layers,
            encoder_ffn_dim,
            encoder_dropout,
            encoder_max_frames,
        )
        # 2. Learnable query (one per frame, shared across frames)
        self.query = nn.Parameter(torch.randn(1, 1, resampler_dim) / resampler_dim**0.5)
        # 3. Perceiver resampler
        self.proj_in = nn.Linear(clip_dim, resampler_dim)
        self.layers = nn.ModuleList(
            [
                PerceiverBlock(resampler_dim, resampler_heads, resampler_head_dim, resampler_ff_mult)
                for _ in range(resampler_depth)
            ]
        )
        self.proj_out = nn.Linear(resampler_dim, resampler_output_dim)
        self.norm_out = nn.LayerNorm(resampler_output_dim)
        # 4. Temporal compression: frames are the Conv1d's channels, features its length
        self.temporal_proj = nn.Conv1d(
            num_frames, num_latent_frames, temporal_kernel_size, padding=temporal_kernel_size // 2
        )
        # 5. Output projection to the DiT width
        self.out_proj = nn.Linear(resampler_output_dim, inner_dim)

    def forward(self, pose_keypoints: torch.Tensor, driving_image_embeds: torch.Tensor) -> torch.Tensor:
        batch_size, num_frames, num_keypoints, _ = pose_keypoints.shape
        dtype = self.proj_in.weight.dtype
        # 1. (B, F, K, 2) -> (B, F, 2 * K), coordinate-major [x_0..x_K-1, y_0..y_K-1] as the official encoder reads it
        keypoints = rearrange(pose_keypoints, "b f k c -> b f (c k)").to(dtype)
        pose_tokens = self.keypoint_encoder(keypoints)

        # 2. (B, F, D) -> (B * F, 1, D): each frame is its own resampler problem
        queries = self.query + rearrange(pose_tokens, "b f d -> (b f) 1 d")
        # 3. (B, F, D_clip) -> (B * F, 1, D)
        context = self.proj_in(rearrange(driving_image_embeds.to(dtype), "b f d -> (b f) 1 d"))
        for block in self.layers:
            queries = block(context, queries)
        queries = self.norm_out(self.proj_out(queries))

        # 4. (B * F, 1, D_out) -> (B, F, D_out) -> (B, F_latent, D_out)
        frames = rearrange(queries, "(b f) 1 d -> b f d", b=batch_size)
        latent_frames = self.temporal_proj(frames)
        # 5. (B, F_latent, D_out) -> (B, F_latent, inner_dim)
        return self.out_proj(latent_frames)
