"""Random inputs for one forward of the tiny-preset transformer, and a no-grad forward."""

import torch

from animatex_pp.models.presets import PRESETS

BATCH, LATENT_FRAMES, LATENT_SIZE = 2, 3, 4
PIXEL_FRAMES, PIXEL_SIZE = 4 * (LATENT_FRAMES - 1) + 1, 8 * LATENT_SIZE


def make_inputs(seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    config = PRESETS["tiny"]

    def randn(*shape):
        return torch.randn(*shape, generator=generator)

    keypoints = torch.rand(BATCH, PIXEL_FRAMES, 18, 2, generator=generator)
    keypoints[:, :, 14:] = -1.0  # missing points, as the detector reports them
    return {
        "hidden_states": randn(BATCH, 36, LATENT_FRAMES, LATENT_SIZE, LATENT_SIZE),
        "timestep": torch.tensor([999, 250]),
        "encoder_hidden_states": randn(BATCH, 7, config["text_dim"]),
        "encoder_hidden_states_image": randn(BATCH, 5, config["image_dim"]),
        "pose_video": torch.rand(BATCH, 3, PIXEL_FRAMES, PIXEL_SIZE, PIXEL_SIZE, generator=generator),
        "reference_pose": torch.rand(BATCH, 3, PIXEL_SIZE, PIXEL_SIZE, generator=generator),
        "pose_keypoints": keypoints,
        "driving_image_embeds": randn(BATCH, PIXEL_FRAMES, config["ipi_clip_dim"]),
    }


BASE_INPUTS = ("hidden_states", "timestep", "encoder_hidden_states", "encoder_hidden_states_image")


def run(model, inputs, **overrides):
    with torch.no_grad():
        return model(**{**inputs, **overrides}).sample
