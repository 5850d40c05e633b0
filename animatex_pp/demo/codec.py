"""`fit_vae`: the demo's first stage, a small `AutoencoderKLWan` fitted on SynthX frames (docs/results.md).

No pretrained Wan VAE can be had offline, and a random one maps every clip to noise, so the demo fits one, in two
phases: random `crop_frames`-long crops of the training videos (cheap steps that teach the spatial code), then
whole clips (`clip_steps`). The second phase is needed because the encoder and decoder run chunk by chunk with
causal caches that carry state from chunk to chunk: a VAE trained on 5-frame crops only ever saw two latent frames,
and measured on 17-frame clips it drifted from 22 dB on frames 1-4 down to 17 dB on the last ones (docs/results.md).
The loss is L1 reconstruction plus a small KL term (so the posterior stays a distribution the decoder is robust
to), with AdamW. The pipeline normalises latents with the VAE config's `latents_mean` / `latents_std` (Wan's values
belong to Wan's VAE), so the per-channel statistics of this VAE's latents over the training clips are written
there. The held-out reconstruction PSNR is measured as `animatex_pp.eval.metrics.psnr` measures generated clips, so
it is the ceiling of every number the demo reports.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import AutoencoderKLWan
from tqdm.auto import tqdm

from animatex_pp.data.metadata import load_metadata
from animatex_pp.eval.metrics import psnr
from animatex_pp.io.files import atomic_directory, atomic_output
from animatex_pp.io.frames import signed_to_uint8, to_signed
from animatex_pp.io.video import read_video
from animatex_pp.pipelines.geometry import VaeFactors

__all__ = ["FIT_FILE", "VAE_CONFIG", "fit_vae", "load_videos"]

# Wan2.2's VAE layout at a tiny width: 2 x 2 patchify (12 input channels) then two residual down blocks, whose
# parameter-free shortcuts (AvgDown3D / DupUp3D) give the gradient a direct path. Same latent geometry as the tiny
# pipeline's VAE (16 channels, 4 x 8 x 8 compression), so the transformer sees the same shapes. Wan2.1's layout at
# this size (base_dim 3, whose decoder halves the channels to 1 at each upsampling) plateaued near 15 dB.
VAE_CONFIG: dict[str, Any] = {
    "base_dim": 16,
    "z_dim": 16,
    "dim_mult": [1, 1, 1],
    "num_res_blocks": 1,
    "temperal_downsample": [True, True],
    "is_residual": True,
    "patch_size": 2,
    "in_channels": 12,
    "out_channels": 12,
}
FIT_FILE = "vae_fit.json"
STATS_CLIPS = 64  # training clips whose latents give latents_mean / latents_std
ENCODE_BATCH = 4


def load_videos(metadata: str | os.PathLike, limit: int | None = None) -> np.ndarray:
    """The videos of a metadata file's usable rows (all of one size and length, as in a SynthX split) as uint8
    (N, F, H, W, 3); the first `limit` rows only when given."""
    records = load_metadata(metadata)[:limit]
    videos = [read_video(record.video)[0] for record in records]
    if len({video.shape for video in videos}) != 1:
        raise ValueError(f"the videos of {metadata} differ in size or length: fit_vae takes clips of one shape")
    return np.stack(videos)


def _as_videos(source: str | os.PathLike | np.ndarray, name: str) -> np.ndarray:
    videos = source if isinstance(source, np.ndarray) else load_videos(source)
    if videos.dtype != np.uint8 or videos.ndim != 5 or videos.shape[-1] != 3:
        raise ValueError(f"{name} must be uint8 videos (N, F, H, W, 3) or a metadata file, got {videos.shape}")
    return videos


def _to_model(videos: np.ndarray) -> torch.Tensor:
    """uint8 (N, F, H, W, 3) -> float (N, 3, F, H, W) in [-1, 1], the VAE's input."""
    return to_signed(torch.from_numpy(videos).permute(0, 4, 1, 2, 3))


def _to_uint8(video: torch.Tensor) -> np.ndarray:
    """float (3, F, H, W) in [-1, 1] -> uint8 (F, H, W, 3), as the pipeline's output is scored."""
    return signed_to_uint8(video.permute(1, 2, 3, 0)).numpy()


@torch.no_grad()
def _latent_statistics(vae: AutoencoderKLWan, videos: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of the latents (the posterior's mode, as the pipeline encodes) over `videos`."""
    latents = torch.cat([vae.encode(_to_model(videos[i : i + ENCODE_BATCH])).latent_dist.mode()
                         for i in range(0, len(videos), ENCODE_BATCH)])  # fmt: skip
    channels = latents.transpose(0, 1).reshape(latents.shape[1], -1)  # (N, C, F, h, w) -> (C, N*F*h*w)
    return channels.mean(dim=1).tolist(), channels.std(dim=1).clamp_min(1e-4).tolist()


@torch.no_grad()
@torch.no_grad()
def reconstruct(vae: AutoencoderKLWan, videos: np.ndarray) -> np.ndarray:
    """uint8 (N, F, H, W, 3) clips through the codec as the pipeline runs it: encode, the posterior's mode, decode."""
    decoded = []
    for i in range(0, len(videos), ENCODE_BATCH):
        batch = vae.decode(vae.encode(_to_model(videos[i : i + ENCODE_BATCH])).latent_dist.mode()).sample
        decoded += [_to_uint8(output) for output in batch]
    return np.stack(decoded)


def _reconstruction_psnr(vae: AutoencoderKLWan, videos: np.ndarray) -> float:
    """The mean over clips of `animatex_pp.eval.metrics.psnr` between each clip and its reconstruction."""
    decoded = reconstruct(vae, videos)
    return float(np.mean([psnr(output, target) for output, target in zip(decoded, videos, strict=True)]))


def reversal_gap(vae: AutoencoderKLWan, videos: np.ndarray) -> dict[str, float]:
    """How much motion the codec erases: PSNR between each clip and its time reversal, in pixels and between the
    two reconstructions (means over clips, dB). A codec that keeps motion keeps them as far apart as the pixels
    are; one that averages motion away makes the reconstructions nearly alike, and the gap grows."""
    reversed_videos = videos[:, ::-1].copy()
    pixels = [psnr(clip, backwards) for clip, backwards in zip(videos, reversed_videos, strict=True)]
    forward, backward = reconstruct(vae, videos), reconstruct(vae, reversed_videos)
    coded = [psnr(clip, backwards) for clip, backwards in zip(forward, backward, strict=True)]
    return {"reversal_psnr_pixels": float(np.mean(pixels)), "reversal_psnr_codec": float(np.mean(coded)),
            "reversal_gap_db": float(np.mean(coded) - np.mean(pixels))}  # fmt: skip


def fit_vae(
    videos: str | os.PathLike | np.ndarray,
    out_dir: str | os.PathLike,
    steps: int = 400,
    *,
    clip_steps: int = 150,
    held_out: str | os.PathLike | np.ndarray | None = None,
    batch_size: int = 4,
    clip_batch_size: int = 2,
    crop_frames: int = 5,
    lr: float = 2e-3,
    kl_weight: float = 1e-6,
    config: dict[str, Any] | None = None,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Fit an `AutoencoderKLWan` on `videos` and save it to `out_dir/vae` (with its latent statistics in its
    config); write and return `out_dir/vae_fit.json`'s content: `psnr` (held-out reconstruction, dB), the first and
    final losses, steps and time.

    Args:
        videos: training clips, a metadata file (e.g. SynthX's train.jsonl) or uint8 (N, F, H, W, 3).
        out_dir: the folder to write `vae/` and `vae_fit.json` into (created).
        steps: first phase, optimizer steps of `batch_size` random crops of `crop_frames` (4k+1) frames.
        clip_steps: second phase, optimizer steps of `clip_batch_size` whole clips (0: none).
        held_out: clips to measure the PSNR on; default the last tenth of `videos` (then not trained on).
        kl_weight: the weight of the posterior's KL divergence (summed over a sample's latent) against the mean L1.
        config: `AutoencoderKLWan` arguments; default `VAE_CONFIG`.
    """
    if steps < 1 or clip_steps < 0 or batch_size < 1 or clip_batch_size < 1:
        raise ValueError(f"steps, batch_size and clip_batch_size must be positive and clip_steps at least 0, got "
                         f"{steps}, {batch_size}, {clip_batch_size} and {clip_steps}")  # fmt: skip
    train = _as_videos(videos, "videos")
    if held_out is None:
        if len(train) < 2:
            raise ValueError("give at least 2 clips (one is held out to measure the PSNR), or pass held_out")
        cut = len(train) - max(1, len(train) // 10)
        train, test = train[:cut], train[cut:]
    else:
        test = _as_videos(held_out, "held_out")
    num_frames = train.shape[1]
    if not VaeFactors.from_config(config).is_valid_frame_count(crop_frames) or crop_frames > num_frames:
        raise ValueError(f"crop_frames must be 4k+1 and at most the clips' {num_frames} frames, got {crop_frames}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config = dict(VAE_CONFIG if config is None else config)

    started = time.perf_counter()
    torch.manual_seed(seed)
    vae = AutoencoderKLWan(**config).train()
    optimizer = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    rng = np.random.default_rng(seed)
    # (clips per step, frames per clip) of every step: the crop phase, then the whole-clip phase
    schedule = [(batch_size, crop_frames)] * steps + [(clip_batch_size, num_frames)] * clip_steps
    losses = []
    bar = tqdm(schedule, desc="vae fit", unit="step", disable=not progress)
    for clips_per_step, frames in bar:
        clips = rng.integers(len(train), size=clips_per_step)
        start = int(rng.integers(num_frames - frames + 1))
        batch = _to_model(train[clips, start : start + frames])
        posterior = vae.encode(batch).latent_dist
        # A sample, not the mode: the decoder learns to take latents a little off the encoder's, as denoised ones are.
        reconstruction = vae.decode(posterior.sample()).sample
        l1 = (reconstruction - batch).abs().mean()
        loss = l1 + kl_weight * posterior.kl().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(l1.item())
        bar.set_postfix(l1=f"{l1.item():.4f}", frames=frames)
    bar.close()

    vae.eval()
    mean, std = _latent_statistics(vae, train[:STATS_CLIPS])
    vae.register_to_config(latents_mean=mean, latents_std=std)
    held_out_psnr = _reconstruction_psnr(vae, test)
    reversal = reversal_gap(vae, test)
    with atomic_directory(out_dir / "vae") as folder:
        vae.save_pretrained(folder)
    tail = max(1, len(schedule) // 10)
    result = {
        "psnr": held_out_psnr,
        **reversal,
        "held_out_clips": len(test),
        "train_clips": len(train),
        "steps": steps,
        "clip_steps": clip_steps,
        "first_l1": float(np.mean(losses[:tail])),
        "final_l1": float(np.mean(losses[-tail:])),
        "wall_time_s": time.perf_counter() - started,
        "config": config,
        "settings": {
            "batch_size": batch_size,
            "clip_batch_size": clip_batch_size,
            "crop_frames": crop_frames,
            "lr": lr,
            "kl_weight": kl_weight,
            "seed": seed,
        },
    }
    with atomic_output(out_dir / FIT_FILE) as temporary:
        temporary.write_text(json.dumps(result, indent=1))
    return result
