"""One micro-step's loss: condition dropout, the pose streams (or their zero stand-in), the flow objective.

Every random draw (σ, noise, dropout) comes from `animatex_pp.data.randomness` keyed by `(seed, micro-step, rank)`,
so a resumed run repeats the interrupted one exactly.

A ti2v step has no pose, yet every trainable pose-stream parameter must still get a gradient: ZeRO-2/3 reduce
gradients in buckets and wait for every parameter's, so a parameter left out of the graph stalls or breaks the
step. The streams therefore run on zero inputs and their outputs are multiplied by 0: the model sees no pose and
the streams' gradients are exactly zero. Pose dropout uses the same multiplication per sample.

The rendered skeletons (`pose_video`, `reference_pose`) arrive as uint8, as the data loader sends them (a quarter of
fp32's bytes through its workers' shared memory and the copy to the device), and become the streams' [0, 1] floats
here, on the device: the same values as a conversion on the host.
"""

from __future__ import annotations

import dataclasses

import torch

from animatex_pp.data.randomness import torch_generator
from animatex_pp.io.frames import to_unit
from animatex_pp.models.transformer import AnimateXTransformer3DModel, PoseConditions
from animatex_pp.pipelines.geometry import VaeFactors
from animatex_pp.training.objective import FlowObjective

NUM_KEYPOINTS = 18
# The I2V condition is 4 mask channels then the reference's latent; image dropout zeroes the latent, keeps the mask.
CONDITION_MASK_CHANNELS = 4
# Wan's VAE (4 frames and 8 x 8 pixels per latent pixel): the factors of a pipeline that does not say otherwise.
WAN_FACTORS = VaeFactors()


@dataclasses.dataclass
class ConditionDropout:
    """Per-sample chances of training without a condition (`trainer.dropout`; UniAnimate-DiT: pose 5%, image 10%;
    text dropout trains the unconditional branch for classifier-free guidance)."""

    pose: float = 0.05
    image: float = 0.1
    text: float = 0.1

    def __post_init__(self) -> None:
        for name in ("pose", "image", "text"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"trainer.dropout.{name} must be in [0, 1], got {getattr(self, name)}")


def _scaled(conditions: PoseConditions, scale: torch.Tensor) -> PoseConditions:
    """Each stream output times a per-sample scale (B,), broadcast over its other dimensions."""
    fields = {}
    for field in dataclasses.fields(conditions):
        value = getattr(conditions, field.name)
        # (B,) -> (B, 1, ...) to match the field's rank
        fields[field.name] = None if value is None else value * scale.view(-1, *[1] * (value.ndim - 1)).to(value)
    return PoseConditions(**fields)


def unit_pose(inputs: dict[str, torch.Tensor], name: str) -> torch.Tensor:
    """A rendered skeleton of the inputs, uint8 in [0, 255], as float32 in [0, 1] on its device."""
    value = inputs[name]
    if value.dtype != torch.uint8:
        raise ValueError(
            f"inputs[{name!r}] is {value.dtype}: the pose streams' images come uint8 in [0, 255], as "
            "animatex_pp.data.clips.pose_inputs gives them (convert [0, 1] floats with io.frames.unit_to_uint8)"
        )
    return to_unit(value)


def pose_conditions(
    model: AnimateXTransformer3DModel,
    inputs: dict[str, torch.Tensor],
    keep: torch.Tensor,
    factors: VaeFactors = WAN_FACTORS,
) -> PoseConditions:
    """The streams' outputs for a batch, times `keep` (B,); zero inputs (and keep = 0) for a batch without pose,
    sized from the latent by the factors of the VAE that made it."""
    latents = inputs["latents"]
    batch_size, _, latent_frames, latent_height, latent_width = latents.shape
    streams = model.streams()
    if "pose_video" in inputs:
        given = {"pose_video": unit_pose(inputs, "pose_video"), "reference_pose": unit_pose(inputs, "reference_pose")}
        if "implicit_pose_indicator" in streams:
            given["pose_keypoints"] = inputs["pose_keypoints"]
            given["driving_image_embeds"] = inputs["driving_embeds"]
    else:
        keep = torch.zeros_like(keep)
        frames = factors.pixel_frames(latent_frames)
        height, width = factors.pixel_size(latent_height, latent_width)
        given = {
            "pose_video": latents.new_zeros(batch_size, 3, frames, height, width),
            "reference_pose": latents.new_zeros(batch_size, 3, height, width),
            # -1 marks a keypoint as undetected, as the IPI's input does
            "pose_keypoints": latents.new_full((batch_size, frames, NUM_KEYPOINTS, 2), -1.0),
            "driving_image_embeds": latents.new_zeros(batch_size, frames, model.config.ipi_clip_dim),
        }
    wanted = {
        "pose_video_encoder": ("pose_video",),
        "reference_pose_encoder": ("reference_pose",),
        "implicit_pose_indicator": ("pose_keypoints", "driving_image_embeds"),
    }
    arguments = {name: given[name] for stream in streams for name in wanted[stream] if name in given}
    dtype = next(model.parameters()).dtype
    arguments = {name: value.to(dtype) for name, value in arguments.items()}
    return _scaled(model.encode_pose_conditions(**arguments, batch_size=batch_size), keep)


@dataclasses.dataclass(frozen=True)
class TrainingLoss:
    """The loss of one micro-batch of model inputs (`animatex_pp.data.encode`), its draws keyed by the run's seed,
    the micro-step and the rank."""

    objective: FlowObjective
    dropout: ConditionDropout
    seed: int
    factors: VaeFactors = WAN_FACTORS

    def __call__(
        self, engine, model: AnimateXTransformer3DModel, inputs: dict[str, torch.Tensor], micro_step: int, rank: int
    ) -> torch.Tensor:
        """`engine` runs the forward (the DeepSpeed engine, or the model itself); `model` is the module it wraps,
        whose stream encoders run first."""
        objective, dropout = self.objective, self.dropout
        latents = inputs["latents"]
        batch_size = latents.shape[0]
        dtype = next(model.parameters()).dtype
        key = (micro_step, rank)
        sigmas = objective.sample_sigmas(batch_size, torch_generator(self.seed, "sigma", *key)).to(latents.device)
        noise = torch.randn(latents.shape, generator=torch_generator(self.seed, "noise", *key)).to(latents)
        draws = torch.rand(3, batch_size, generator=torch_generator(self.seed, "dropout", *key)).to(latents.device)
        keep_pose = (draws[0] >= dropout.pose).float()
        keep_image = (draws[1] >= dropout.image).float()
        keep_text = (draws[2] >= dropout.text).float()

        condition = inputs["condition"].clone()
        # (B,) -> (B, 1, 1, 1, 1)
        condition[:, CONDITION_MASK_CHANNELS:] *= keep_image.view(-1, 1, 1, 1, 1)
        # (B, 16, F, h, w) ++ (B, 20, F, h, w) -> (B, 36, F, h, w), as Wan I2V feeds its DiT
        hidden_states = torch.cat([objective.noisy(latents, noise, sigmas), condition], dim=1).to(dtype)
        image_embeds = inputs.get("image_embeds")
        if image_embeds is not None:
            image_embeds = (image_embeds * keep_image.view(-1, 1, 1)).to(dtype)
        prediction = engine(
            hidden_states=hidden_states,
            timestep=objective.timesteps(sigmas),
            encoder_hidden_states=(inputs["prompt_embeds"] * keep_text.view(-1, 1, 1)).to(dtype),
            encoder_hidden_states_image=image_embeds,
            pose_conditions=pose_conditions(model, inputs, keep_pose, self.factors),
            return_dict=False,
        )[0]
        return objective.loss(prediction, latents, noise, sigmas).mean()
