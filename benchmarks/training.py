"""Training loop on the CPU: where `train(cfg)`'s wall time goes, with the precompute cache and on the fly.

    python benchmarks/training.py                  # 5 one-process rows + a short ZeRO-2 row (~5 minutes idle)
    python benchmarks/training.py --steps 10 --fly-steps 2 --skip-zero2   # a quick look
    python benchmarks/training.py --threads 1      # one intra-op thread (faster on a shared 2-core machine)
    python benchmarks/training.py --steps 60 --repeats 3 --skip-zero2

Each row is a real `train(cfg)` run of the `synthx_tiny` recipe (joint animation + ti2v, DeepSpeed, AdamW,
TensorBoard logging, a checkpoint at the end, no export) on a small SynthX build made in a temporary folder and
precomputed with the tiny pipeline's encoders. The rows: the tiny model at batch 1 (the "tiny step rate" that
`benchmarks/data.py` compares data rates with) and batch 4 (the recipe's), batch 4 without the recipe's DataLoader
worker (`data.num_workers=0`: this process reads and renders every batch itself; with the worker, the read happens
in the worker, so only the wait for the batch is in this process's parts), a wider tiny transformer at batch 4,
the tiny model encoding its clips on the fly (no cache: the frozen VAE and text/CLIP encoders run in the loop),
and ZeRO-2 over 2 local processes (rank 0's view). The last two are slow on 2 cores (the VAE encodes every sample;
two workers share the cores), so they run fewer steps.

The trainer is not edited: this process wraps the functions the loop calls with timers (the loss, i.e. the
forward; the DeepSpeed engine's backward and step; the loader's next batch and within it the sampler, the dataset
read and collate; the encoders; the finite check (its all-reduce) and the loss all-reduce (each counted micro-step's
loss averaged over ranks); the checkpoint; the TensorBoard writes). What no timer covers (losses.jsonl, the progress
bar, Python between calls) is "other". The first `--warmup` steps of a run are not counted; the window ends when
the loop closes its progress bar, so it holds the final checkpoint. On a CUDA device every timer first waits for
the device (`torch.cuda.synchronize`): CUDA calls return once their work is queued, so a host clock alone would
time the launches. The waits serialise host and device at each boundary, so a run takes longer than the trainer's
loop alone, which marks the device's timeline with events instead (`DeviceClock`). With `--repeats` > 1 the rows
are run interleaved and the median of each figure kept. `--threads` sets torch's intra-op threads of the
one-process rows; the local launcher gives each ZeRO-2 worker one.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from animatex_pp.logs import quiet_third_party_logs  # noqa: E402

# Before transformers and DeepSpeed are imported: their notices would bury the table.
quiet_third_party_logs()

import deepspeed  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402
from torch.utils.tensorboard import SummaryWriter  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from animatex_pp.data.cache import CachedClipDataset, precompute  # noqa: E402
from animatex_pp.data.clips import ClipConfig, ClipDataset  # noqa: E402
from animatex_pp.data.encode import ConditionEncoder  # noqa: E402
from animatex_pp.data.sampler import TaskMixingSampler  # noqa: E402
from animatex_pp.synthx import BuildConfig, build  # noqa: E402
from animatex_pp.testing import tiny_pipeline  # noqa: E402
from animatex_pp.training import metrics as training_metrics  # noqa: E402
from animatex_pp.training import trainer  # noqa: E402
from animatex_pp.training.checkpoint import CheckpointManager  # noqa: E402
from animatex_pp.training.config import compose_config  # noqa: E402
from animatex_pp.training.distributed import launch_local  # noqa: E402
from animatex_pp.training.step import TrainingLoss  # noqa: E402

# 8 animation + 8 ti2v clips: the fewest that give ZeRO-2's 2 ranks x batch 4 in both tasks (precompute runs the
# VAE twice per clip, seconds each on 2 cores).
SYNTHX = BuildConfig(size=64, frames=17, train=16, test=0, seed=0, ti2v_share=0.5)
# Wider than tiny's 2 x 16: 4 heads x 32, the image K/V projections and FFN following the width.
WIDE = ["+model.transformer.num_attention_heads=4", "+model.transformer.attention_head_dim=32",
        "+model.transformer.ffn_dim=256", "+model.transformer.added_kv_proj_dim=128"]  # fmt: skip
ROWS = {
    "tiny, batch 1": {"overrides": ["data.batch_size=1"], "cache": True, "processes": 1},
    "tiny, batch 4": {"overrides": [], "cache": True, "processes": 1},
    # The cached read renders each animation sample's pose after its EPI draw: the recipe's loader worker does it
    # while the step runs; without it the step waits for it.
    "tiny, batch 4, no loader worker": {"overrides": ["data.num_workers=0"], "cache": True, "processes": 1},
    "wide 4 x 32, batch 4": {"overrides": WIDE, "cache": True, "processes": 1},
    "tiny, batch 4, on the fly": {"overrides": [], "cache": False, "processes": 1},
    "tiny, batch 4, ZeRO-2": {"overrides": ["deepspeed=zero2"], "cache": True, "processes": 2},
}
COMPUTE = ("forward", "backward", "optimizer")
DATA_PARTS = ("sampler", "read", "collate")
REST = ("encode", "finite check", "loss all-reduce", "checkpoint", "tensorboard")


def _now() -> float:
    """The host clock, once the current CUDA device (the one `init_world` set) has done the work queued on it."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter()


class LoopTimer:
    """Seconds per part of the training loop, summed over the steps after `warmup` (this process's rank)."""

    def __init__(self, warmup: int):
        self.warmup = warmup
        self.step = -1
        self.parts: dict[str, float] = defaultdict(float)
        self.began = self.ended = None

    def next_step(self) -> None:
        self.step += 1
        if self.step == self.warmup:
            self.began = _now()

    def add(self, part: str, seconds: float) -> None:
        if self.step >= self.warmup and self.ended is None:
            self.parts[part] += seconds

    def end(self) -> None:
        if self.began is not None and self.ended is None:
            self.ended = _now()

    def result(self) -> dict:
        return {"steps": self.step + 1 - self.warmup, "window": self.ended - self.began, "parts": dict(self.parts)}


_timer = LoopTimer(0)


class _Timed:
    """`function` with its time added to `part`. Pickled (as a spawned DataLoader worker's collate_fn is) as the
    function itself: a worker's time is not this process's, only the wait for its batches is."""

    def __init__(self, part: str, function):
        functools.update_wrapper(self, function)
        self.part, self.function = part, function

    def __call__(self, *args, **kwargs):
        begin = _now()
        try:
            return self.function(*args, **kwargs)
        finally:
            _timer.add(self.part, _now() - begin)

    def __get__(self, instance, owner=None):
        # as a class attribute (Dataset.__getitem__), bind like the function it stands for
        return self if instance is None else functools.partial(self, instance)

    def __reduce__(self):
        return _untimed, (self.function,)


def _untimed(function):
    """What a pickled `_Timed` loads as: the function it timed."""
    return function


class _TimedLoader(DataLoader):
    """The trainer's loader; each batch it yields marks a step, and the wait for it is the step's data time."""

    def __iter__(self):
        batches = super().__iter__()
        while True:
            _timer.next_step()
            begin = _now()
            try:
                batch = next(batches)
            except StopIteration:
                return
            _timer.add("data", _now() - begin)
            yield batch


class _TimedBar(tqdm):
    """The loop's progress bar: the loop closes it right after its last step."""

    def close(self):
        _timer.end()
        super().close()


def _timed_initialize(initialize):
    @functools.wraps(initialize)
    def wrapped(*args, **kwargs):
        engine, *rest = initialize(*args, **kwargs)
        engine.backward = _Timed("backward", engine.backward)
        engine.step = _Timed("optimizer", engine.step)
        return (engine, *rest)

    return wrapped


@functools.cache
def install_timers() -> None:
    """Wrap what the loop calls, once per process (the trainer looks these names up at call time)."""
    trainer.DataLoader = _TimedLoader
    training_metrics.tqdm = _TimedBar
    TrainingLoss.__call__ = _Timed("forward", TrainingLoss.__call__)
    trainer.collate = _Timed("collate", trainer.collate)
    trainer._all_ranks_finite = _Timed("finite check", trainer._all_ranks_finite)
    trainer._mean_over_ranks = _Timed("loss all-reduce", trainer._mean_over_ranks)
    CheckpointManager.save = _Timed("checkpoint", CheckpointManager.save)
    deepspeed.initialize = _timed_initialize(deepspeed.initialize)
    TaskMixingSampler.batch_at = _Timed("sampler", TaskMixingSampler.batch_at)
    CachedClipDataset.__getitem__ = _Timed("read", CachedClipDataset.__getitem__)
    ClipDataset.__getitem__ = _Timed("read", ClipDataset.__getitem__)
    ConditionEncoder.encode = _Timed("encode", ConditionEncoder.encode)
    SummaryWriter.add_scalar = _Timed("tensorboard", SummaryWriter.add_scalar)


def timed_train(job: tuple[dict, int]) -> dict:
    """`train(config)` with the loop timed; the local launcher runs this in each worker (rank 0's is kept)."""
    global _timer
    config, warmup = job
    install_timers()
    _timer = LoopTimer(warmup)
    with contextlib.redirect_stdout(io.StringIO()):  # the trainable-parameter table, printed by every run
        metrics = trainer.train(config)
    return {"metrics": metrics, **_timer.result()}


def make_data(root: Path) -> tuple[Path, Path, int]:
    """A SynthX build and its precompute cache, cut as the recipe's data config cuts clips; and the clip count."""
    build(root / "synthx", SYNTHX, workers=1, progress=False)
    metadata = root / "synthx" / "train.jsonl"
    data = compose_config(["recipe=synthx_tiny"])
    clips = {**data.data.clips, "buckets": tuple(tuple(bucket) for bucket in data.data.clips.buckets)}
    index = precompute(metadata, root / "cache", ConditionEncoder(tiny_pipeline(seed=0)),
                       ClipConfig(**clips, seed=data.seed), encoder_name="tiny", progress=False)  # fmt: skip
    return metadata, root / "cache", sum(len(shard["samples"]) for shard in index["shards"].values())


def row_config(row: dict, metadata: Path, cache: Path, steps: int, run_dir: Path) -> dict:
    overrides = ["recipe=synthx_tiny", f"data.metadata={metadata}", f"trainer.max_steps={steps}",
                 f"trainer.num_processes={row['processes']}",
                 "trainer.export.enabled=false", f"run_dir={run_dir}", *row["overrides"]]  # fmt: skip
    if row["cache"]:
        overrides.append(f"data.cache={cache}")
    return compose_config(overrides)


def run_row(row: dict, config, warmup: int) -> dict:
    from omegaconf import OmegaConf

    job = (OmegaConf.to_container(config, resolve=True), warmup)
    if row["processes"] > 1:
        # Workers are spawned: each imports this file and installs its own timers in `timed_train`.
        return launch_local(timed_train, job, row["processes"], str(config.run_dir))
    return timed_train(job)


def figures(result: dict, batch: int, processes: int) -> dict[str, float]:
    """Rates and per-step seconds of one run's window."""
    window, steps, parts = result["window"], result["steps"], result["parts"]
    measured = {name: parts.get(name, 0.0) for name in (*COMPUTE, "data", *DATA_PARTS, *REST)}
    measured["loader"] = measured["data"] - sum(measured[name] for name in DATA_PARTS)
    measured["other"] = window - sum(measured[name] for name in (*COMPUTE, "data", *REST))
    out = {f"{name} s": seconds / steps for name, seconds in measured.items()}
    out["batch"], out["processes"] = batch, processes
    out["steps/s"] = steps / window
    out["samples/s"] = out["steps/s"] * batch * processes
    out["compute share"] = sum(measured[name] for name in COMPUTE) / window
    out["data share"] = measured["data"] / window
    out["trainer compute_share"] = result["metrics"]["compute_share"]
    out["trainer data_wait_share"] = result["metrics"]["data_wait_share"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30, help="timed steps per one-process run (default 30)")
    parser.add_argument("--fly-steps", type=int, default=6, help="timed steps of the on-the-fly run (default 6)")
    parser.add_argument("--zero2-steps", type=int, default=10, help="timed steps of the ZeRO-2 run (default 10)")
    parser.add_argument("--warmup", type=int, default=3, help="first steps of each run, not timed (default 3)")
    parser.add_argument("--repeats", type=int, default=1, help="runs per row, interleaved, median kept (default 1)")
    parser.add_argument("--threads", type=int, help="torch threads of the one-process rows (default: torch's)")
    parser.add_argument("--skip-zero2", action="store_true", help="leave out the 2-process ZeRO-2 row")
    args = parser.parse_args()
    if min(args.steps, args.fly_steps, args.zero2_steps, args.repeats) < 1 or args.warmup < 0:
        parser.error("--steps, --fly-steps, --zero2-steps and --repeats must be at least 1, --warmup at least 0")

    if args.threads:
        torch.set_num_threads(args.threads)
    began = time.perf_counter()
    rows = {name: row for name, row in ROWS.items() if not (args.skip_zero2 and row["processes"] > 1)}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f} at start", flush=True)  # fmt: skip
    collected: dict[str, list[dict]] = defaultdict(list)
    with tempfile.TemporaryDirectory(prefix="animatex-training-benchmark-") as folder:
        root = Path(folder)
        made = time.perf_counter()
        metadata, cache, clips = make_data(root)
        print(f"data: {clips} SynthX clips "
              f"{SYNTHX.frames} x {SYNTHX.size} x {SYNTHX.size}, built and precomputed in "
              f"{time.perf_counter() - made:.0f} s", flush=True)  # fmt: skip
        for repeat in range(args.repeats):
            for name, row in rows.items():
                steps = args.zero2_steps if row["processes"] > 1 else args.steps if row["cache"] else args.fly_steps
                run_dir = root / "runs" / f"{len(collected[name])}-{name.replace(' ', '_').replace(',', '')}"
                config = row_config(row, metadata, cache, steps + args.warmup, run_dir)
                started = time.perf_counter()
                result = run_row(row, config, args.warmup)
                collected[name].append(figures(result, config.data.batch_size, row["processes"]))
                print(f"[{repeat + 1}/{args.repeats}] {name}: {time.perf_counter() - started:.0f} s, "
                      f"{collected[name][-1]['steps/s']:.2f} steps/s", flush=True)  # fmt: skip

    medians = {name: {key: statistics.median(run[key] for run in runs) for key in runs[0]}
               for name, runs in collected.items()}  # fmt: skip
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end; median of {args.repeats} run(s) per row, "
          f"{args.warmup} warm-up steps left out\n")  # fmt: skip
    print("| config | processes | batch | steps/s | samples/s | fwd+bwd+opt | data wait | rest |")
    print("|---|---|---|---|---|---|---|---|")
    for name, out in medians.items():
        rest = 1 - out["compute share"] - out["data share"]
        print(f"| {name} | {out['processes']} | {out['batch']} | {out['steps/s']:.2f} | {out['samples/s']:.2f} | "
              f"{out['compute share']:.1%} | {out['data share']:.1%} | {rest:.1%} |")  # fmt: skip

    parts = (*COMPUTE, *DATA_PARTS, "loader", *REST, "other")
    print("\nms per step:\n")
    print("| config | " + " | ".join(parts) + " |\n|---|" + "---|" * len(parts))
    for name, out in medians.items():
        print(f"| {name} | " + " | ".join(f"{1000 * out[f'{part} s']:.1f}" for part in parts) + " |")

    print("\ntrain()'s own metrics (whole run, warm-up included; its compute also holds the finite check):\n")
    print("| config | compute_share | data_wait_share |\n|---|---|---|")
    for name, out in medians.items():
        print(f"| {name} | {out['trainer compute_share']:.1%} | {out['trainer data_wait_share']:.1%} |")

    tiny = medians["tiny, batch 1"]
    compute_rate = 1 / sum(tiny[f"{part} s"] for part in COMPUTE)
    print(f"\ntiny step rate (17 x 64 x 64, batch 1, cache): {tiny['steps/s']:.2f} steps/s for the whole loop, "
          f"{compute_rate:.2f} for fwd+bwd+opt alone (what benchmarks/data.py's TinyStep measures)")  # fmt: skip
    print(f"\ntotal {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
