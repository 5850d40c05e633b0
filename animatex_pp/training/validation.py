"""Validation media during training: held-out clips through `AnimateXPipeline` every `validation.every` optimizer
steps.

Rank 0 takes `validation.num_samples` clips of `validation.metadata` (animation clips first, then ti2v), each cut
at one fixed window (the dataset's own draw for key (0, 0, index) under `validation.seed`), and generates them with
the weights being trained, at the clip's bucket size and frame count, from noise of the same seed: every validation
of a run shows the same clips from the same noise, so the media differ only by what training changed. The driving
pose is the window's own, without EPI augmentation, and the window's frames feed the IPI as they do in training.

Each validation writes `RUN_DIR/validation/step-NNNNNNNN/` atomically (the folder appears whole or not at all):
one MP4 per clip, `NN-<video>.mp4`, with reference | pose | output | ground truth side by side (reference | output
| ground truth for ti2v), and `contact_sheet.png`: per clip a title strip and a grid over evenly spaced frames with
rows pose, output and ground truth, the reference (and its pose) in the first column. The sheet also goes to
TensorBoard (`validation/contact_sheet`).

Under ZeRO-3 the transformer's parameters are partitioned: every rank takes part in gathering them, the one
collective here, and rank 0 generates with a whole copy. Under stages 0-2 every rank holds the whole model, so rank
0 generates with it directly and the other ranks return at once; they wait for rank 0 at the training step's next
collective.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import torch

from animatex_pp.data.clips import ClipDataset, SampleKey
from animatex_pp.data.metadata import load_metadata
from animatex_pp.io.files import atomic_directory
from animatex_pp.io.preview import SheetRow, as_uint8_video, clip_sheet, preview_frames, stack_sheets
from animatex_pp.io.video import write_video
from animatex_pp.pipelines.conditioning import prepare_pose
from animatex_pp.training.checkpoint import tag_for
from animatex_pp.training.export import cast_parameters_like, gathered_state, materialize
from animatex_pp.training.schema import TrainConfig, ValidationConfig

logger = logging.getLogger("animatex_pp.training")

VALIDATION_FOLDER = "validation"
SHEET_FILE = "contact_sheet.png"


def write_validation(pipeline, model: torch.nn.Module, config: TrainConfig, step: int, is_main: bool,
                     writer=None) -> list[Path]:  # fmt: skip
    """Generate the validation clips with `model`'s current weights and write their media (called on every rank);
    `step` counts optimizer steps, `writer` is TensorBoard's (or None).

    Returns the files written: the MP4s and the contact sheet on rank 0, [] on the other ranks.
    """
    validation = config.validation
    started = time.perf_counter()
    if any(hasattr(parameter, "ds_id") for parameter in model.parameters()):
        state = gathered_state(model, trainable_only=False, is_main=is_main)
        if not is_main:
            return []
        transformer = cast_parameters_like(materialize(model, state), model)
    elif not is_main:
        return []
    else:
        transformer = model
    pipe = type(pipeline)(**dict(pipeline.components, transformer=transformer))
    pipe.set_progress_bar_config(disable=True)
    dataset = _dataset(config)
    indices = [index for task in ("animation", "ti2v") for index, name in enumerate(dataset.tasks) if name == task]
    with _evaluating(transformer), _on_device(pipe, _device()):
        clips = [_generate(pipe, dataset, index, position, validation) for position, index in
                 enumerate(indices[: validation.num_samples])]  # fmt: skip

    folder = Path(config.run_dir) / VALIDATION_FOLDER / tag_for(step)
    folder.parent.mkdir(parents=True, exist_ok=True)
    sheet = validation_sheet(clips)
    with atomic_directory(folder) as temporary:
        for clip in clips:
            write_video(temporary / f"{clip['name']}.mp4", clip["preview"], clip["fps"])
        sheet.save(temporary / SHEET_FILE, format="PNG")
    if writer is not None:
        writer.add_image("validation/contact_sheet", np.asarray(sheet), step, dataformats="HWC")
        writer.flush()
    logger.info("validation at step %d: %d clips in %.1f s, in %s", step, len(clips), time.perf_counter() - started,
                folder)  # fmt: skip
    return [folder / f"{clip['name']}.mp4" for clip in clips] + [folder / SHEET_FILE]


def _dataset(config: TrainConfig) -> ClipDataset:
    """The validation clips, cut as training cuts them (`data.clips`), their windows drawn from `validation.seed`."""
    validation = config.validation
    return ClipDataset(load_metadata(validation.metadata), config.data.clips.clip_config(validation.seed))


def _device() -> torch.device:
    """The device training runs on (the distributed world sets the current CUDA device per rank)."""
    return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")


@contextlib.contextmanager
def _evaluating(model: torch.nn.Module) -> Iterator[None]:
    """Eval mode (no LoRA dropout) for the call, and training mode back after it."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


@contextlib.contextmanager
def _on_device(pipe, device: torch.device) -> Iterator[None]:
    """Every component on `device` for the call, and back where it was after it: training from a precompute cache
    keeps the frozen encoders off the GPU, and the pipeline runs them all on the device of its first one."""
    modules = {name: module for name, module in pipe.components.items() if isinstance(module, torch.nn.Module)}
    placed = {name: next(module.parameters()).device for name, module in modules.items()}
    for module in modules.values():
        module.to(device)
    try:
        yield
    finally:
        for name, original in placed.items():
            modules[name].to(original)


def _generate(pipe, dataset: ClipDataset, index: int, position: int, validation: ValidationConfig) -> dict[str, Any]:
    """One clip through the pipeline: its uint8 frames and what its sheet block and MP4 show."""
    record = dataset.records[index]
    height, width = dataset.buckets[index]
    window = dataset.window(SampleKey(0, 0, index))
    raw = dataset.read(index, window)
    num_frames = len(raw.frames)
    animation = record.task == "animation"
    output = pipe(
        image=raw.reference,
        pose=raw.pose if animation else None,
        reference_pose=raw.reference_pose if animation else None,
        driving_video=raw.frames if animation else None,
        prompt=record.caption,
        mode=record.task,
        height=height,
        width=width,
        num_frames=num_frames,
        num_inference_steps=validation.num_inference_steps,
        guidance_scale=validation.guidance_scale,
        generator=torch.Generator().manual_seed(validation.seed),
        output_type="np",
    ).frames[0]
    output = as_uint8_video(output)
    pose = reference_pose = None
    if animation:
        # The skeleton as the pose stream sees it: the pipeline's own rendering at the generation size.
        prepared = prepare_pose(raw.pose, raw.reference_pose, num_frames, height, width, use_ipi=False)
        pose, reference_pose = prepared.pose_frames, prepared.reference_pose
    # (F, H, n W, 3) ++ (F, H, W, 3) -> (F, H, (n + 1) W, 3)
    preview = np.concatenate([preview_frames(raw.reference, pose, output), raw.frames], axis=2)
    return {
        "name": f"{position:02d}-{record.video.stem}",
        "title": f"{record.task}: {record.video.name} (line {record.line}) - {record.caption}",
        "reference": raw.reference,
        "reference_pose": reference_pose,
        "pose": pose,
        "output": output,
        "ground_truth": raw.frames,
        "preview": preview,
        # the window takes every `stride`-th frame of the clip's timeline
        "fps": (record.fps or record.info.fps) / window.stride,
    }


def clip_block(clip: dict[str, Any]) -> PIL.Image.Image:
    """One clip's part of the contact sheet (`animatex_pp.io.preview.clip_sheet`): its title, then rows pose
    (animation only), output and ground truth over evenly spaced frames, the reference (and its pose) in the first
    column."""
    rows = [] if clip["pose"] is None else [SheetRow("pose", clip["pose"], clip["reference_pose"])]
    rows += [SheetRow("output", clip["output"], clip["reference"]),
             SheetRow("ground truth", clip["ground_truth"], clip["reference"])]  # fmt: skip
    return clip_sheet(rows, title=clip["title"], label_rows=True)


def validation_sheet(clips: list[dict[str, Any]]) -> PIL.Image.Image:
    """The clips' blocks stacked top to bottom."""
    return stack_sheets([clip_block(clip) for clip in clips])
