"""Frame geometry: the one home of the 4k+1 frame rule and of the VAE's temporal and spatial factors.

Wan's VAE packs the first frame alone and every later `temporal` frames (4) into one latent frame, so a clip of F
frames has (F - 1) / 4 + 1 latent frames and F must be 4k+1; it compresses each side `spatial` times (8), and the
transformer's patch embedding takes `patch` x `patch` latent pixels (2), so a side must be a multiple of 16. The
pipeline, the CLI, the evaluation, the datasets, the trainer and its plan all ask this module, with the factors of
the VAE they use (`VaeFactors.of(vae)`, or `VaeFactors.from_config(dict)` for a folder that is not loaded), so a
codec with other factors is followed everywhere.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

# AutoencoderKLWan's defaults (Wan2.1 and Wan2.2's A14B models).
WAN_TEMPORAL_COMPRESSION = 4
WAN_SPATIAL_COMPRESSION = 8


@dataclasses.dataclass(frozen=True)
class VaeFactors:
    """How a VAE compresses time and space: `temporal` frames per latent frame after the first, `spatial` pixels
    per latent pixel along a side."""

    temporal: int = WAN_TEMPORAL_COMPRESSION
    spatial: int = WAN_SPATIAL_COMPRESSION

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None) -> VaeFactors:
        """From an `AutoencoderKLWan` config (a loaded model's `.config` or a folder's `config.json` as a dict)."""
        config = config or {}
        return cls(
            temporal=int(config.get("scale_factor_temporal", WAN_TEMPORAL_COMPRESSION)),
            spatial=int(config.get("scale_factor_spatial", WAN_SPATIAL_COMPRESSION)),
        )

    @classmethod
    def of(cls, vae) -> VaeFactors:
        """From a loaded VAE, or Wan's defaults for a pipeline without one."""
        return cls.from_config(getattr(vae, "config", None))

    def is_valid_frame_count(self, num_frames: int) -> bool:
        """True for the counts the VAE packs whole: 1, 5, 9, ... (4k+1)."""
        return isinstance(num_frames, int) and num_frames >= 1 and num_frames % self.temporal == 1 % self.temporal

    def check_frame_count(self, num_frames: int, what: str) -> None:
        """A ValueError naming `what` unless `num_frames` is a valid (4k+1) count."""
        if not self.is_valid_frame_count(num_frames):
            examples = ", ".join(str(self.temporal * k + 1) for k in (4, 20))
            raise ValueError(f"{what} must be {self.temporal}k+1 (e.g. {examples}), got {num_frames!r}")

    def round_down(self, num_frames: int) -> int:
        """The largest valid count not above `num_frames` (>= 1)."""
        return (num_frames - 1) // self.temporal * self.temporal + 1

    def round_up(self, num_frames: int) -> int:
        """The smallest valid count not below `num_frames`."""
        return math.ceil((num_frames - 1) / self.temporal) * self.temporal + 1

    def latent_frames(self, num_frames: int) -> int:
        """Latent frames of a clip of `num_frames` (4k+1) frames."""
        return (num_frames - 1) // self.temporal + 1

    def pixel_frames(self, latent_frames: int) -> int:
        """Frames of the clip whose latent has `latent_frames` frames."""
        return (latent_frames - 1) * self.temporal + 1

    def latent_size(self, height: int, width: int) -> tuple[int, int]:
        """(latent height, latent width) of frames of `height` x `width` pixels."""
        return height // self.spatial, width // self.spatial

    def pixel_size(self, latent_height: int, latent_width: int) -> tuple[int, int]:
        """(height, width) in pixels of a latent of `latent_height` x `latent_width`."""
        return latent_height * self.spatial, latent_width * self.spatial

    def size_multiple(self, patch_size: int) -> int:
        """What height and width must be multiples of for a transformer with this spatial patch size."""
        return self.spatial * patch_size


@dataclasses.dataclass(frozen=True)
class PipelineGeometry:
    """What a pipeline's configs fix about the videos it makes: the VAE's factors, the transformer's spatial patch,
    and the window length the implicit pose indicator (IPI) ties generation to (None when the IPI cannot run: the
    transformer has none, or the pipeline has no motion encoder to feed it)."""

    factors: VaeFactors
    patch_size: int
    ipi_frames: int | None

    @classmethod
    def from_configs(
        cls, vae_config: Mapping[str, Any], transformer_config: Mapping[str, Any], has_motion_encoder: bool
    ) -> PipelineGeometry:
        """From the VAE's and the transformer's configs (loaded models' `.config`, or a folder's `config.json`)."""
        # AnimateXTransformer3DModel's defaults for configs that predate these keys.
        has_ipi = transformer_config.get("use_ipi", True) and has_motion_encoder
        return cls(
            factors=VaeFactors.from_config(vae_config),
            patch_size=int(transformer_config["patch_size"][1]),
            ipi_frames=int(transformer_config.get("ipi_num_frames", 81)) if has_ipi else None,
        )

    @property
    def size_multiple(self) -> int:
        """What height and width must be multiples of."""
        return self.factors.size_multiple(self.patch_size)
