"""`fit_codec`: the demo's codec, a small `AutoencoderKLWan` fitted on SynthX clips (docs/results.md, "The codec").

No pretrained Wan VAE can be had offline, so the package ships one it fitted (`shipped_codec`, reproduced by
`animatex-pp demo --fit-codec OUT`), as the real system ships Wan's. Fitted from random weights, every such codec first
sits at the block-average solution (each latent the mean colour of its pixel block): the residual layout's
parameter-free shortcuts make it a basin, and the decoder cannot learn to use detail channels the encoder does not
yet send, nor the encoder to send what the decoder ignores. So the fit starts warm: the encoder alone is trained
for a few hundred cheap steps to output the PCA coefficients of each latent's pixel block (`BlockPCA`), then the
codec is fitted end to end. The loss is L1 weighted up on the character (its SynthX ground-truth mask, dilated as
`animatex_pp.eval.character` scores it: the character is what the demo measures and the hard part, edges against a
textured background) plus a small KL term; the decoder takes a posterior sample, not the mode, so it learns to take
latents a little off the encoder's, as denoised ones are. Steps repeat `crop_steps` steps of short crops (cheap, the
spatial code) and `clip_steps` steps of whole clips (the encoder and decoder run chunk by chunk with causal caches,
which only whole clips train), with AdamW and a cosine decay at the end.

Every step's clips, crop and posterior noise are drawn from `np.random.default_rng([seed, step])`, so a fit
stopped and resumed from its checkpoint (model, AdamW state, step) replays the batches of an uninterrupted one.
The pipeline normalises latents with the config's `latents_mean` / `latents_std`, so this codec's statistics over
training clips are written there. Held-out numbers are measured as `animatex_pp.eval` measures generated clips.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import AutoencoderKLWan
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from animatex_pp.data.metadata import load_metadata
from animatex_pp.eval.character import MASK_DILATION, character_psnr, dilate
from animatex_pp.eval.metrics import psnr
from animatex_pp.io.files import atomic_directory, atomic_output
from animatex_pp.io.frames import signed_to_uint8, to_signed
from animatex_pp.io.video import read_video
from animatex_pp.pipelines.geometry import VaeFactors
from animatex_pp.synthx.build import BuildConfig
from animatex_pp.synthx.truth import clip_truth

__all__ = ["FIT_FILE", "VAE_CONFIG", "BlockPCA", "Clips", "CodecFitConfig", "fit_codec", "load_videos", "step_shape"]

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
WEIGHTS_FILE = "diffusion_pytorch_model.safetensors"
# The codec the package ships: `animatex-pp demo --fit-codec OUT` with the defaults, OUT's vae/ and vae_fit.json.
SHIPPED_CODEC = Path(__file__).resolve().parent / "weights" / "codec"
# The research fit's SynthX build (docs/results.md, "The codec fit"), which the SynthX base trains on too: its
# held-out numbers are on test_x's clips.
CODEC_BUILD = BuildConfig(train=600, test=32, seed=0)
STATS_CLIPS = 64  # training clips whose latents give latents_mean / latents_std
CHECKPOINT = "checkpoint"  # model.safetensors, optimizer.pt, state.json
# The warm start's batches come from their own stream, so they never repeat the end-to-end fit's.
WARM_STREAM = 1
ENCODE_BATCH = 4


def load_videos(metadata: str | os.PathLike, limit: int | None = None) -> np.ndarray:
    """The videos of a metadata file's usable rows (all of one size and length, as in a SynthX split) as uint8
    (N, F, H, W, 3); the first `limit` rows only when given."""
    records = load_metadata(metadata)[:limit]
    videos = [read_video(record.video)[0] for record in records]
    if len({video.shape for video in videos}) != 1:
        raise ValueError(f"the videos of {metadata} differ in size or length: fit_codec takes clips of one shape")
    return np.stack(videos)


def _to_model(videos: np.ndarray) -> torch.Tensor:
    """uint8 (N, F, H, W, 3) -> float (N, 3, F, H, W) in [-1, 1], the VAE's input."""
    return to_signed(torch.from_numpy(np.ascontiguousarray(videos)).permute(0, 4, 1, 2, 3))


def _to_uint8(video: torch.Tensor) -> np.ndarray:
    """float (3, F, H, W) in [-1, 1] -> uint8 (F, H, W, 3), as the pipeline's output is scored."""
    return signed_to_uint8(video.permute(1, 2, 3, 0)).numpy()


@dataclasses.dataclass(frozen=True)
class Clips:
    """Clips of one shape with their characters' masks: `videos` uint8 (N, F, H, W, 3), `masks` bool (N, F, H, W)."""

    videos: np.ndarray
    masks: np.ndarray

    def __post_init__(self) -> None:
        if self.videos.dtype != np.uint8 or self.videos.ndim != 5 or self.videos.shape[-1] != 3:
            raise ValueError(f"videos must be uint8 (N, F, H, W, 3), got {self.videos.dtype} {self.videos.shape}")
        if self.masks.shape != self.videos.shape[:4]:
            raise ValueError(f"masks must be (N, F, H, W) = {self.videos.shape[:4]}, got {self.masks.shape}")

    @classmethod
    def load(cls, metadata: str | os.PathLike, limit: int | None = None) -> Clips:
        """A SynthX split's clips (the first `limit` rows when given), masks from each row's ground truth."""
        records = load_metadata(metadata)[:limit]
        masks = np.stack([clip_truth(metadata, record.extra).character_masks() for record in records])
        return cls(load_videos(metadata, limit), masks)

    def __len__(self) -> int:
        return len(self.videos)


@dataclasses.dataclass(frozen=True)
class CodecFitConfig:
    """How `fit_codec` fits; the defaults are the measured research fit (docs/results.md, "The codec fit").

    steps: end-to-end optimizer steps, cycling `crop_steps` steps of `batch_size` random `crop_frames`-frame crops
        (4k+1) then `clip_steps` steps of `clip_batch_size` whole clips.
    warm_steps: steps first training the encoder alone towards the block PCA's coefficients (0: none), on the same
        cycle, over `pca_clips` training clips' PCA.
    lr: AdamW's (both parts), cosine-decayed to `lr * final_lr_share` over the last `decay_share` of `steps`.
    character_weight: the L1 weight is 1 + this on the character's mask dilated by `mask_dilation` px.
    kl_weight: the posterior's KL divergence (summed over a sample's latent) against the weighted mean L1.
    checkpoint_every_s: seconds between checkpoints (one is also written when the fit stops or ends).
    """

    steps: int = 18000
    warm_steps: int = 600
    crop_steps: int = 4
    clip_steps: int = 1
    batch_size: int = 4
    clip_batch_size: int = 2
    crop_frames: int = 5
    lr: float = 2e-3
    decay_share: float = 0.4
    final_lr_share: float = 0.1
    character_weight: float = 4.0
    mask_dilation: int = MASK_DILATION
    kl_weight: float = 1e-6
    pca_clips: int = 64
    checkpoint_every_s: float = 300.0
    seed: int = 0

    def check(self, num_frames: int | None = None, vae_config: dict[str, Any] | None = None) -> None:
        """Raise a ValueError that says what to change; `num_frames` (the clips' length) checks `crop_frames`."""
        counts = {
            "steps": self.steps,
            "batch_size": self.batch_size,
            "clip_batch_size": self.clip_batch_size,
            "crop_steps + clip_steps": self.crop_steps + self.clip_steps,
            "pca_clips": self.pca_clips,
        }
        for name, value in counts.items():
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        for name in ("warm_steps", "crop_steps", "clip_steps", "mask_dilation"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be at least 0, got {getattr(self, name)}")
        if not (self.lr > 0 and self.checkpoint_every_s > 0 and self.character_weight >= 0 and self.kl_weight >= 0):
            raise ValueError("lr and checkpoint_every_s must be positive, character_weight and kl_weight >= 0")
        if not (0 <= self.decay_share <= 1 and 0 < self.final_lr_share <= 1):
            raise ValueError(f"decay_share must be in [0, 1] and final_lr_share in (0, 1], got {self.decay_share} "
                             f"and {self.final_lr_share}")  # fmt: skip
        if not VaeFactors.from_config(vae_config).is_valid_frame_count(self.crop_frames):
            raise ValueError(f"crop_frames must be 4k+1, got {self.crop_frames}")
        if num_frames is not None and self.crop_frames > num_frames:
            raise ValueError(f"crop_frames must be at most the clips' {num_frames} frames, got {self.crop_frames}")

    def learning_rate(self, step: int) -> float:
        """Constant, then a cosine from `lr` to `lr * final_lr_share` over the last `decay_share` of the steps."""
        start = self.steps * (1 - self.decay_share)
        if step < start:
            return self.lr
        progress = (step - start) / max(1.0, self.steps - start)
        return self.lr * (self.final_lr_share + (1 - self.final_lr_share) * 0.5 * (1 + math.cos(math.pi * progress)))


def step_shape(config: CodecFitConfig, step: int, num_frames: int) -> tuple[int, int]:
    """(clips, frames) of a step: `crop_steps` crop steps, then `clip_steps` whole-clip steps, over and over."""
    if step % (config.crop_steps + config.clip_steps) < config.crop_steps:
        return config.batch_size, config.crop_frames
    return config.clip_batch_size, num_frames


def _draw(rng: np.random.Generator, clips: Clips, count: int, frames: int) -> tuple[np.ndarray, np.ndarray]:
    """`count` random clips' frames [start, start + frames) (one random start): videos and their masks."""
    chosen = rng.integers(len(clips), size=count)
    start = int(rng.integers(clips.videos.shape[1] - frames + 1))
    return clips.videos[chosen, start : start + frames], clips.masks[chosen, start : start + frames]


class BlockPCA:
    """The linear codec the warm start teaches the encoder: each latent's pixel block (frame 0's `spatial` x
    `spatial` x 3 blocks, each later `temporal` x `spatial` x `spatial` x 3 block) -> its first `channels` PCA
    coefficients, scaled to unit variance (the KL term wants latents near a unit normal)."""

    def __init__(self, videos: np.ndarray, channels: int = 16, spatial: int = 8, temporal: int = 4) -> None:
        self.channels, self.spatial, self.temporal = channels, spatial, temporal
        signed = to_signed(torch.from_numpy(videos).double())  # uint8 (N, F, H, W, 3) -> [-1, 1]
        self.first = self._fit(self._blocks(signed[:, :1], 1))
        self.rest = self._fit(self._blocks(signed[:, 1:], temporal))

    def _blocks(self, x: torch.Tensor, t: int) -> torch.Tensor:
        n, f, h, w, c = x.shape
        s = self.spatial
        # (N, F, H, W, 3) -> (N, F/t, t, H/s, s, W/s, s, 3) -> (N, F/t, H/s, W/s, t, s, s, 3)
        blocks = x.reshape(n, f // t, t, h // s, s, w // s, s, c).permute(0, 1, 3, 5, 2, 4, 6, 7)
        return blocks.reshape(n, f // t, h // s, w // s, t * s * s * c)  # one row of t*s*s*3 values per latent

    def _fit(self, blocks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rows = blocks.reshape(-1, blocks.shape[-1])  # (N, T, h, w, D) -> (N*T*h*w, D)
        mean = rows.mean(dim=0)
        values, vectors = torch.linalg.eigh((rows - mean).T @ (rows - mean) / len(rows))  # ascending
        values, vectors = values.flip(0)[: self.channels], vectors.flip(1)[:, : self.channels]  # (k,), (D, k)
        return mean.float(), (vectors / values.clamp_min(1e-8).sqrt()).float()

    def encode(self, batch: torch.Tensor) -> torch.Tensor:
        """The VAE's input (B, 3, F, H, W) in [-1, 1] -> target latents (B, k, 1 + (F-1)/t, H/s, W/s)."""
        x = batch.permute(0, 2, 3, 4, 1)  # (B, 3, F, H, W) -> (B, F, H, W, 3)
        parts = [(self._blocks(x[:, :1], 1) - self.first[0]) @ self.first[1]]  # (B, 1, h, w, k)
        if x.shape[1] > 1:
            parts.append((self._blocks(x[:, 1:], self.temporal) - self.rest[0]) @ self.rest[1])  # (B, T, h, w, k)
        return torch.cat(parts, dim=1).permute(0, 4, 1, 2, 3)  # (B, 1+T, h, w, k) -> (B, k, 1+T, h, w)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """`encode`'s inverse on its subspace: latents (B, k, 1+T, h, w) -> (B, 3, 1 + T*t, h*s, w*s)."""
        z = latents.permute(0, 2, 3, 4, 1)  # (B, k, 1+T, h, w) -> (B, 1+T, h, w, k)
        b, _, h, w, _ = z.shape
        s, c = self.spatial, 3
        frames = []
        for part, t, (mean, projection) in ((z[:, :1], 1, self.first), (z[:, 1:], self.temporal, self.rest)):
            if not part.shape[1]:
                continue
            # unscale and project back: (B, T, h, w, k) -> (B, T, h, w, t*s*s*3)
            rows = part @ (projection / projection.pow(2).sum(dim=0)).T + mean
            # (B, T, h, w, t, s, s, 3) -> (B, T, t, h, s, w, s, 3) -> (B, T*t, H, W, 3)
            pixels = rows.reshape(b, -1, h, w, t, s, s, c).permute(0, 1, 4, 2, 5, 3, 6, 7)
            frames.append(pixels.reshape(b, -1, h * s, w * s, c))
        return torch.cat(frames, dim=1).permute(0, 4, 1, 2, 3)  # (B, F, H, W, 3) -> (B, 3, F, H, W)


@torch.no_grad()
def _latent_statistics(vae: AutoencoderKLWan, videos: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of the latents (the posterior's mode, as the pipeline encodes) over `videos`."""
    latents = torch.cat([vae.encode(_to_model(videos[i : i + ENCODE_BATCH])).latent_dist.mode()
                         for i in range(0, len(videos), ENCODE_BATCH)])  # fmt: skip
    channels = latents.transpose(0, 1).reshape(latents.shape[1], -1)  # (N, C, F, h, w) -> (C, N*F*h*w)
    return channels.mean(dim=1).tolist(), channels.std(dim=1).clamp_min(1e-4).tolist()


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


def _weights(masks: np.ndarray, config: CodecFitConfig) -> torch.Tensor:
    """bool (B, F, H, W) character masks -> the L1's per-pixel weights (B, 1, F, H, W), mean 1 per batch."""
    grown = np.stack([dilate(clip, config.mask_dilation) for clip in masks])
    weights = 1 + config.character_weight * torch.from_numpy(grown).float()[:, None]
    return weights / weights.mean()


def _warm_start(vae: AutoencoderKLWan, train: Clips, config: CodecFitConfig, progress: bool) -> None:
    """Train the encoder alone to output `BlockPCA`'s coefficients as its posterior mean, its log-variance pushed
    to -6 (near the mode: the decoder first learns from clean codes), so the end-to-end fit starts off the
    block-average basin."""
    pca = BlockPCA(train.videos[: config.pca_clips], channels=vae.config.z_dim)
    parameters = [p for name, p in vae.named_parameters() if name.startswith(("encoder.", "quant_conv."))]
    optimizer = torch.optim.AdamW(parameters, lr=config.lr, weight_decay=0.0)
    num_frames = train.videos.shape[1]
    for step in tqdm(range(config.warm_steps), desc="codec warm start", unit="step", disable=not progress):
        rng = np.random.default_rng([config.seed, WARM_STREAM, step])
        videos, _ = _draw(rng, train, *step_shape(config, step, num_frames))
        batch = _to_model(videos)
        posterior = vae.encode(batch).latent_dist
        loss = (posterior.mean - pca.encode(batch)).pow(2).mean() + 0.01 * (posterior.logvar + 6.0).pow(2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def _masked_psnr(prediction: np.ndarray, target: np.ndarray, region: np.ndarray) -> float:
    """Mean over frames with some pixel in `region` (F, H, W) of the PSNR (dB, peak 1) over those pixels."""
    scores = []
    for output, truth, inside in zip(prediction, target, region, strict=True):
        if inside.any():
            error = np.mean((output[inside].astype(np.float64) - truth[inside]) ** 2) / 255.0**2
            scores.append(10.0 * np.log10(1.0 / max(error, 1e-10)))
    return float(np.mean(scores)) if scores else float("nan")


def shipped_codec() -> Path:
    """The folder of the codec the package ships (`vae/` and its `vae_fit.json`), checked to be whole."""
    for name in (f"vae/{WEIGHTS_FILE}", "vae/config.json", FIT_FILE):
        if not (SHIPPED_CODEC / name).is_file():
            raise FileNotFoundError(
                f"the package's codec is incomplete ({SHIPPED_CODEC / name} is missing): reinstall animatex_pp, or "
                "fit one with `animatex-pp demo --fit-codec OUT` and give it as --codec OUT"
            )
    return SHIPPED_CODEC


def held_out_numbers(vae: AutoencoderKLWan, test: Clips, dilation: int = MASK_DILATION) -> dict[str, float]:
    """Frame PSNR, character PSNR (dilated mask), background PSNR (its complement), means over clips, and
    `reversal_gap`."""
    decoded = reconstruct(vae, test.videos)
    pairs = list(zip(decoded, test.videos, test.masks, strict=True))
    return {
        "psnr": float(np.mean([psnr(output, target) for output, target, _ in pairs])),
        "character_psnr": float(
            np.nanmean([character_psnr(out, target, mask, dilation) for out, target, mask in pairs])
        ),
        "background_psnr": float(
            np.nanmean([_masked_psnr(out, target, ~dilate(mask, dilation)) for out, target, mask in pairs])
        ),  # fmt: skip
        **reversal_gap(vae, test.videos),
    }


def _save_checkpoint(folder: Path, vae: AutoencoderKLWan, optimizer: torch.optim.Optimizer, state: dict) -> None:
    # Filled beside it, then renamed over it: a kill leaves the previous checkpoint whole.
    with atomic_directory(folder) as temporary:
        save_file({name: value.contiguous() for name, value in vae.state_dict().items()},
                  temporary / "model.safetensors")  # fmt: skip
        torch.save(optimizer.state_dict(), temporary / "optimizer.pt")
        (temporary / "state.json").write_text(json.dumps(state))


def _as_clips(source: Clips | str | os.PathLike, name: str) -> Clips:
    if isinstance(source, Clips):
        return source
    if not Path(source).is_file():
        raise FileNotFoundError(f"{name}: no metadata file {source}; give a SynthX split's .jsonl or Clips")
    return Clips.load(source)


def fit_codec(
    train: Clips | str | os.PathLike,
    held_out: Clips | str | os.PathLike,
    out_dir: str | os.PathLike,
    config: CodecFitConfig = CodecFitConfig(),
    *,
    vae_config: dict[str, Any] | None = None,
    resume: bool = False,
    stop: Callable[[int], bool] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Fit an `AutoencoderKLWan` on `train` and save it to `out_dir/vae` (with its latent statistics in its
    config); write and return `out_dir/vae_fit.json`'s content: held-out `psnr`, `character_psnr`,
    `background_psnr`, `reversal_gap`'s numbers, first and final losses, steps, fit time and settings.

    Args:
        train, held_out: SynthX clips with their characters' masks, a split's metadata file or `Clips`.
        out_dir: the folder to write `vae/`, `vae_fit.json` and `checkpoint/` into (created).
        vae_config: `AutoencoderKLWan` arguments; default `VAE_CONFIG`.
        resume: continue from `out_dir/checkpoint` when there is one (it must come from the same settings).
        stop: called with the number of steps done after each end-to-end step; when it returns True the fit
            writes its checkpoint and returns {"done": False, "step": ...} (resume later with `resume=True`).
    """
    vae_config = dict(VAE_CONFIG if vae_config is None else vae_config)
    config.check(vae_config=vae_config)  # before the clips load; their length is checked once they have
    train, test = _as_clips(train, "train"), _as_clips(held_out, "held_out")
    num_frames = train.videos.shape[1]
    config.check(num_frames, vae_config)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = out_dir / CHECKPOINT
    settings = {"fit": dataclasses.asdict(config), "vae_config": vae_config}

    torch.manual_seed(config.seed)
    vae = AutoencoderKLWan(**vae_config).train()
    optimizer = torch.optim.AdamW(vae.parameters(), lr=config.lr, weight_decay=0.0)
    state: dict[str, Any] = {"step": 0, "fit_time_s": 0.0, "losses": [], "settings": settings}
    if resume and (checkpoint / "state.json").is_file():
        state = json.loads((checkpoint / "state.json").read_text())
        if state["settings"] != settings:
            raise ValueError(
                f"{checkpoint} comes from other settings: rerun with those in its state.json, or delete it to "
                "start afresh"
            )
        vae.load_state_dict(load_file(checkpoint / "model.safetensors"))
        optimizer.load_state_dict(torch.load(checkpoint / "optimizer.pt", weights_only=True))
    else:
        started = time.perf_counter()
        _warm_start(vae, train, config, progress)
        state["fit_time_s"] = time.perf_counter() - started
        _save_checkpoint(checkpoint, vae, optimizer, state)

    started, saved = time.perf_counter() - state["fit_time_s"], time.perf_counter()
    bar = tqdm(total=config.steps, initial=state["step"], desc="codec fit", unit="step", disable=not progress)
    while state["step"] < config.steps:
        step = state["step"]
        rng = np.random.default_rng([config.seed, step])
        videos, masks = _draw(rng, train, *step_shape(config, step, num_frames))
        batch, weights = _to_model(videos), _weights(masks, config)
        noise = torch.Generator().manual_seed(int(rng.integers(2**62)))
        for group in optimizer.param_groups:
            group["lr"] = config.learning_rate(step)
        posterior = vae.encode(batch).latent_dist
        sample = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=noise)
        reconstruction = vae.decode(sample).sample
        l1 = ((reconstruction - batch).abs() * weights).mean()
        loss = l1 + config.kl_weight * posterior.kl().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        state["step"] += 1
        state["losses"].append(l1.item())
        state["fit_time_s"] = time.perf_counter() - started
        bar.update()
        bar.set_postfix(l1=f"{l1.item():.4f}", frames=batch.shape[2])
        stopping = stop is not None and stop(state["step"])
        if stopping or time.perf_counter() - saved > config.checkpoint_every_s or state["step"] == config.steps:
            _save_checkpoint(checkpoint, vae, optimizer, state)
            saved = time.perf_counter()
        if stopping and state["step"] < config.steps:
            bar.close()
            return {"done": False, "step": state["step"]}
    bar.close()

    vae.eval()
    mean, std = _latent_statistics(vae, train.videos[:STATS_CLIPS])
    vae.register_to_config(latents_mean=mean, latents_std=std)
    numbers = held_out_numbers(vae, test, config.mask_dilation)
    with atomic_directory(out_dir / "vae") as folder:
        vae.save_pretrained(folder)
    losses, tail = state["losses"], max(1, config.steps // 10)
    result = {
        "done": True,
        **numbers,
        "held_out_clips": len(test),
        "train_clips": len(train),
        "steps": config.steps,
        "first_l1": float(np.mean(losses[:tail])),
        "final_l1": float(np.mean(losses[-tail:])),
        "fit_time_s": state["fit_time_s"],
        **settings,
    }
    with atomic_output(out_dir / FIT_FILE) as temporary:
        temporary.write_text(json.dumps(result, indent=1))
    return result
