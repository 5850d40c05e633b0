"""AnimateXPipeline on the CPU: seconds per step, peak memory against video length, FirstBlockCache speed-up.

    python benchmarks/pipeline.py              # everything (about 10 minutes on 2 cores)
    python benchmarks/pipeline.py --only speed # or: memory, cache

Every measurement runs in a fresh subprocess, so peak memory (the process's peak resident set, `ru_maxrss`) belongs
to that one generation: "extra" is the peak minus the resident set just before the call (the loaded models).
Seconds per step are the mean interval between `callback_on_step_end` calls, so prompt/image encoding and the VAE
decode are not counted. Models are random (tiny_components with a wider transformer for "mid"); speed and memory do
not depend on the weights, except the cache's skip rate, which is reported as measured.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# Configurations: transformer overrides of the tiny preset, and the generation size.
CONFIGS = {
    # The test pipeline: width 32, 4 blocks, IPI windows of 9 frames, 32 x 32.
    "tiny": {"overrides": {}, "size": 32},
    # Width 512 (8 heads x 64), 4 blocks, IPI windows of 33 frames (9 latent), 192 x 192 = 1296 tokens per window.
    "mid": {
        "overrides": {
            "num_attention_heads": 8,
            "attention_head_dim": 64,
            "num_layers": 4,
            "ffn_dim": 2048,
            "text_dim": 256,
            "image_dim": 256,
            "added_kv_proj_dim": 512,
            "pose_video_hidden_channels": 16,
            "reference_pose_hidden_channels": 16,
            "ipi_num_frames": 33,
            "ipi_num_latent_frames": 9,
            "ipi_block_start": 1,
            "ipi_block_end": 4,
        },
        "size": 192,
    },
}


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measure(config: str, window_multiple: int, steps: int, output_type: str, cache_threshold: float | None) -> dict:
    """One generation in this process: seconds per step, peak and extra resident memory."""
    import PIL.Image
    import torch

    from animatex_pp.pipelines.pipeline_animatex import AnimateXPipeline
    from animatex_pp.pose.sequence import PoseSequence
    from animatex_pp.testing import tiny_components

    spec = CONFIGS[config]
    pipe = AnimateXPipeline(**tiny_components(seed=0, **spec["overrides"]))
    pipe.set_progress_bar_config(disable=True)
    if cache_threshold is not None:
        from diffusers.hooks import FirstBlockCacheConfig

        pipe.transformer.enable_cache(FirstBlockCacheConfig(threshold=cache_threshold))
    window = pipe.transformer.config.ipi_num_frames
    num_frames = (window - 1) * window_multiple + 1
    size = spec["size"]
    rng = np.random.default_rng(0)
    image = PIL.Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
    pose = synthetic_pose(PoseSequence, num_frames, rng)

    stamps = []
    evaluated = []
    # A block the cache skips is still called but computes nothing: count its feed-forward layer instead.
    for block in pipe.transformer.blocks:
        block.ffn.register_forward_pre_hook(lambda *args: evaluated.append(True))
    transformer_calls = []
    pipe.transformer.register_forward_pre_hook(lambda *args: transformer_calls.append(True))

    def on_step(pipeline, step, timestep, tensors):
        stamps.append(time.perf_counter())
        return {}

    rss_before = _rss_bytes()
    start = time.perf_counter()
    pipe(
        image=image,
        pose=pose,
        prompt="a person is dancing",
        height=size,
        width=size,
        num_frames=num_frames,
        num_inference_steps=steps,
        generator=torch.Generator().manual_seed(0),
        output_type=output_type,
        callback_on_step_end=on_step,
    )
    total = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    intervals = [later - earlier for earlier, later in zip(stamps, stamps[1:], strict=False)]
    return {
        "config": config,
        "frames": num_frames,
        "length": window_multiple,
        # Each window is run twice per step (the two guidance passes).
        "windows": len(transformer_calls) // (2 * steps),
        "seconds_per_step": statistics.mean(intervals) if intervals else total / steps,
        "seconds_total": total,
        "peak_mb": peak / 2**20,
        "extra_mb": (peak - rss_before) / 2**20,
        "blocks_evaluated": len(evaluated),
    }


def synthetic_pose(pose_class, num_frames: int, rng):
    """A swaying stick figure: OpenPose-18 points moving on small circles, all detected."""
    base = rng.uniform(0.3, 0.7, size=(18, 2))
    phase = np.linspace(0, 4 * np.pi, num_frames)[:, None, None]
    # (1, 18, 2) + (F, 1, 2) -> (F, 18, 2): every point sways on the same circle
    body = base[None] + 0.05 * np.concatenate([np.sin(phase), np.cos(phase)], axis=2)
    return pose_class(body.astype(np.float32), np.ones((num_frames, 18), np.float32), width=512, height=512, fps=16)


def run(args: list[str], repeats: int) -> dict:
    """`measure` in `repeats` fresh interpreters: the fastest time (the least disturbed by other processes on a
    shared machine) and the median memory."""
    rows = []
    for _ in range(repeats):
        output = subprocess.run(
            [sys.executable, __file__, "--measure", *args], check=True, capture_output=True, text=True
        ).stdout
        rows.append(json.loads(output.strip().splitlines()[-1]))
    best = min(rows, key=lambda row: row["seconds_per_step"])
    for key in ("peak_mb", "extra_mb"):
        best[key] = statistics.median(row[key] for row in rows)
    return best


def table(title: str, rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    lines = [f"### {title}", "", "| " + " | ".join(name for name, _, _ in columns) + " |"]
    lines.append("|" + "---|" * len(columns))
    for row in rows:
        lines.append("| " + " | ".join(format(row[key], spec) for _, key, spec in columns) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["speed", "memory", "cache"], help="run one part only")
    parser.add_argument("--steps", type=int, default=4, help="denoising steps per generation (default 4)")
    parser.add_argument("--cache-steps", type=int, default=10, help="steps for the cache comparison (default 10)")
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per measurement (default 3)")
    parser.add_argument("--measure", nargs=5, metavar=("CONFIG", "MULTIPLE", "STEPS", "OUTPUT", "CACHE"))
    args = parser.parse_args()

    if args.measure:
        config, multiple, steps, output_type, cache = args.measure
        threshold = None if cache == "none" else float(cache)
        print(json.dumps(measure(config, int(multiple), int(steps), output_type, threshold)))
        return

    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs\n")
    steps = str(args.steps)
    if args.only in (None, "speed"):
        rows = [run([config, "1", steps, "np", "none"], args.repeats) for config in CONFIGS]
        print(
            table(
                "Seconds per step and peak memory, one window",
                rows,
                [
                    ("config", "config", "s"),
                    ("frames", "frames", "d"),
                    ("s/step", "seconds_per_step", ".3f"),
                    ("total s", "seconds_total", ".2f"),
                    ("peak MB", "peak_mb", ".0f"),
                    ("extra MB", "extra_mb", ".0f"),
                ],
            )
        )
    if args.only in (None, "memory"):
        for output_type in ("latent", "np"):
            rows = [run(["mid", str(multiple), "2", output_type, "none"], args.repeats) for multiple in (1, 2, 4)]
            for row in rows:
                row["ratio"] = row["extra_mb"] / rows[0]["extra_mb"]
            label = "denoising only (output_type='latent')" if output_type == "latent" else "with VAE decode"
            print(
                table(
                    f"Peak memory against length, mid config, {label}",
                    rows,
                    [
                        ("length", "length", "d"),
                        ("frames", "frames", "d"),
                        ("windows", "windows", "d"),
                        ("peak MB", "peak_mb", ".0f"),
                        ("extra MB", "extra_mb", ".0f"),
                        ("extra / 1x", "ratio", ".2f"),
                        ("s total", "seconds_total", ".1f"),
                    ],
                )
            )
    if args.only in (None, "cache"):
        cache_steps = str(args.cache_steps)
        rows = [
            {**run(["mid", "1", cache_steps, "latent", cache], args.repeats), "cache": cache}
            for cache in ("none", "0.05")
        ]
        for row in rows:
            row["speedup"] = rows[0]["seconds_per_step"] / row["seconds_per_step"]
        print(
            table(
                "FirstBlockCache (default threshold 0.05), mid config, one window",
                rows,
                [
                    ("cache", "cache", "s"),
                    ("s/step", "seconds_per_step", ".3f"),
                    ("blocks evaluated", "blocks_evaluated", "d"),
                    ("speed-up", "speedup", ".2f"),
                ],
            )
        )


if __name__ == "__main__":
    main()
