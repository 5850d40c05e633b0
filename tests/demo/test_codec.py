"""fit_vae on a few small clips: the loss falls, the saved VAE loads with its latent statistics, bad input refused."""

import json

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKLWan

from animatex_pp.demo.codec import FIT_FILE, fit_vae


@pytest.fixture(autouse=True)
def one_thread():
    """Small convolutions run many times faster on one thread than on two contended ones (shared CI machines)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def smooth_clips(count: int, frames: int = 5, size: int = 32) -> np.ndarray:
    """uint8 (count, frames, size, size, 3): coloured gradients drifting a pixel per frame (learnable in seconds)."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:size, 0:size] / size
    clips = []
    for _ in range(count):
        colour = rng.uniform(0.2, 0.8, size=3)
        clip = [np.clip(colour * (0.5 + 0.5 * np.roll(x, t, axis=1)[..., None]) + 0.2 * y[..., None], 0, 1)
                for t in range(frames)]  # fmt: skip
        clips.append(np.stack(clip))
    return (np.stack(clips) * 255).round().astype(np.uint8)


def test_fit_vae_learns_and_saves_a_loadable_vae_with_its_statistics(tmp_path):
    result = fit_vae(smooth_clips(4), tmp_path, steps=30, clip_steps=5, held_out=smooth_clips(1), batch_size=2,
                     progress=False)  # fmt: skip
    assert result["final_l1"] < result["first_l1"]
    assert np.isfinite(result["psnr"]) and result["psnr"] > 5
    assert json.loads((tmp_path / FIT_FILE).read_text())["psnr"] == result["psnr"]

    vae = AutoencoderKLWan.from_pretrained(tmp_path, subfolder="vae")
    mean, std = vae.config.latents_mean, vae.config.latents_std
    assert len(mean) == len(std) == vae.config.z_dim == 16
    # Wan's own statistics (the default) were replaced by this VAE's
    assert mean != AutoencoderKLWan().config.latents_mean and min(std) > 0
    with torch.no_grad():
        video = torch.from_numpy(smooth_clips(1)).permute(0, 4, 1, 2, 3).float() / 127.5 - 1
        latents = vae.encode(video).latent_dist.mode()
    assert latents.shape == (1, 16, 2, 4, 4)  # 4x temporal (after the first frame), 8x spatial


def test_fit_vae_trains_on_crops_then_on_whole_clips(tmp_path, monkeypatch):
    """The two phases: `steps` batches of `crop_frames`-frame crops, then `clip_steps` batches of whole clips (the
    later chunks' causal caches are only trained by the second)."""
    encoded = []
    encode = AutoencoderKLWan.encode

    def recording_encode(vae, video, *args, **kwargs):
        if vae.training:
            encoded.append(tuple(video.shape[:3]))  # (clips, channels, frames)
        return encode(vae, video, *args, **kwargs)

    monkeypatch.setattr(AutoencoderKLWan, "encode", recording_encode)
    result = fit_vae(smooth_clips(4, frames=9), tmp_path, steps=3, clip_steps=2, held_out=smooth_clips(1, frames=9),
                     batch_size=3, clip_batch_size=2, crop_frames=5, progress=False)  # fmt: skip
    assert encoded == [(3, 3, 5)] * 3 + [(2, 3, 9)] * 2
    assert (result["steps"], result["clip_steps"]) == (3, 2)


def test_fit_vae_holds_out_a_tenth_when_no_held_out_clips_are_given(tmp_path):
    result = fit_vae(smooth_clips(10), tmp_path, steps=1, clip_steps=1, progress=False)
    assert (result["train_clips"], result["held_out_clips"]) == (9, 1)


@pytest.mark.parametrize(
    ("videos", "options", "message"),
    [
        (smooth_clips(1), {}, "at least 2 clips"),
        (smooth_clips(2), {"crop_frames": 4}, "crop_frames must be 4k\\+1"),
        (smooth_clips(2), {"crop_frames": 9}, "at most the clips' 5 frames"),
        (smooth_clips(2).astype(np.float32), {}, "uint8 videos"),
        (smooth_clips(2), {"steps": 0}, "must be positive"),
        (smooth_clips(2), {"clip_steps": -1}, "clip_steps at least 0"),
        (smooth_clips(2), {"clip_batch_size": 0}, "must be positive"),
    ],
)
def test_fit_vae_refuses_bad_input_before_training(tmp_path, videos, options, message):
    with pytest.raises(ValueError, match=message):
        fit_vae(videos, tmp_path, **{"steps": 1, **options}, progress=False)
    assert not (tmp_path / "vae").exists()
