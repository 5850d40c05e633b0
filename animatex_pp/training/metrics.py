"""What a run reports, every count in optimizer steps: `losses.jsonl`, TensorBoard scalars, the progress bar, and
the final metrics. Rank 0 writes; every rank keeps the same history (each loss is the mean over ranks).

`losses.jsonl` holds one row per optimizer step: `step` (1 is the first update), `loss` (the mean of its
micro-steps'), `tasks` and `micro_losses` (each micro-step's task and loss, in order). A resumed run keeps the rows
up to its checkpoint and trains the later steps again.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from animatex_pp.io.files import atomic_output

LOSSES_FILE = "losses.jsonl"
METRICS_FILE = "metrics.json"
TASKS = ("animation", "ti2v")


@dataclasses.dataclass
class StepRecord:
    """One optimizer step as the trainer ran it."""

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
    the final metrics of the steps after `first_step` (0, or the step a run resumed at)."""

    def __init__(self, run_dir: Path, is_main: bool, tensorboard: bool, log_every: int, first_step: int,
                 max_steps: int, samples_per_micro_step: int):  # fmt: skip
        self.run_dir, self.is_main, self.log_every = run_dir, is_main, log_every
        self.samples_per_micro_step = samples_per_micro_step
        self.records: list[StepRecord] = []
        self.writer = None
        if is_main and tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(run_dir / "tensorboard"))
        if is_main:
            self._keep_rows_up_to(first_step)
        self.bar = tqdm(total=max_steps, initial=first_step, desc="training", unit="step", disable=not is_main)
        self.started = time.perf_counter()

    def _keep_rows_up_to(self, step: int) -> None:
        path = self.run_dir / LOSSES_FILE
        kept = []
        if step > 0 and path.is_file():
            kept = [line for line in path.read_text().splitlines() if json.loads(line)["step"] <= step]
        with atomic_output(path) as temporary:
            temporary.write_text("".join(f"{line}\n" for line in kept))

    def log(self, record: StepRecord, rates: dict[str, float], grad_norm: float | None) -> None:
        """Record a step; `rates` are the parameter groups' learning rates after its update."""
        self.records.append(record)
        if not self.is_main:
            return
        row = {"step": record.step, "loss": record.loss, "tasks": record.tasks, "micro_losses": record.losses}
        with open(self.run_dir / LOSSES_FILE, "a") as file:
            file.write(json.dumps(row) + "\n")
        self.bar.set_postfix(loss=f"{record.loss:.4f}", task="+".join(sorted(set(record.tasks))),
                             lr=f"{max(rates.values()):.2e}")  # fmt: skip
        self.bar.update()
        if self.writer is not None and record.step % self.log_every == 0:
            for task, loss in record.task_losses().items():
                self.writer.add_scalar(f"loss/{task}", loss, record.step)
            for group, rate in rates.items():
                self.writer.add_scalar(f"lr/{group}", rate, record.step)
            if grad_norm is not None:
                self.writer.add_scalar("grad_norm", grad_norm, record.step)
            elapsed = max(time.perf_counter() - self.started, 1e-9)
            samples = sum(entry.micro_steps for entry in self.records) * self.samples_per_micro_step
            self.writer.add_scalar("throughput/samples_per_s", samples / elapsed, record.step)
            waited = sum(entry.wait_s for entry in self.records)
            self.writer.add_scalar("throughput/data_wait_share", waited / elapsed, record.step)

    def summary(self) -> dict[str, Any]:
        """The run's metrics: losses over the last (and first) fifth of its steps, counts, throughput, shares."""
        elapsed = max(time.perf_counter() - self.started, 1e-9)
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
