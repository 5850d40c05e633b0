"""What a run reports, every count in optimizer steps: `losses.jsonl`, TensorBoard scalars, the progress bar, and
the final metrics. Rank 0 writes; every rank keeps the same history (each loss is the mean over ranks).

`losses.jsonl` holds one row per optimizer step: `step` (1 is the first update), `loss` (the mean of its
micro-steps'), `tasks` and `micro_losses` (each micro-step's task and loss, in order). A resumed run keeps the rows
up to its checkpoint and trains the later steps again.

Reading a loss back from an accelerator is a host sync, which stalls the host's queue of work: a step's losses and
times stay on the device (`StepRecord.pending_losses`, `DeviceClock` marks) until the logger reads every pending
step back at once (`MetricsLogger.flush`), at each `trainer.log_every`-th step, before a checkpoint and at the end.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from animatex_pp.io.files import atomic_output

LOSSES_FILE = "losses.jsonl"
METRICS_FILE = "metrics.json"
TASKS = ("animation", "ti2v")


class DeviceClock:
    """The loop's timer, on the timeline of the device that runs the work.

    CUDA runs kernels asynchronously: a host clock read when a call returns measures the launch, not the work. On a
    CUDA device a mark is therefore an event recorded on the device's current stream, and `seconds` waits until the
    device has passed the later mark; the time between two marks is then the device's, idle time included (a data
    wait is the time the device had nothing queued). Events rather than a `torch.cuda.synchronize` at each mark: the
    host keeps queueing work ahead of the device between reads. On the CPU the work is done when a call returns, and
    a mark is the host clock.
    """

    def __init__(self, device: torch.device | str):
        self.device = torch.device(device)
        self.on_cuda = self.device.type == "cuda"

    def mark(self) -> Any:
        """A point in time: a recorded CUDA event, or the host clock's reading."""
        if not self.on_cuda:
            return time.perf_counter()
        event = torch.cuda.Event(enable_timing=True)
        event.record(torch.cuda.current_stream(self.device))
        return event

    def seconds(self, start: Any, end: Any) -> float:
        """The seconds from mark `start` to mark `end` (on CUDA, once the device has reached `end`)."""
        if not self.on_cuda:
            return end - start
        end.synchronize()
        return start.elapsed_time(end) / 1000.0


@dataclasses.dataclass
class StepRecord:
    """One optimizer step as the trainer ran it: its losses and times are filled in by `resolve`, when the logger
    reads them back from the device."""

    step: int
    # the micro-steps that counted (finite loss): their tasks and losses
    tasks: list[str] = dataclasses.field(default_factory=list)
    losses: list[float] = dataclasses.field(default_factory=list)
    # micro-steps dropped for a non-finite loss
    skipped: int = 0
    replaced_clips: int = 0
    # seconds waiting for the data loader, in the frozen encoders (clips encoded on the fly), and in forward,
    # backward and the optimizer step
    wait_s: float = 0.0
    encode_s: float = 0.0
    compute_s: float = 0.0
    # until `resolve`: each counted micro-step's loss (a one-element tensor on the device) and the marks
    # (`DeviceClock`) bounding each timed part, as (field, start, end)
    pending_losses: list[torch.Tensor] = dataclasses.field(default_factory=list)
    pending_times: list[tuple[str, Any, Any]] = dataclasses.field(default_factory=list)

    def time(self, field: str, start: Any, end: Any) -> None:
        """Add the time between two marks to `field` (`wait_s`, `encode_s`, `compute_s`) when the step resolves."""
        self.pending_times.append((field, start, end))

    def resolve(self, losses: list[float], clock: DeviceClock) -> None:
        """The pending losses, as read back, and the pending times, read from `clock`."""
        self.losses = losses
        for field, start, end in self.pending_times:
            setattr(self, field, getattr(self, field) + clock.seconds(start, end))
        self.pending_losses, self.pending_times = [], []

    @property
    def loss(self) -> float:
        return _mean(self.losses)

    @property
    def micro_steps(self) -> int:
        return len(self.losses) + self.skipped

    def task_losses(self) -> dict[str, float]:
        """The mean loss of each task's micro-steps in this step."""
        by_task: dict[str, list[float]] = defaultdict(list)
        for task, loss in zip(self.tasks, self.losses, strict=True):
            by_task[task].append(loss)
        return {task: _mean(losses) for task, losses in by_task.items()}


class MetricsLogger:
    """`losses.jsonl`, TensorBoard (`writer`, None off rank 0 or without `logger.tensorboard`), the progress bar and
    the final metrics of the steps after `first_step` (0, or the step a run resumed at), timed by `clock`."""

    def __init__(self, run_dir: Path, is_main: bool, tensorboard: bool, log_every: int, first_step: int,
                 max_steps: int, samples_per_micro_step: int, clock: DeviceClock):  # fmt: skip
        self.run_dir, self.is_main, self.log_every = run_dir, is_main, log_every
        self.samples_per_micro_step = samples_per_micro_step
        self.clock = clock
        self.records: list[StepRecord] = []
        self.pending: list[StepRecord] = []  # logged, not yet read back from the device
        self.rates: dict[str, float] = {}
        self.writer = None
        if is_main and tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(run_dir / "tensorboard"))
        if is_main:
            self._keep_rows_up_to(first_step)
        self.bar = tqdm(total=max_steps, initial=first_step, desc="training", unit="step", disable=not is_main)
        self.started = clock.mark()

    def _keep_rows_up_to(self, step: int) -> None:
        path = self.run_dir / LOSSES_FILE
        kept = []
        if step > 0 and path.is_file():
            kept = [line for line in path.read_text().splitlines() if json.loads(line)["step"] <= step]
        with atomic_output(path) as temporary:
            temporary.write_text("".join(f"{line}\n" for line in kept))

    def due(self, step: int) -> bool:
        """Whether `step` is a log step (the trainer reads the gradient norm only then)."""
        return step % self.log_every == 0

    def log(self, record: StepRecord, rates: dict[str, float], grad_norm: torch.Tensor | float | None) -> None:
        """Record a step; `rates` are the parameter groups' learning rates after its update, `grad_norm` the
        gradient norm of a log step (None otherwise). A log step reads back every pending step and writes it."""
        self.pending.append(record)
        self.rates = rates
        self.bar.update()
        if not self.due(record.step):
            return
        self.flush()
        if self.writer is not None:
            for task, loss in record.task_losses().items():
                self.writer.add_scalar(f"loss/{task}", loss, record.step)
            for group, rate in rates.items():
                self.writer.add_scalar(f"lr/{group}", rate, record.step)
            if grad_norm is not None:
                self.writer.add_scalar("grad_norm", float(grad_norm), record.step)
            elapsed = max(self.clock.seconds(self.started, self.clock.mark()), 1e-9)
            samples = sum(entry.micro_steps for entry in self.records) * self.samples_per_micro_step
            self.writer.add_scalar("throughput/samples_per_s", samples / elapsed, record.step)
            waited = sum(entry.wait_s for entry in self.records)
            self.writer.add_scalar("throughput/data_wait_share", waited / elapsed, record.step)

    def flush(self) -> None:
        """Read the pending steps back from the device, all their losses in one host sync, and write their rows."""
        if not self.pending:
            return
        losses = torch.cat([loss for record in self.pending for loss in record.pending_losses]).tolist()
        for record in self.pending:
            counted = len(record.pending_losses)
            record.resolve(losses[:counted], self.clock)
            losses = losses[counted:]
        self.records += self.pending
        if self.is_main:
            rows = [{"step": record.step, "loss": record.loss, "tasks": record.tasks, "micro_losses": record.losses}
                    for record in self.pending]  # fmt: skip
            with open(self.run_dir / LOSSES_FILE, "a") as file:
                file.write("".join(json.dumps(row) + "\n" for row in rows))
            last = self.pending[-1]
            self.bar.set_postfix(loss=f"{last.loss:.4f}", task="+".join(sorted(set(last.tasks))),
                                 lr=f"{max(self.rates.values()):.2e}")  # fmt: skip
        self.pending = []

    def summary(self) -> dict[str, Any]:
        """The run's metrics: losses over the last (and first) fifth of its steps, counts, throughput, shares (each
        of the time on the device's timeline: docs/training.md, "Throughput and shares")."""
        self.flush()
        elapsed = max(self.clock.seconds(self.started, self.clock.mark()), 1e-9)
        losses = [record.loss for record in self.records]
        micro_steps = sum(record.micro_steps for record in self.records)
        metrics = {
            "steps": len(self.records),
            "micro_steps": micro_steps,
            "final_loss": _mean(_last_fifth(losses)),
            "first_loss": _mean(losses[: max(1, len(losses) // 5)]),
            "skipped_nonfinite": sum(record.skipped for record in self.records),
            "replaced_clips": sum(record.replaced_clips for record in self.records),
            "wall_time_s": elapsed,
            "samples_per_s": micro_steps * self.samples_per_micro_step / elapsed,
            # forward + backward + optimizer step (the frozen encoders, on the fly, are `encode_share`)
            "compute_share": sum(record.compute_s for record in self.records) / elapsed,
            "encode_share": sum(record.encode_s for record in self.records) / elapsed,
            "data_wait_share": sum(record.wait_s for record in self.records) / elapsed,
        }
        for task in TASKS:
            pairs = [pair for record in self.records for pair in zip(record.tasks, record.losses, strict=True)]
            task_losses = [loss for name, loss in pairs if name == task]
            if task_losses:
                metrics[f"loss_{task}"] = _mean(_last_fifth(task_losses))
                metrics[f"micro_steps_{task}"] = len(task_losses)
        return metrics

    def close(self) -> None:
        self.bar.close()
        if self.writer is not None:
            self.writer.close()


def write_metrics(run_dir: Path, metrics: dict[str, Any]) -> None:
    """`metrics.json`, written whole or not at all."""
    with atomic_output(run_dir / METRICS_FILE) as temporary:
        temporary.write_text(json.dumps(metrics, indent=1))


def _last_fifth(values: list[float]) -> list[float]:
    return values[-max(1, len(values) // 5) :]


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else math.nan
