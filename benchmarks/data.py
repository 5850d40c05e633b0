"""Training data on the CPU: samples/s of the animation dataset on the fly and from the precompute cache.

    python benchmarks/data.py                # SynthX and real size, 0 and 2 workers, median of 3 (~11 minutes)
    python benchmarks/data.py --skip-real    # SynthX size only (~1 minute)
    python benchmarks/data.py --repeats 5 --batches 16 --real-batches 4

Both datasets are read as the trainer reads them: a `DataLoader` with `batch_sampler=TaskMixingSampler(...)` and
`collate_fn=collate`. "on the fly" is `ClipDataset` (decode, resize to the bucket, EPI, pose render; the frozen
encoders are not run, so an uncached trainer would be slower still); "cached" is `CachedClipDataset` on a cache
that `precompute` wrote with the tiny pipeline's encoders (latents and embeddings read, the pose still augmented
and rendered per step). Each configuration is measured once per repeat, interleaved, and the median kept, so the
ratios hold on a shared machine; the first batch of each loader (worker start-up) is not timed.

Clips are made in a temporary folder: SynthX size, 17 frames at 64 x 64 from the dance sample with a synthetic
swaying skeleton; real size, 81 frames at 832 x 480 (portrait bucket) from the walk sample at its own 720 x 940,
with the pose extracted once by MediaPipe. Precompute stops between clips once it would pass a 3-minute budget
(at real size one clip takes about that long on 2 cores), so the real-size cache may hold fewer clips than the
on-the-fly dataset. The column "/ tiny step rate" divides by the rate of one training step of the tiny model
(forward + backward + AdamW, batch 1) on a cached 17 x 64 x 64 animation sample; it is given for SynthX size only.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from animatex_pp.logs import filtered_native_stderr, quiet_third_party_logs  # noqa: E402

# Before transformers and MediaPipe are imported: their notices would bury the table.
quiet_third_party_logs()

import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from animatex_pp.data.cache import CachedClipDataset, precompute  # noqa: E402
from animatex_pp.data.clips import ClipConfig, ClipDataset, SampleKey, collate  # noqa: E402
from animatex_pp.data.encode import ConditionEncoder  # noqa: E402
from animatex_pp.data.metadata import read_metadata  # noqa: E402
from animatex_pp.data.sampler import TaskMixingSampler  # noqa: E402
from animatex_pp.io.video import read_video, write_video  # noqa: E402
from animatex_pp.models.transformer import AnimateXTransformer3DModel  # noqa: E402
from animatex_pp.pipelines.conditioning import resize_frames  # noqa: E402
from animatex_pp.pose.sequence import PoseSequence  # noqa: E402
from animatex_pp.testing import tiny_pipeline  # noqa: E402
from animatex_pp.training.step import unit_pose  # noqa: E402

VIDEOS = Path(__file__).resolve().parents[2] / "shared" / "assets" / "videos"
# Past this, precompute stops at a shard boundary and the rest of the clips are left out: the read rate does not
# depend on how many clips the cache holds.
PRECOMPUTE_BUDGET_S = 180.0
SIZES = {
    "synthx": {"label": "SynthX 17 x 64 x 64", "frames": 17, "bucket": (64, 64), "clips": 8, "batch": 4},
    "real": {"label": "real 81 x 832 x 480", "frames": 81, "bucket": (832, 480), "clips": 3, "batch": 1},
}
REAL_CLIP_FRAMES, REAL_CLIP_OFFSET = 100, 40  # walk clips of 100 frames, each starting 40 frames after the last

# OpenPose-18 of a person standing in a square frame, normalised (x, y); arms swing about the shoulders.
STANDING = np.array(
    [[0.50, 0.15], [0.50, 0.25], [0.42, 0.25], [0.40, 0.38], [0.39, 0.50], [0.58, 0.25], [0.60, 0.38],
     [0.61, 0.50], [0.45, 0.52], [0.45, 0.70], [0.45, 0.88], [0.55, 0.52], [0.55, 0.70], [0.55, 0.88],
     [0.48, 0.13], [0.52, 0.13], [0.46, 0.14], [0.54, 0.14]],
    dtype=np.float32,
)  # fmt: skip
ARMS = {2: (3, 4), 5: (6, 7)}  # shoulder -> (elbow, wrist)


def swaying_pose(num_frames: int, phase: float, size: int) -> PoseSequence:
    """The standing skeleton with both arms swinging, one frame per video frame."""
    body = np.repeat(STANDING[None], num_frames, axis=0)
    for frame in range(num_frames):
        for side, (shoulder, arm) in enumerate(ARMS.items()):
            angle = 0.6 * math.sin(phase + frame / 3) * (1 if side else -1)
            rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
            # The elbow and the wrist turn about the shoulder, the arms in opposite directions.
            body[frame, list(arm)] = (STANDING[list(arm)] - STANDING[shoulder]) @ rotation.T + STANDING[shoulder]
    return PoseSequence(body, np.ones((num_frames, 18), np.float32), width=size, height=size, fps=None)


def write_metadata(folder: Path, rows: list[dict]) -> Path:
    path = folder / "metadata.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def make_synthx(folder: Path, clips: int) -> Path:
    """Clips of the dance sample at 64 x 64 (shifted in time from each other), with synthetic poses."""
    dance, fps = read_video(VIDEOS / "dance_anime_32f.mp4")
    dance = resize_frames(dance, 64, 64)
    rows = []
    for number in range(clips):
        write_video(folder / f"dance_{number}.mp4", np.roll(dance, 3 * number, axis=0), fps=fps)
        swaying_pose(len(dance), phase=number, size=64).save(folder / f"dance_{number}.npz")
        rows.append({"video": f"dance_{number}.mp4", "task": "animation", "caption": "a girl dances",
                     "pose": f"dance_{number}.npz"})  # fmt: skip
    return write_metadata(folder, rows)


def make_real(folder: Path, clips: int) -> Path:
    """Overlapping 100-frame cuts of the walk sample at its own size; the pose extracted once and cut alike."""
    from animatex_pp.pose import extract

    needed = REAL_CLIP_OFFSET * (clips - 1) + REAL_CLIP_FRAMES
    walk, fps = read_video(VIDEOS / "fashion_walk_380f.mp4", max_frames=needed)
    with filtered_native_stderr():
        pose = extract(walk, fps=fps, progress=False)
    rows = []
    for number in range(clips):
        cut = slice(REAL_CLIP_OFFSET * number, REAL_CLIP_OFFSET * number + REAL_CLIP_FRAMES)
        write_video(folder / f"walk_{number}.mp4", walk[cut], fps=fps)
        pose[cut].save(folder / f"walk_{number}.npz")
        rows.append({"video": f"walk_{number}.mp4", "task": "animation", "caption": "a woman walks",
                     "pose": f"walk_{number}.npz"})  # fmt: skip
    return write_metadata(folder, rows)


class _OverBudget(Exception):
    pass


def precompute_within_budget(metadata: Path, out: Path, encoder: ConditionEncoder, config: ClipConfig) -> dict:
    """Precompute one clip per shard, stopping when the next shard would pass the budget; returns timings."""
    total = len(read_metadata(metadata).clips)
    start = time.perf_counter()

    def check(shard: int) -> None:
        elapsed = time.perf_counter() - start
        if shard + 1 < total and elapsed * (shard + 2) / (shard + 1) > PRECOMPUTE_BUDGET_S:
            raise _OverBudget

    try:
        precompute(metadata, out, encoder, config, encoder_name="tiny", shard_size=1, progress=False, on_shard=check)
    except _OverBudget:
        pass
    done = len(CachedClipDataset(out, config))
    return {"clips": done, "of": total, "seconds": time.perf_counter() - start}


def loader_rate(dataset, batch_size: int, workers: int, batches: int, first_step: int) -> float:
    """Samples/s over `batches` batches after a first, untimed one, read as the trainer reads them."""
    sampler = TaskMixingSampler(dataset.tasks, dataset.buckets, {"animation": 1.0}, batch_size, seed=0,
                                num_steps=first_step + batches + 1, start_step=first_step)  # fmt: skip
    iterator = iter(DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=workers))
    next(iterator)
    start = time.perf_counter()
    samples = sum(len(batch["key"]) for batch in iterator)
    return samples / (time.perf_counter() - start)


class TinyStep:
    """Forward + backward + AdamW step of the tiny transformer on one cached animation sample (batch 1).

    The input is Wan I2V's: the noisy latents x_t = (1 - sigma) x_0 + sigma * noise, concatenated with the I2V
    condition; the target is noise - x_0 (rectified flow). The IPI is widened to the sample's 17 frames (the tiny
    preset's windows are 9), so that every pose stream takes the whole clip.
    """

    def __init__(self, sample: dict):
        batch = collate([sample])
        torch.manual_seed(0)
        self.transformer = AnimateXTransformer3DModel.from_preset(
            "tiny", ipi_num_frames=batch["pose_keypoints"].shape[1], ipi_num_latent_frames=batch["latents"].shape[2]
        ).train()
        self.optimizer = torch.optim.AdamW(self.transformer.parameters(), lr=1e-4)
        latents = batch["latents"]
        noise = torch.randn_like(latents)
        sigma = torch.rand(1)
        self.target = noise - latents
        self.inputs = {
            "hidden_states": torch.cat([(1 - sigma) * latents + sigma * noise, batch["condition"]], dim=1),
            "timestep": 1000 * sigma,
            "encoder_hidden_states": batch["prompt_embeds"],
            "encoder_hidden_states_image": batch["image_embeds"],
            "pose_video": unit_pose(batch, "pose_video"),
            "reference_pose": unit_pose(batch, "reference_pose"),
            "pose_keypoints": batch["pose_keypoints"],
            "driving_image_embeds": batch["driving_embeds"],
        }
        # The first steps allocate AdamW's state and warm the allocator; they are not timed.
        for _ in range(3):
            self.step()

    def step(self) -> None:
        prediction = self.transformer(**self.inputs, return_dict=False)[0]
        torch.nn.functional.mse_loss(prediction, self.target).backward()
        self.optimizer.step()
        self.optimizer.zero_grad()

    def rate(self, steps: int) -> float:
        start = time.perf_counter()
        for _ in range(steps):
            self.step()
        return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="measurements per row, median kept (default 3)")
    parser.add_argument("--batches", type=int, default=8, help="batches timed per SynthX measurement (default 8)")
    parser.add_argument("--real-batches", type=int, default=2,
                        help="batches timed per real-size measurement (default 2: one is many seconds)")  # fmt: skip
    parser.add_argument("--skip-real", action="store_true", help="SynthX size only")
    args = parser.parse_args()
    if min(args.repeats, args.batches, args.real_batches) < 1:
        parser.error("--repeats, --batches and --real-batches must be at least 1")

    began = time.perf_counter()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs\n")
    batches = {"synthx": args.batches} if args.skip_real else {"synthx": args.batches, "real": args.real_batches}
    encoder = ConditionEncoder(tiny_pipeline(seed=0))
    with tempfile.TemporaryDirectory(prefix="animatex-data-benchmark-") as root:
        datasets, notes = {}, []
        for size in batches:
            spec = SIZES[size]
            folder = Path(root) / size
            folder.mkdir()
            metadata = (make_synthx if size == "synthx" else make_real)(folder, spec["clips"])
            config = ClipConfig(num_frames=spec["frames"], buckets=(spec["bucket"],))
            made = precompute_within_budget(metadata, folder / "cache", encoder, config)
            note = (f"precompute, {spec['label']}: {made['clips']} of {made['of']} clips in {made['seconds']:.1f} s "
                    f"({made['seconds'] / made['clips']:.1f} s/clip, tiny pipeline)")  # fmt: skip
            if made["clips"] < made["of"]:
                note += f"; stopped at the {PRECOMPUTE_BUDGET_S:.0f} s budget (the read rate does not depend on it)"
            notes.append(note)
            datasets[size, "on the fly"] = ClipDataset(read_metadata(metadata).clips, config)
            datasets[size, "cached"] = CachedClipDataset(folder / "cache", config)
        print("\n".join(notes) + "\n")

        tiny = TinyStep(datasets["synthx", "cached"][SampleKey(0, 0, 0)])
        rates: dict[tuple, list[float]] = {}
        step_rates = []
        for repeat in range(args.repeats):
            for (size, path), dataset in datasets.items():
                # A new stretch of steps each repeat: other windows and EPI draws.
                first_step = repeat * (batches[size] + 1)
                for workers in (0, 2):
                    rate = loader_rate(dataset, SIZES[size]["batch"], workers, batches[size], first_step)
                    rates.setdefault((size, path, workers), []).append(rate)
            step_rates.append(tiny.rate(steps=10))
        step_rate = statistics.median(step_rates)

    print(f"tiny step (transformer fwd+bwd+AdamW, batch 1), 17 x 64 x 64: {step_rate:.2f} steps/s "
          f"(min {min(step_rates):.2f}, max {max(step_rates):.2f})")  # fmt: skip
    print(f"median of {args.repeats}; batches timed: {', '.join(f'{size} {n}' for size, n in batches.items())}\n")
    # The step rate is the SynthX-size model's: a ratio for the real size would compare unlike sizes.
    print("| clips | path | workers | batch | samples/s | / tiny step rate |\n|---|---|---|---|---|---|")
    for (size, path, workers), measured in rates.items():
        rate = statistics.median(measured)
        ratio = f"{rate / step_rate:.1f}x" if size == "synthx" else "n/a"
        print(f"| {SIZES[size]['label']} | {path} | {workers} | {SIZES[size]['batch']} | {rate:.2f} | {ratio} |")
    print(f"\ntotal {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
