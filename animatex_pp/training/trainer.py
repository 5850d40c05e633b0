"""`train(cfg) -> metrics`: a training run from a composed Hydra config (`conf/train.yaml`), and the `Trainer`, one
rank's part of it.

`train` types and checks the config (`schema.TrainConfig`) and what the machine gives, then prints the plan
(`mode=plan`), starts `trainer.num_processes` local workers, or runs this process's rank. A `Trainer` reads in the
order a run happens:
1. the checkpoint to resume from, chosen and checked against the config before anything loads;
2. build: the pipeline whose frozen encoders make the inputs, the data and the task-mixing sampler, the adapters
   and parameter groups, the DeepSpeed engine (optimizer and learning-rate schedule), the EMA;
3. resume: the chosen checkpoint's weights, optimizer and sampler state;
4. the loop over optimizer steps: `train_step` runs `gradient_accumulation_steps` micro-steps, each a batch of one
   task on every rank, then the engine's update; logging, checkpoints and validation media follow, all counted in
   optimizer steps (docs/training.md, "Optimizer steps");
5. the end: the export and `metrics.json`.

Every rank writes nothing but its checkpoint shards; rank 0 writes logs, TensorBoard events, media, metrics.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader

from animatex_pp.data.clips import collate
from animatex_pp.pipelines.geometry import VaeFactors
from animatex_pp.training.checkpoint import CheckpointManager
from animatex_pp.training.distributed import (
    World,
    available_processes,
    close_world,
    deepspeed_config,
    init_world,
    launch_local,
    launched_externally,
    register_zero3_external_parameters,
)
from animatex_pp.training.export import export
from animatex_pp.training.metrics import DeviceClock, MetricsLogger, StepRecord, write_metrics
from animatex_pp.training.model import (
    apply_adapters,
    build_optimizer,
    build_pipeline,
    cast_trainable_to_fp32,
    param_groups,
    trainable_table,
)
from animatex_pp.training.schema import Mode, NonFinitePolicy, TrainConfig, load_train_config
from animatex_pp.training.step import TrainingLoss

logger = logging.getLogger("animatex_pp.training")

# The pipeline's frozen encoders: on the training device when clips are encoded on the fly.
FROZEN_ENCODERS = ("vae", "text_encoder", "image_encoder", "motion_encoder")


def train(cfg: DictConfig | Mapping[str, Any] | TrainConfig) -> dict[str, Any]:
    """Run a training (or, with `mode=plan`, print the plan) and return rank 0's metrics."""
    config = load_train_config(cfg)
    Path(config.run_dir).mkdir(parents=True, exist_ok=True)
    if config.mode == Mode.plan:
        from animatex_pp.training.plan import plan

        return plan(config)
    check_machine(config)
    if config.trainer.num_processes > 1 and not launched_externally():
        return launch_local(run_worker, config, config.trainer.num_processes, config.run_dir)
    return run_worker(config)


def check_machine(config: TrainConfig) -> None:
    """Refuse, before any model loads, a run the files or the machine cannot give: its data, its checkpoint, its
    processes."""
    data = config.data
    if data.metadata and not Path(data.metadata).exists():
        raise FileNotFoundError(
            f"data.metadata: metadata file not found: {data.metadata} (a data step makes it: `animatex-pp train` runs "
            "data.prepare)"
        )
    if data.cache and not Path(data.cache).exists():
        raise FileNotFoundError(f"data.cache: cache not found: {data.cache}")
    if config.resume not in (None, "auto") and not Path(config.resume).is_dir():
        raise ValueError(f"resume={config.resume}: no checkpoint folder there; use resume=auto or a checkpoint path")
    processes = config.trainer.num_processes
    if not launched_externally() and processes > available_processes():
        raise ValueError(
            f"trainer.num_processes={processes} but this machine can start {available_processes()} local workers "
            "(one per GPU, or per CPU core without one): lower it, or launch with torchrun/deepspeed"
        )


def run_worker(config: TrainConfig) -> dict[str, Any]:
    """One rank's run (every rank runs this; the local launcher spawns it per process)."""
    world = init_world(config.trainer.collective_timeout_minutes)
    log_file = _log_to_run_folder(Path(config.run_dir)) if world.is_main else None
    trainer = None
    try:
        trainer = Trainer(config, world)
        return trainer.run()
    finally:
        close_world(trainer.engine if trainer is not None else None)
        if log_file is not None:
            logging.getLogger("animatex_pp").removeHandler(log_file)
            log_file.close()


def _log_to_run_folder(run_dir: Path) -> logging.Handler:
    handler = logging.FileHandler(run_dir / "train.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger("animatex_pp").addHandler(handler)
    logging.getLogger("animatex_pp").setLevel(logging.INFO)
    return handler


class Trainer:
    """One rank's training run; `run()` does it all, its parts in the order they happen."""

    def __init__(self, config: TrainConfig, world: World):
        self.config, self.world = config, world
        self.run_dir = Path(config.run_dir)
        self.accumulation = config.deepspeed.gradient_accumulation_steps
        self.checkpoints = CheckpointManager(self.run_dir / "checkpoints", config, world.is_main)
        # chosen and checked against the config now, before any model loads
        self.resume_from = self.checkpoints.resume_point(config.resume)
        self.engine = None
        self.ema = None
        self.next_micro_step = 0
        self.nonfinite_in_a_row = 0

    def run(self) -> dict[str, Any]:
        """Build, resume, train up to `trainer.max_steps` optimizer steps, export; rank 0's metrics."""
        self.build()
        metrics = self.fit(self.resume())
        if self.config.trainer.export.enabled:
            with self.ema_weights():
                exported = export(self.pipeline, self.engine.module, self.run_dir / "export",
                                  self.config.trainer.export.merge_lora, self.world.is_main)  # fmt: skip
            metrics["export"] = str(exported) if exported else None
        if self.world.is_main:
            write_metrics(self.run_dir, metrics)
        return metrics

    # -- build ---------------------------------------------------------------------------------------------------

    def build(self) -> None:
        """The pipeline, the data, the adapters, the engine, the EMA and the loss, in that order."""
        torch.manual_seed(self.config.seed)
        self.settings = deepspeed_config(self.config.deepspeed, self.config.data.batch_size, self.world.device)
        # under ZeRO-3 the transformer is built partitioned over the ranks
        self.pipeline = build_pipeline(self.config.model, self.settings)
        self.factors = VaeFactors.of(self.pipeline.vae)
        self.check_model_fits_data()
        self.dataset, self.encoder, self.sampler = self.build_data()
        self.groups = self.build_adapters()
        self.engine = self.build_engine()
        ema = self.config.trainer.ema
        if ema.enabled:
            from animatex_pp.training.ema import TrainableEMA

            self.ema = TrainableEMA(self.engine.module, ema.decay)
        trainer = self.config.trainer
        self.loss = TrainingLoss(trainer.objective, trainer.dropout, self.config.seed, self.factors)

    def check_model_fits_data(self) -> None:
        transformer = self.pipeline.transformer
        num_frames = self.config.data.clips.num_frames
        if transformer.implicit_pose_indicator is not None and transformer.config.ipi_num_frames != num_frames:
            raise ValueError(
                f"data.clips.num_frames={num_frames} but the model's IPI takes {transformer.config.ipi_num_frames}-"
                f"frame windows: set model.transformer.ipi_num_frames={num_frames} (and ipi_num_latent_frames="
                f"{self.factors.latent_frames(num_frames)}) for a tiny model, or train on "
                f"{transformer.config.ipi_num_frames} frames"
            )

    def build_data(self):
        """The dataset (a precompute cache, or clips encoded on the fly by the pipeline's own encoders), the encoder
        (None with a cache) and the task-mixing sampler, which draws one task per micro-step, the same on every
        rank."""
        from animatex_pp.data.sampler import TaskMixingSampler

        data, seed, world = self.config.data, self.config.seed, self.world
        clips = data.clips.clip_config(seed)
        encoder = None
        if data.cache:
            from animatex_pp.data.cache import CachedClipDataset

            dataset = CachedClipDataset(data.cache, clips)
        else:
            from animatex_pp.data.clips import ClipDataset
            from animatex_pp.data.encode import ConditionEncoder
            from animatex_pp.data.metadata import load_metadata

            dataset = ClipDataset(load_metadata(data.metadata), clips)
            encoder = ConditionEncoder(self.pipeline)
            for name in FROZEN_ENCODERS:
                module = getattr(self.pipeline, name, None)
                if module is not None:
                    module.to(world.device).requires_grad_(False)
        weights = dataclasses.asdict(self.config.task_mix.weights)
        sampler = TaskMixingSampler(dataset.tasks, dataset.buckets, weights, data.batch_size,
                                    world_size=world.world_size, rank=world.rank, seed=seed)  # fmt: skip
        return dataset, encoder, sampler

    def build_adapters(self):
        """Freeze the transformer but its adapters and streams; the parameter groups, printed as a table."""
        transformer = self.pipeline.transformer
        apply_adapters(transformer, self.config.adapter)
        if self.config.model.gradient_checkpointing:
            transformer.enable_gradient_checkpointing()
        transformer.train()
        groups = param_groups(transformer, self.config.adapter.param_groups, self.config.optim.lr)
        if self.world.is_main:
            table = trainable_table(transformer, groups)
            logger.info("trainable parameters:\n%s", table)
            print(table, flush=True)
        return groups

    def build_engine(self):
        import deepspeed

        transformer = self.pipeline.transformer
        optimizer, scheduler = build_optimizer(self.groups, self.config.optim, self.config.trainer.max_steps)
        if self.config.deepspeed.stage == 3:
            register_zero3_external_parameters(transformer)
        if self.settings["torch_autocast"]["enabled"]:
            cast_trainable_to_fp32(transformer)
        engine, _, _, _ = deepspeed.initialize(
            model=transformer, optimizer=optimizer, lr_scheduler=scheduler, config=self.settings
        )
        return engine

    # -- resume --------------------------------------------------------------------------------------------------

    def resume(self) -> int:
        """Load the checkpoint chosen at the start, if any; the optimizer steps already done."""
        if self.resume_from is None:
            return 0
        state = self.checkpoints.load(self.engine, self.resume_from, extra=self.ema.load if self.ema else None)
        self.sampler.load_state_dict(state["sampler"])  # refuses another seed or world size
        self.next_micro_step = self.sampler.start_step
        return state["step"]

    # -- one optimizer step --------------------------------------------------------------------------------------

    def train_step(self, step: int) -> StepRecord:
        """Optimizer step `step`: micro-steps until `gradient_accumulation_steps` of them have a finite loss on
        every rank (DeepSpeed updates the weights after the last), then the EMA."""
        record = StepRecord(step)
        # each counted micro-step's mean over ranks, left on the device until the logger reads it back
        while len(record.pending_losses) < self.accumulation:
            loss = self.micro_step(record)
            if loss is not None:
                record.pending_losses.append(loss)
        if self.ema is not None:
            self.ema.step()
        return record

    def micro_step(self, record: StepRecord) -> torch.Tensor | None:
        """The next micro-batch's forward and backward; its loss's mean over ranks, on the device, or None when it
        did not count. A loss that is not finite on some rank is dropped on every rank before its backward (the next
        micro-batch takes its place), or stops the run (`trainer.nonfinite`)."""
        micro_step = self.next_micro_step
        self.next_micro_step += 1
        waited = self.clock.mark()
        batch = next(self.batches)
        began = self.clock.mark()
        record.time("wait_s", waited, began)
        record.replaced_clips += int(batch["replaced"].sum())  # a host tensor: no device sync
        if self.encoder is not None:
            inputs = self.encoder.encode(batch, self.world.device)
        else:
            inputs = to_device(batch, self.world.device)
        encoded = self.clock.mark()
        record.time("encode_s", began, encoded)
        loss = self.loss(self.engine, self.engine.module, inputs, micro_step, self.world.rank)
        # the one host sync a micro-step needs: whether to run its backward
        if not _all_ranks_finite(loss, self.world.device):
            record.skipped += 1
            self.on_nonfinite(record.step, micro_step)
            return None
        self.nonfinite_in_a_row = 0
        self.engine.backward(loss)
        self.engine.step()  # an update on the accumulation's last micro-step, else accumulation only
        record.time("compute_s", encoded, self.clock.mark())
        record.tasks.append(batch["task"][0])
        return _mean_over_ranks(loss, self.world.device)

    def on_nonfinite(self, step: int, micro_step: int) -> None:
        self.nonfinite_in_a_row += 1
        logger.warning("step %d, micro-step %d: the loss is not finite on some rank; the micro-step is skipped", step,
                       micro_step)  # fmt: skip
        trainer = self.config.trainer
        if trainer.nonfinite == NonFinitePolicy.stop or self.nonfinite_in_a_row > trainer.max_nonfinite:
            raise FloatingPointError(
                f"{self.nonfinite_in_a_row} non-finite losses in a row (last at step {step}, micro-step "
                f"{micro_step}): lower optim.lr, check the data with `animatex-pp data check`, or resume from the "
                "last checkpoint with resume=auto"
            )

    # -- the loop ------------------------------------------------------------------------------------------------

    def fit(self, first_step: int) -> dict[str, Any]:
        """Optimizer steps `first_step + 1` to `trainer.max_steps`, each logged, then saved and validated when due;
        the metrics of these steps."""
        trainer, data = self.config.trainer, self.config.data
        self.batches = iter(batch_loader(self.dataset, self.sampler, data.num_workers, self.world.device))
        self.clock = DeviceClock(self.world.device)
        self.metrics = MetricsLogger(self.run_dir, self.world.is_main, self.config.logger.tensorboard,
                                     trainer.log_every, first_step, trainer.max_steps,
                                     samples_per_micro_step=data.batch_size * self.world.world_size,
                                     clock=self.clock)  # fmt: skip
        try:
            for step in range(first_step + 1, trainer.max_steps + 1):
                record = self.train_step(step)
                rates = dict(zip((group.name for group in self.groups), self.engine.get_lr(), strict=True))
                # the norm may be a device tensor: read only on a log step, when the logger syncs anyway
                norm = self.engine.get_global_grad_norm() if self.metrics.due(step) else None
                self.metrics.log(record, rates, norm)
                last = step == trainer.max_steps
                if step % trainer.checkpoint_every == 0 or last:
                    self.save(step)
                every = self.config.validation.every
                if every and (step % every == 0 or last):
                    self.validate(step)
            return self.metrics.summary()
        finally:
            self.metrics.close()
            del self.batches  # the loader's workers end with their iterator

    # -- save, validate ------------------------------------------------------------------------------------------

    def save(self, step: int) -> None:
        self.metrics.flush()  # the rows up to a checkpoint are on disk before it is: a resume keeps them
        state = {"sampler": self.sampler.state_dict(self.next_micro_step)}
        self.checkpoints.save(self.engine, step, state, extra=self.ema.save if self.ema is not None else None)

    def validate(self, step: int) -> None:
        from animatex_pp.training.validation import write_validation

        with self.ema_weights():
            write_validation(self.pipeline, self.engine.module, self.config, step, self.world.is_main,
                             self.metrics.writer)  # fmt: skip

    def ema_weights(self) -> contextlib.AbstractContextManager:
        """The averaged weights in the model for the block when the EMA is on (validation and export use them)."""
        return self.ema.swapped_in() if self.ema is not None else contextlib.nullcontext()


def batch_loader(dataset, sampler, num_workers: int, device: torch.device) -> DataLoader:
    """The loader of the sampler's batches. For a CUDA device its batches are in page-locked (pinned) memory, which
    the copy to the device reads without a staging copy, and asynchronously (`to_device`, `non_blocking`)."""
    # Workers start from a fresh interpreter ("spawn"), not a fork of this process: a fork inherits whatever threads
    # and native state the caller's process holds (a test run, a notebook, MediaPipe or DeepSpeed loaded); a forked
    # worker segfaulted inside CI's test run. Every draw is keyed by step and sample, so the batches are the same.
    context = "spawn" if num_workers > 0 else None
    return DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers, collate_fn=collate,
                      pin_memory=device.type == "cuda", multiprocessing_context=context)  # fmt: skip


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, torch.Tensor]:
    """A cached batch's tensors on `device`, copied without blocking the host (from pinned memory on CUDA; the batch
    stays referenced until the micro-step ends, so its memory is not reused before the copy has read it)."""
    return {name: value.to(device, non_blocking=True) for name, value in batch.items()
            if isinstance(value, torch.Tensor)}  # fmt: skip


# The collectives take their tensors on the world's device: an NCCL process group has no backend for CPU tensors.


def _all_ranks_finite(loss: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Whether `loss` is finite on every rank, as a one-element tensor on `device` (reading it is a host sync)."""
    flag = torch.isfinite(loss.detach()).to(device, torch.float32).reshape(1)
    torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MIN)
    return flag.bool()


def _mean_over_ranks(loss: torch.Tensor, device: torch.device) -> torch.Tensor:
    """The mean of `loss` over ranks, as a one-element float64 tensor on `device`."""
    total = loss.detach().to(device, torch.float64).reshape(1)
    torch.distributed.all_reduce(total)
    return total / torch.distributed.get_world_size()
