"""What the loop costs and measures on CUDA, checked on a CPU: its timers mark the device's timeline (CUDA events,
read once the device has passed them) and touch no CUDA on the CPU; the losses it keeps and the gradient norm are
read back only at log steps; its loader pins memory for a CUDA device; the benchmark's timers wait for the device.

A CPU build has no CUDA, so the CUDA calls are stand-ins that record how they are used; the run around them is a
real tiny training run."""

import importlib.util
import json
import sys
import time
from pathlib import Path

import pytest
import torch
from deepspeed.runtime.engine import DeepSpeedEngine

import animatex_pp.training.trainer as trainer_module
from animatex_pp.training import train
from animatex_pp.training.config import compose_config
from animatex_pp.training.metrics import DeviceClock
from tests.helpers.training import tiny_overrides

STEPS = 4
# Marks a counted micro-step takes: before and after the wait for its batch, after the encoders, after the update.
MARKS_PER_MICRO_STEP = 4
BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "training.py"


class RecordedEvent:
    """A stand-in for `torch.cuda.Event`: its time is the host clock's when recorded; reading an interval ending at
    an event the device has not been waited for is an error, as reading a CUDA event's time too early gives none."""

    recorded: list["RecordedEvent"] = []

    def __init__(self, enable_timing: bool = False):
        assert enable_timing, "an event without timing has no elapsed time"
        self.time = None
        self.waited = False
        self.stream = None

    def record(self, stream=None):
        self.time, self.stream = time.perf_counter(), stream
        RecordedEvent.recorded.append(self)

    def synchronize(self):
        self.waited = True

    def elapsed_time(self, end: "RecordedEvent") -> float:
        assert self.time is not None and end.waited, "read before the device was waited for"
        return 1000.0 * (end.time - self.time)


@pytest.fixture
def fake_cuda(monkeypatch):
    """`torch.cuda`'s event, stream and synchronize, recorded; the list of recorded events."""
    RecordedEvent.recorded = []
    synchronized = []
    monkeypatch.setattr(torch.cuda, "Event", RecordedEvent)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: ("stream of", device))
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: synchronized.append(device))
    return RecordedEvent.recorded, synchronized


def test_on_cuda_a_mark_is_an_event_on_the_device_stream_read_after_waiting_for_it(fake_cuda):
    recorded, _ = fake_cuda
    device = torch.device("cuda", 1)
    clock = DeviceClock(device)
    start = clock.mark()
    time.sleep(0.01)
    end = clock.mark()
    assert recorded == [start, end] and start.stream == ("stream of", device)
    assert clock.seconds(start, end) >= 0.01 and end.waited


def test_on_the_cpu_a_mark_is_the_host_clock_and_no_cuda_is_touched(monkeypatch):
    def no_cuda(*args, **kwargs):
        pytest.fail("CUDA touched on the CPU")

    for name in ("Event", "current_stream", "synchronize"):
        monkeypatch.setattr(torch.cuda, name, no_cuda)
    clock = DeviceClock(torch.device("cpu"))
    start = clock.mark()
    time.sleep(0.01)
    assert isinstance(start, float) and clock.seconds(start, clock.mark()) >= 0.01


class ReadBack(torch.Tensor):
    """A kept loss that counts every way of reading it back to the host (each a host sync on an accelerator)."""

    reads = 0
    READS = {torch.Tensor.item, torch.Tensor.tolist, torch.Tensor.__float__, torch.Tensor.__bool__,
             torch.Tensor.__int__, torch.Tensor.numpy, torch.Tensor.cpu}  # fmt: skip

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if func in cls.READS:
            ReadBack.reads += 1
        return super().__torch_function__(func, types, args, kwargs or {})


@pytest.fixture(scope="module")
def cuda_run(clip_folder, tmp_path_factory):
    """A tiny run of 4 optimizer steps, logged every 4th, timed by a clock on a (stand-in) CUDA device; what it
    recorded: the events each micro-step marked, the kept losses and their reads, the gradient-norm reads."""
    run = tmp_path_factory.mktemp("run") / "run"
    marks, kept, norm_reads, loaders = [], [], [], []
    real_micro_step, real_mean, real_norm = (trainer_module.Trainer.micro_step, trainer_module._mean_over_ranks,
                                             DeepSpeedEngine.get_global_grad_norm)  # fmt: skip
    real_loader = trainer_module.DataLoader

    def micro_step(self, record):
        before = len(RecordedEvent.recorded)
        loss = real_micro_step(self, record)
        marks.append(len(RecordedEvent.recorded) - before)
        return loss

    def mean_over_ranks(loss, device):
        mean = real_mean(loss, device)
        kept.append(mean.clone())
        return mean.as_subclass(ReadBack)

    def get_global_grad_norm(self):
        norm_reads.append(1)
        return real_norm(self)

    def loader(*args, **kwargs):
        loaders.append(kwargs)
        return real_loader(*args, **kwargs)

    ReadBack.reads = 0
    RecordedEvent.recorded = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch.cuda, "Event", RecordedEvent)
        patch.setattr(torch.cuda, "current_stream", lambda device=None: ("stream of", device))
        patch.setattr(trainer_module, "DeviceClock", lambda device: DeviceClock(torch.device("cuda", 0)))
        patch.setattr(trainer_module.Trainer, "micro_step", micro_step)
        patch.setattr(trainer_module, "_mean_over_ranks", mean_over_ranks)
        patch.setattr(DeepSpeedEngine, "get_global_grad_norm", get_global_grad_norm)
        patch.setattr(trainer_module, "DataLoader", loader)
        overrides = tiny_overrides(clip_folder / "metadata.jsonl", run, f"trainer.max_steps={STEPS}",
                                   f"trainer.log_every={STEPS}", f"trainer.checkpoint_every={STEPS}",
                                   "trainer.export.enabled=false", "logger=tensorboard")  # fmt: skip
        metrics = train(compose_config(overrides))
    rows = [json.loads(line) for line in (run / "losses.jsonl").read_text().splitlines()]
    return {"metrics": metrics, "rows": rows, "marks": marks, "kept": kept, "reads": ReadBack.reads,
            "norm_reads": len(norm_reads), "loaders": loaders}  # fmt: skip


def test_every_timer_boundary_of_a_micro_step_marks_the_device_timeline(cuda_run):
    assert cuda_run["marks"] == [MARKS_PER_MICRO_STEP] * STEPS
    metrics = cuda_run["metrics"]
    # the shares are of the events' intervals (each read only after waiting for its end: `RecordedEvent`)
    assert 0 < metrics["compute_share"] < 1 and 0 <= metrics["data_wait_share"] < 1
    assert metrics["compute_share"] + metrics["data_wait_share"] + metrics["encode_share"] <= 1


def test_the_kept_losses_and_the_gradient_norm_are_read_back_only_at_log_steps(cuda_run):
    # 4 steps logged every 4th: one read of all four kept losses, one of the norm (the finite check, which decides
    # each micro-step's backward, is the host sync that stays: it reads the raw loss, not the kept one)
    assert cuda_run["reads"] == 1
    assert cuda_run["norm_reads"] == 1
    # every step still has its row, with the losses it kept, in order
    assert [row["step"] for row in cuda_run["rows"]] == [1, 2, 3, 4]
    assert [row["micro_losses"] for row in cuda_run["rows"]] == [loss.tolist() for loss in cuda_run["kept"]]


def test_the_loader_pins_memory_for_a_cuda_device_only(cuda_run):
    assert [kwargs["pin_memory"] for kwargs in cuda_run["loaders"]] == [False]  # the run's world is the CPU
    dataset, batches = [{"x": torch.zeros(2)}] * 2, [[0, 1]]
    assert trainer_module.batch_loader(dataset, batches, 0, torch.device("cuda", 0)).pin_memory
    assert not trainer_module.batch_loader(dataset, batches, 0, torch.device("cpu")).pin_memory


def test_a_cached_batch_is_copied_to_the_device_without_blocking(monkeypatch):
    copies = []
    real_to = torch.Tensor.to

    def recording_to(tensor, *args, **kwargs):
        copies.append(kwargs.get("non_blocking", False))
        return real_to(tensor, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "to", recording_to)
    batch = {"pose_video": torch.zeros(1, 3, 1, 2, 2, dtype=torch.uint8), "latents": torch.zeros(1), "task": ["x"]}
    moved = trainer_module.to_device(batch, torch.device("cpu"))
    assert copies == [True, True] and set(moved) == {"pose_video", "latents"}
    assert moved["pose_video"].dtype == torch.uint8  # converted to floats on the device, by the step


def load_benchmark():
    spec = importlib.util.spec_from_file_location("training_benchmark", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("cuda", [True, False])
def test_the_benchmark_waits_for_the_device_at_each_timer_boundary_on_cuda_only(fake_cuda, monkeypatch, cuda):
    _, synchronized = fake_cuda
    benchmark = load_benchmark()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(benchmark, "_timer", benchmark.LoopTimer(0))
    calls = []
    timed = benchmark._Timed("forward", lambda: calls.append(len(synchronized)))
    benchmark._timer.next_step()
    timed()
    benchmark._timer.end()
    # begin and end of the window, begin and end of the timed call; the call itself ran after the device was idle
    assert len(synchronized) == (4 if cuda else 0)
    assert calls == [2 if cuda else 0]
    assert "forward" in benchmark._timer.result()["parts"]


def test_the_benchmark_names_the_loss_all_reduce_for_what_it_is():
    benchmark = load_benchmark()
    assert "sync" not in benchmark.REST
    assert {"finite check", "loss all-reduce"} <= set(benchmark.REST)
