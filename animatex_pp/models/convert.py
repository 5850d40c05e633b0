"""Import the released Animate-X++ checkpoints into `AnimateXTransformer3DModel`.

A release (`animate-x++.ckpt`, `animate-x++_simple.ckpt`) is a flat dict of tensors:

* LoRA on the DiT in peft form, DiffSynth names, prefixed `pipe.dit.`
  (`pipe.dit.blocks.3.self_attn.q.lora_A.default.weight`), trained with lora_alpha = rank (scale 1);
* the new modules, whole: `dwpose_embedding.*` (pose video), `randomref_embedding_pose.*` (reference pose),
  `pose_embedding_before.*` (keypoint encoder) and `pose_embedding_after.*` (resampler). The `_simple` release has
  no IPI (`pose_embedding_*`).

Module keys are matched by their stem wherever it appears in a key, as the official loader does. Every key must be
understood: anything unknown, missing or mis-shaped is an error that lists it, never silently dropped.

Stream sizes come from the checkpoint's tensor shapes (`infer_stream_config`); only what shapes cannot tell (head
counts, strides, dropout) comes from the caller, and the IPI's block range defaults to the official rule for the
base model's depth (`official_ipi_blocks`).

Typical use (see docs/models.md):

    wan = WanTransformer3DModel.from_pretrained("Wan2.1-I2V-14B-720P-Diffusers", subfolder="transformer")
    model = animatex_from_wan(wan, "animate-x++.ckpt")          # LoRA merged into the Wan weights
"""

from __future__ import annotations

import inspect
import os
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from diffusers import WanTransformer3DModel
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from animatex_pp.io.files import atomic_output
from animatex_pp.models.pose_streams import sinusoidal_position_table
from animatex_pp.models.transformer import AnimateXTransformer3DModel
from animatex_pp.models.weight_files import REDOWNLOAD, check_safetensors

LORA_PREFIX = "pipe.dit."

# DiffSynth's Wan module names -> diffusers' (inside `blocks.N.`).
DIFFSYNTH_TO_DIFFUSERS = {
    "self_attn.q": "attn1.to_q",
    "self_attn.k": "attn1.to_k",
    "self_attn.v": "attn1.to_v",
    "self_attn.o": "attn1.to_out.0",
    "cross_attn.q": "attn2.to_q",
    "cross_attn.k": "attn2.to_k",
    "cross_attn.v": "attn2.to_v",
    "cross_attn.o": "attn2.to_out.0",
    "cross_attn.k_img": "attn2.add_k_proj",
    "cross_attn.v_img": "attn2.add_v_proj",
    "ffn.0": "ffn.net.0.proj",
    "ffn.2": "ffn.net.2",
}
_LORA_KEY = re.compile(r"blocks\.(\d+)\.(.+)\.lora_([AB])(?:\.default)?\.weight$")

# Official module stems -> our stream modules. Inside each, the rename rules below apply in order.
MODULE_STEMS = {
    "dwpose_embedding.": "pose_video_encoder.layers.",
    "randomref_embedding_pose.": "reference_pose_encoder.layers.",
    "pose_embedding_before.": "implicit_pose_indicator.keypoint_encoder.",
    "pose_embedding_after.": "implicit_pose_indicator.",
}
_IPI_RENAMES = [
    (re.compile(r"^keypoint_encoder\.increase_embed_dim\."), "keypoint_encoder.input_proj."),
    (re.compile(r"^keypoint_encoder\.pre_image_condition_p\."), "keypoint_encoder.output_mlp."),
    (re.compile(r"^latents$"), "query"),
    (re.compile(r"^layers\.(\d+)\.0\.norm1\."), r"layers.\1.attn.norm_context."),
    (re.compile(r"^layers\.(\d+)\.0\.norm2\."), r"layers.\1.attn.norm_query."),
    (re.compile(r"^layers\.(\d+)\.0\."), r"layers.\1.attn."),
    (re.compile(r"^layers\.(\d+)\.1\."), r"layers.\1.ff."),
    (re.compile(r"^proj_conv\."), "temporal_proj."),
    (re.compile(r"^proj_out2\."), "out_proj."),
]
# A buffer the official encoder saves but we compute; it is checked, not loaded.
POSITION_TABLE_KEY = "implicit_pose_indicator.keypoint_encoder.pos_embed.pos_table"


@dataclass
class AnimateXCheckpoint:
    """A release, in our names: LoRA pairs per diffusers module, and stream weights per model key."""

    lora: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)  # target -> (A (r, in), B)
    streams: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def has_ipi(self) -> bool:
        return any(key.startswith("implicit_pose_indicator.") for key in self.streams)

    def lora_state_dict(self) -> dict[str, torch.Tensor]:
        """The LoRA in diffusers/peft key form (`blocks.0.attn1.to_q.lora_A.weight`), for `load_lora_adapter`."""
        state = {}
        for target, (down, up) in self.lora.items():
            state[f"{target}.lora_A.weight"] = down
            state[f"{target}.lora_B.weight"] = up
        return state


def load_animatex_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a release as a flat dict of tensors: safetensors, or a torch pickle read with `weights_only=True`.

    A Lightning-style wrapper (`{"state_dict": {...}}`) is unwrapped. Nothing is ever fully unpickled.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Animate-X++ checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        check_safetensors(path)
        try:
            return load_file(path)
        except SafetensorError as error:
            raise ValueError(f"{path} could not be read as safetensors ({error}): {REDOWNLOAD}") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise ValueError(
            f"{path} could not be read as a tensors-only torch checkpoint ({str(error).splitlines()[0]}). Only "
            "plain tensor dicts are accepted; a checkpoint that needs arbitrary unpickling is refused for safety."
        ) from None
    except (RuntimeError, EOFError, OSError) as error:
        # torch's zip reader ("failed finding central directory") and the legacy pickle reader on a cut-off file.
        raise ValueError(f"{path} is truncated or corrupt ({str(error).splitlines()[0]}): {REDOWNLOAD}") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise ValueError(f"{path} is not a flat dict of tensors, so it is not an Animate-X++ release.")
    return state


def _rename_module_key(stem_target: str, suffix: str) -> str:
    if not stem_target.startswith("implicit_pose_indicator."):
        return stem_target + suffix
    # Apply the IPI renames to the path below `implicit_pose_indicator.`.
    local = stem_target.removeprefix("implicit_pose_indicator.") + suffix
    for pattern, replacement in _IPI_RENAMES:
        local = pattern.sub(replacement, local)
    return "implicit_pose_indicator." + local


def convert_animatex_state_dict(state_dict: dict[str, torch.Tensor]) -> AnimateXCheckpoint:
    """Sort a release's keys into LoRA pairs (diffusers names) and stream weights (our names).

    Raises a ValueError listing every key that is neither, and every LoRA half without its partner.
    """
    checkpoint = AnimateXCheckpoint()
    halves: dict[str, dict[str, torch.Tensor]] = {}
    unknown = []
    for key, tensor in state_dict.items():
        if "lora_" in key:
            match = _LORA_KEY.search(key.split(LORA_PREFIX, 1)[-1])
            module = DIFFSYNTH_TO_DIFFUSERS.get(match.group(2)) if match else None
            if module is None:
                unknown.append(key)
                continue
            halves.setdefault(f"blocks.{match.group(1)}.{module}", {})[match.group(3)] = tensor
            continue
        stem = next((stem for stem in MODULE_STEMS if stem in key), None)
        if stem is None:
            unknown.append(key)
            continue
        new_key = _rename_module_key(MODULE_STEMS[stem], key.split(stem, 1)[1])
        checkpoint.streams[new_key] = tensor
    incomplete = sorted(target for target, pair in halves.items() if set(pair) != {"A", "B"})
    if unknown or incomplete:
        raise ValueError(
            "Not an Animate-X++ release this converter understands. "
            + (f"Unknown keys ({len(unknown)}): {sorted(unknown)[:20]}. " if unknown else "")
            + (f"LoRA targets missing lora_A or lora_B: {incomplete[:20]}." if incomplete else "")
        )
    checkpoint.lora = {target: (pair["A"], pair["B"]) for target, pair in sorted(halves.items())}
    return checkpoint


def merge_lora(transformer: torch.nn.Module, lora: dict[str, tuple[torch.Tensor, torch.Tensor]], alpha: float = 1.0):
    """W += alpha * B @ A for every target, as DiffSynth merges a LoRA (in fp32, cast back to W's dtype)."""
    modules = dict(transformer.named_modules())
    missing = sorted(target for target in lora if target not in modules)
    if missing:
        raise ValueError(f"LoRA targets not found in the transformer ({len(missing)}): {missing[:20]}")
    for target, (down, up) in lora.items():
        weight = modules[target].weight
        if (up.shape[0], down.shape[1]) != tuple(weight.shape) or up.shape[1] != down.shape[0]:
            raise ValueError(
                f"LoRA for {target}: B {tuple(up.shape)} @ A {tuple(down.shape)} does not fit weight "
                f"{tuple(weight.shape)}: the checkpoint belongs to another model size."
            )
        with torch.no_grad():
            delta = alpha * (up.to(weight.device, torch.float32) @ down.to(weight.device, torch.float32))
            weight.copy_((weight.float() + delta).to(weight.dtype))


def load_stream_weights(model: AnimateXTransformer3DModel, streams: dict[str, torch.Tensor]) -> None:
    """Load converted stream weights; every stream parameter of the model must be covered, with its shape."""
    streams = dict(streams)
    position_table = streams.pop(POSITION_TABLE_KEY, None)
    if position_table is not None and model.implicit_pose_indicator is not None:
        ours = sinusoidal_position_table(*position_table.shape[-2:])
        if not torch.allclose(position_table.reshape(ours.shape).float(), ours, atol=1e-5):
            raise ValueError(f"{POSITION_TABLE_KEY} differs from the sinusoid table this model computes.")
    expected = {
        key: value
        for key, value in model.state_dict().items()
        if key.startswith(AnimateXTransformer3DModel.stream_names)
    }
    missing = sorted(set(expected) - set(streams))
    unexpected = sorted(set(streams) - set(expected))
    mismatched = [
        f"{key}: checkpoint {tuple(streams[key].shape)} vs model {tuple(expected[key].shape)}"
        for key in sorted(set(expected) & set(streams))
        if streams[key].shape != expected[key].shape
    ]
    if missing or unexpected or mismatched:
        raise ValueError(
            "Stream weights do not match the model's streams. "
            + (f"Missing ({len(missing)}): {missing[:20]}. " if missing else "")
            + (f"Unexpected ({len(unexpected)}): {unexpected[:20]}. " if unexpected else "")
            + (f"Shape mismatch: {mismatched[:20]}. " if mismatched else "")
            + "Build the model with the stream sizes the checkpoint was trained with."
        )
    model.load_state_dict(streams, strict=False)


def official_ipi_blocks(num_layers: int) -> dict[str, int]:
    """The official IPI block range for a DiT of `num_layers` blocks: blocks 2 .. L/2 (2..20 of Wan's 40).

    For very shallow models (tests) the range is clamped to at least one block.
    """
    start = min(2, num_layers - 1)
    return {"ipi_block_start": start, "ipi_block_end": max(num_layers // 2 + 1, start + 1)}


def _count_indices(streams: dict[str, torch.Tensor], prefix: str) -> int:
    """How many numbered submodules `prefix.N.` the keys hold."""
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    return len({match.group(1) for key in streams if (match := pattern.match(key))})


def infer_stream_config(streams: dict[str, torch.Tensor]) -> dict[str, int]:
    """The stream sizes that converted stream weights' shapes determine (our key names, `convert_animatex_state_dict`).

    Head counts, strides and dropout cannot be read from shapes and are not returned.
    """
    config: dict[str, int] = {}

    def shape(key: str) -> torch.Size | None:
        return streams[key].shape if key in streams else None

    # Conv weights are (out, in, *kernel): the first conv's out channels are the stack's width.
    if (first := shape("pose_video_encoder.layers.0.weight")) is not None:
        config["pose_video_hidden_channels"] = first[0]
    if (first := shape("reference_pose_encoder.layers.0.weight")) is not None:
        config["reference_pose_hidden_channels"] = first[0]
    ipi = "implicit_pose_indicator."
    keypoints = ipi + "keypoint_encoder."
    if (lift := shape(keypoints + "input_proj.0.weight")) is not None:
        # Linear weights are (out, in); the input is x and y of every keypoint.
        config["ipi_num_keypoints"] = lift[1] // 2
    if (lift := shape(keypoints + "input_proj.1.weight")) is not None:
        config["ipi_encoder_dim"] = lift[0]
    if layers := _count_indices(streams, keypoints + "encoder.layers."):
        config["ipi_encoder_layers"] = layers
    if (ffn := shape(keypoints + "encoder.layers.0.linear1.weight")) is not None:
        config["ipi_encoder_ffn_dim"] = ffn[0]
    if (table := shape(POSITION_TABLE_KEY)) is not None:
        config["ipi_encoder_max_frames"] = table[-2]  # (1, frames, dim)
    if (proj_in := shape(ipi + "proj_in.weight")) is not None:
        config["ipi_resampler_dim"], config["ipi_clip_dim"] = proj_in[0], proj_in[1]
    if depth := _count_indices(streams, ipi + "layers."):
        config["ipi_resampler_depth"] = depth
    if (ff := shape(ipi + "layers.0.ff.1.weight")) is not None and "ipi_resampler_dim" in config:
        config["ipi_resampler_ff_mult"] = ff[0] // config["ipi_resampler_dim"]
    if (proj_out := shape(ipi + "proj_out.weight")) is not None:
        config["ipi_resampler_output_dim"] = proj_out[0]
    if (temporal := shape(ipi + "temporal_proj.weight")) is not None:
        # Conv1d over frames as channels: (latent frames, frames, kernel).
        config["ipi_num_latent_frames"], config["ipi_num_frames"], config["ipi_temporal_kernel_size"] = temporal
    return {key: int(value) for key, value in config.items()}


def _resolve_stream_config(
    converted: AnimateXCheckpoint, num_layers: int, stream_config: dict[str, object]
) -> dict[str, object]:
    """The caller's stream arguments completed by the checkpoint's shapes; a disagreement names the argument."""
    inferred = infer_stream_config(converted.streams)
    mismatched = [
        f"{key}={stream_config[key]} but the checkpoint's weights have {value}"
        for key, value in inferred.items()
        if key in stream_config and stream_config[key] != value
    ]
    if mismatched:
        raise ValueError(
            "The stream sizes given do not match the checkpoint: "
            + "; ".join(mismatched)
            + ". Leave these arguments unset: they are read from the checkpoint."
        )
    resolved = {**official_ipi_blocks(num_layers), **stream_config, **inferred, "use_ipi": converted.has_ipi}
    if converted.has_ipi:
        # The query projection is (heads * head_dim, dim): only the product is in the shapes.
        query_width = converted.streams["implicit_pose_indicator.layers.0.attn.to_q.weight"].shape[0]
        heads = resolved.get("ipi_resampler_heads", _default("ipi_resampler_heads"))
        if query_width % heads:
            raise ValueError(
                f"ipi_resampler_heads={heads} does not divide the checkpoint's resampler attention width "
                f"{query_width}: give the head count the checkpoint was trained with."
            )
        head_dim = query_width // heads
        if resolved.get("ipi_resampler_head_dim", head_dim) != head_dim:
            raise ValueError(
                f"ipi_resampler_head_dim={resolved['ipi_resampler_head_dim']} but the checkpoint's resampler "
                f"attention width {query_width} over ipi_resampler_heads={heads} gives {head_dim}: leave it unset."
            )
        resolved["ipi_resampler_head_dim"] = head_dim
    return resolved


def _default(argument: str):
    return inspect.signature(AnimateXTransformer3DModel.__init__).parameters[argument].default


def animatex_from_wan(
    wan_transformer: WanTransformer3DModel,
    checkpoint: str | os.PathLike | dict[str, torch.Tensor],
    lora: Literal["merge", "adapter"] = "merge",
    lora_alpha: float = 1.0,
    adapter_name: str = "animatex",
    **stream_config,
) -> AnimateXTransformer3DModel:
    """Build an `AnimateXTransformer3DModel` around a Wan2.1 I2V transformer and apply a release.

    Args:
        wan_transformer: the base (its weights are shared, and with `lora="merge"` modified in place).
        checkpoint: path to `animate-x++.ckpt` / `_simple.ckpt` / a safetensors export, or its state dict.
        lora: "merge" folds W += alpha * B @ A into the weights (as DiffSynth does); "adapter" loads it as a peft
            adapter named `adapter_name` (switchable and removable with diffusers' adapter API).
        lora_alpha: the merge scale (official: 1.0).
        stream_config: stream arguments that the checkpoint's shapes cannot tell: head counts
            (`ipi_encoder_heads`, `ipi_resampler_heads`), strides, dropout, the IPI block range (default: blocks
            2 .. L/2 of the base's L blocks, the official rule). Sizes the shapes do tell (widths, depths, frame
            counts) are read from the checkpoint; giving one that disagrees is an error naming it. `use_ipi`
            follows the checkpoint.
    """
    if lora not in ("merge", "adapter"):
        raise ValueError(f"lora must be 'merge' or 'adapter', got {lora!r}.")
    state_dict = checkpoint if isinstance(checkpoint, dict) else load_animatex_checkpoint(checkpoint)
    converted = convert_animatex_state_dict(state_dict)
    if stream_config.get("use_ipi", converted.has_ipi) != converted.has_ipi:
        raise ValueError(
            f"use_ipi={stream_config['use_ipi']} but the checkpoint {'has' if converted.has_ipi else 'has no'} "
            "implicit pose indicator weights; leave use_ipi unset to follow the checkpoint."
        )
    stream_config = _resolve_stream_config(converted, wan_transformer.config.num_layers, stream_config)
    model = AnimateXTransformer3DModel.from_wan(wan_transformer, **stream_config)
    load_stream_weights(model, converted.streams)
    if converted.lora:
        if lora == "merge":
            merge_lora(model, converted.lora, lora_alpha)
        else:
            model.load_lora_adapter(converted.lora_state_dict(), prefix=None, adapter_name=adapter_name)
    return model


def save_safetensors(state_dict: dict[str, torch.Tensor], path: str | os.PathLike) -> None:
    """Write tensors to `path` as safetensors, atomically (a temporary file renamed into place)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as temporary:
        save_file({key: value.contiguous() for key, value in state_dict.items()}, temporary)
