"""Wan's rectified-flow objective: x_t = (1 - σ) x_0 + σ ε, the model predicts ε - x_0 at timestep 1000 σ.

σ is drawn from diffusers' `training_utils` density (logit-normal, mode or uniform) and then shifted as Wan's
sampler shifts its schedule (σ' = s σ / (1 + (s - 1) σ), shift 5 for Wan2.1 I2V), so training spends its steps
where inference does. The loss is a mean squared error over latent pixels, weighted per sample by diffusers'
`compute_loss_weighting_for_sd3` and per latent frame: the first latent frame is given by the I2V condition, and
`first_frame_weight` says how much its reconstruction counts (1: as every other frame, as DiffSynth-Studio and
UniAnimate-DiT train; 0: left out).
"""

from __future__ import annotations

import dataclasses

import torch
from diffusers.training_utils import compute_density_for_timestep_sampling, compute_loss_weighting_for_sd3

NUM_TRAIN_TIMESTEPS = 1000
WEIGHTING_SCHEMES = ("logit_normal", "mode", "uniform", "sigma_sqrt", "cosmap")


@dataclasses.dataclass
class FlowObjective:
    """The objective's settings (`trainer.objective`, a config node of the training schema) and its maths."""

    # the σ density (logit_normal | mode | uniform), or a loss weighting over uniform σ (sigma_sqrt | cosmap)
    weighting_scheme: str = "logit_normal"
    logit_mean: float = 0.0
    logit_std: float = 1.0
    mode_scale: float = 1.29
    # Wan's sampler shift (5 for Wan2.1 I2V)
    shift: float = 5.0
    # the first latent frame is given by the I2V condition: its loss weight (0 leaves it out)
    first_frame_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.weighting_scheme not in WEIGHTING_SCHEMES:
            raise ValueError(
                f"trainer.objective.weighting_scheme must be one of {', '.join(WEIGHTING_SCHEMES)}, "
                f"got {self.weighting_scheme!r}"
            )
        if not self.shift > 0:
            raise ValueError(f"trainer.objective.shift must be positive, got {self.shift}")
        if self.first_frame_weight < 0:
            raise ValueError(f"trainer.objective.first_frame_weight must be >= 0, got {self.first_frame_weight}")

    def sample_sigmas(self, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        """(B,) noise levels in (0, 1), shifted."""
        density = "uniform" if self.weighting_scheme in ("sigma_sqrt", "cosmap") else self.weighting_scheme
        u = compute_density_for_timestep_sampling(
            density, batch_size, self.logit_mean, self.logit_std, self.mode_scale, generator=generator
        )
        return self.shift * u / (1 + (self.shift - 1) * u)

    def noisy(self, latents: torch.Tensor, noise: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
        # (B,) -> (B, 1, 1, 1, 1)
        sigma = sigmas.view(-1, 1, 1, 1, 1).to(latents.dtype)
        return (1 - sigma) * latents + sigma * noise

    def loss(
        self, prediction: torch.Tensor, latents: torch.Tensor, noise: torch.Tensor, sigmas: torch.Tensor
    ) -> torch.Tensor:
        """Per-sample loss (B,) of a prediction (B, C, F_lat, h, w) against the flow target ε - x_0."""
        target = noise - latents
        # (B, C, F_lat, h, w) -> (B, F_lat): the mean over channels and pixels of each latent frame
        per_frame = ((prediction.float() - target.float()) ** 2).mean(dim=(1, 3, 4))
        frame_weights = torch.ones(per_frame.shape[1], device=per_frame.device)
        frame_weights[0] = self.first_frame_weight
        per_sample = (per_frame * frame_weights).sum(dim=1) / frame_weights.sum().clamp_min(1e-8)
        return per_sample * compute_loss_weighting_for_sd3(self.weighting_scheme, sigmas.to(per_sample.device))

    @staticmethod
    def timesteps(sigmas: torch.Tensor) -> torch.Tensor:
        return sigmas * NUM_TRAIN_TIMESTEPS
