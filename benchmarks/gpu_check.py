"""One command that shows the library works on this machine's NVIDIA GPUs: random weights, nothing downloaded, one
table of pass/fail and numbers, about 5 minutes on one 80 GB GPU.

    python benchmarks/gpu_check.py                 # every check
    python benchmarks/gpu_check.py --skip 14b      # leave out the 14B DiT step (its bf16 weights alone are 28 GB)
    python benchmarks/gpu_check.py --peak-tflops 989   # the card's dense bf16 peak, for an unlisted card

Checks (docs/benchmarks.md says what each row means):

  * pipeline: the tiny and a mid-size pipeline, loaded through `load_pipeline` in bf16, generate with PyTorch SDPA
    and with flash-attn when diffusers can use it; their latents agree.
  * train: the SynthX recipe for a few steps on one GPU through NCCL at ZeRO-0, 2 and 3 (bf16 where the card has it
    natively): finite losses, ZeRO-2 and 3 equal to ZeRO-0 within bf16 tolerance; a run stopped at a checkpoint
    and resumed equals the uninterrupted one; the export loads and generates.
  * context parallel: `animatex-pp generate` under torchrun on every GPU present equals one process.
  * 14B DiT: the 480p preset built on the GPU in bf16, one denoising step at 480p x 81 frames: seconds, peak
    memory, and the model FLOPs utilisation against the card's peak.

Every check runs in its own subprocess (a crash is a failed row, not a lost table; peak memory is the check's own).
Exit code 0: every row passed; 1: a row failed; 2: no CUDA device (one line says so).

`--rehearse-on-cpu` runs the same code on the CPU at tiny sizes (gloo instead of NCCL, fp32, a tiny DiT in place of
the 14B one): what the test suite uses to keep this script working on a machine without a GPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.pipeline import CONFIGS as PIPELINE_BENCHMARK_CONFIGS  # noqa: E402

# Dense bf16 tensor-core peaks (TFLOP/s, no sparsity) from NVIDIA's data sheets, matched against
# `torch.cuda.get_device_name()`, most specific first.
CARD_PEAK_TFLOPS = (
    ("B200", 2250.0),
    ("H100 PCIe", 756.0),
    ("H100", 989.0),
    ("H200", 989.0),
    ("H800", 989.0),
    ("GH200", 989.0),
    ("A100", 312.0),
    ("A800", 312.0),
    ("L40S", 362.0),
    ("L40", 181.0),
    ("RTX 6000 Ada", 364.0),
    ("A6000", 155.0),
    ("A40", 150.0),
    ("4090", 165.0),
    ("A10G", 70.0),
    ("A10", 125.0),
    ("L4", 121.0),
)

# benchmarks/pipeline.py's sizes, each one IPI window long: the tiny test pipeline (width 32, 32 x 32) and the mid
# size (width 512, 8 heads x 64, 4 blocks, 192 x 192: 1296 tokens per latent frame)
PIPELINE_CONFIGS = {
    "tiny": {**PIPELINE_BENCHMARK_CONFIGS["tiny"], "frames": 9},
    "mid": {**PIPELINE_BENCHMARK_CONFIGS["mid"], "frames": 33},
}
PIPELINE_STEPS = 4
# bf16 keeps 8 bits of mantissa: two attention kernels summing in different orders differ by a few 1e-3 per call,
# and four denoising steps of a random model compound it
BACKEND_AGREEMENT = 0.05
LOSS_AGREEMENT = 0.02  # relative, between ZeRO stages and between a resumed and a whole run in bf16
TRAIN_STEPS = 4
CONTEXT_PARALLEL_PSNR = 40.0  # dB: bf16 rounding in another summation order and x264 can differ by a few levels
DIT_SHAPE = {"frames": 81, "height": 832, "width": 480}  # 480p portrait, the Animate-X++ default


@dataclasses.dataclass
class Row:
    check: str
    passed: bool
    numbers: str


class Machine:
    """Where the checks run: CUDA (the real check) or the CPU rehearsal."""

    def __init__(self, rehearse_on_cpu: bool):
        import torch

        self.rehearsal = rehearse_on_cpu
        self.device = "cpu" if rehearse_on_cpu else "cuda"
        # the CPU runs bf16 too (slowly), so the rehearsal takes the GPU's loading and casting paths
        self.dtype = "bf16" if rehearse_on_cpu or torch.cuda.is_bf16_supported(False) else "fp16"
        self.gpus = 0 if rehearse_on_cpu else torch.cuda.device_count()
        self.name = "CPU rehearsal" if rehearse_on_cpu else torch.cuda.get_device_name(0)


# ---------------------------------------------------------------------------------------------------- subprocesses


def run_worker(name: str, spec: dict, env: dict | None = None, timeout: float = 900) -> dict:
    """`python gpu_check.py --worker NAME SPEC` in a fresh interpreter: the JSON its last line prints, or the error."""
    command = [sys.executable, __file__, "--worker", name, json.dumps(spec)]
    return run_json(command, env, timeout)


def run_json(command: list[str], env: dict | None, timeout: float) -> dict:
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, cwd=REPO, env={**os.environ, **(env or {})}
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    if done.returncode != 0:
        return {"error": _last_error_line(done.stderr) or f"exit code {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_command(command: list[str], timeout: float = 900) -> str | None:
    """Run a command of the library; None when it succeeded, else its last error line."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=REPO)
    except subprocess.TimeoutExpired:
        return f"timed out after {timeout:.0f} s"
    return None if done.returncode == 0 else (_last_error_line(done.stderr) or f"exit code {done.returncode}")


def _last_error_line(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if "Error" in line or "error" in line]
    return (errors or lines or [""])[-1][:300]


def peak_memory_gib(device: str) -> float:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def synchronize(device: str) -> None:
    """CUDA runs asynchronously: a host clock read without this measures kernel launches, not the work."""
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


# ---------------------------------------------------------------------------------------------------- pipeline


def pipeline_worker(spec: dict) -> dict:
    """Generate from a saved tiny-family pipeline with the attention backend of this process's environment."""
    import numpy as np
    import PIL.Image
    import torch
    from safetensors.torch import save_file

    from animatex_pp.pipelines.loading import load_pipeline
    from animatex_pp.pose.sequence import PoseSequence

    pipe = load_pipeline(spec["folder"], dtype=spec["dtype"]).to(spec["device"])
    pipe.set_progress_bar_config(disable=True)
    size, frames = spec["size"], spec["frames"]
    rng = np.random.default_rng(0)
    image = PIL.Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
    points = rng.uniform(0.3, 0.7, size=(frames, 18, 2)).astype(np.float32)
    pose = PoseSequence(points, np.ones((frames, 18), np.float32), width=size, height=size, fps=16)
    stamps = []

    def on_step(pipeline, step, timestep, tensors):
        synchronize(spec["device"])
        stamps.append(time.perf_counter())
        return {}

    with torch.no_grad():
        latents = pipe(
            image=image,
            pose=pose,
            reference_pose=pose[0],
            prompt="a character dances",
            height=size,
            width=size,
            num_frames=frames,
            num_inference_steps=PIPELINE_STEPS,
            generator=torch.Generator().manual_seed(0),
            output_type="latent",
            callback_on_step_end=on_step,
        ).frames
    latents = latents.float().cpu()
    save_file({"latents": latents.contiguous()}, spec["output"])
    intervals = np.diff(stamps)
    # what the attention processors ran with, not what was asked for
    backends = {
        getattr(processor, "_attention_backend", None) for processor in pipe.transformer.attn_processors.values()
    }
    return {
        "finite": bool(torch.isfinite(latents).all()),
        "seconds_per_step": float(intervals.mean()) if len(intervals) else float("nan"),
        "peak_gib": peak_memory_gib(spec["device"]),
        "backends": sorted(str(getattr(backend, "value", backend)) for backend in backends),
    }


def check_pipelines(machine: Machine, work: Path) -> list[Row]:
    from diffusers.models import attention_dispatch
    from safetensors.torch import load_file

    from animatex_pp.pipelines.pipeline_animatex import AnimateXPipeline
    from animatex_pp.testing import tiny_components

    backends = ["native"] + (["flash"] if attention_dispatch._CAN_USE_FLASH_ATTN and not machine.rehearsal else [])
    configs = ["tiny"] if machine.rehearsal else list(PIPELINE_CONFIGS)
    rows = []
    for config in configs:
        spec = PIPELINE_CONFIGS[config]
        folder = work / f"pipeline-{config}"
        AnimateXPipeline(**tiny_components(seed=0, **spec["overrides"])).save_pretrained(folder)
        results = {}
        for backend in backends:
            output = work / f"latents-{config}-{backend}.safetensors"
            job = {"folder": str(folder), "dtype": machine.dtype, "device": machine.device, "output": str(output),
                   "size": spec["size"], "frames": spec["frames"]}  # fmt: skip
            result = run_worker("pipeline", job, env={"ANIMATEX_ATTENTION_BACKEND": backend})
            if "error" in result:
                rows.append(Row(f"pipeline {config}, {backend}", False, result["error"]))
                continue
            results[backend] = (result, load_file(output)["latents"])
            used = ", ".join(result["backends"])
            numbers = (f"{result['seconds_per_step']:.3f} s/step, peak {result['peak_gib']:.2f} GiB, "
                       f"{machine.dtype}, attention ran on {used}")  # fmt: skip
            ran_as_asked = all(backend in name for name in result["backends"])
            rows.append(Row(f"pipeline {config}, {backend}", result["finite"] and ran_as_asked, numbers))
        if len(results) == 2:
            sdpa, flash = results["native"][1], results["flash"][1]
            error = float((flash - sdpa).norm() / sdpa.norm())
            rows.append(Row(f"pipeline {config}, flash = SDPA", error <= BACKEND_AGREEMENT,
                            f"relative difference {error:.2e} (<= {BACKEND_AGREEMENT})"))  # fmt: skip
        elif not machine.rehearsal:
            rows.append(Row(f"pipeline {config}, flash-attn", True, "not installed or not usable: SDPA only"))
    return rows


# ---------------------------------------------------------------------------------------------------- training


def train_command(machine: Machine, work: Path, run: str, *extra: str) -> list[str]:
    """`animatex-pp train recipe=synthx_tiny`, shrunk to a few steps on a small SynthX build."""
    return [
        sys.executable, "-m", "animatex_pp.cli", "train", "recipe=synthx_tiny",
        f"data.prepare.folder={work / 'synthx'}", "data.prepare.train=8", "data.prepare.test=2",
        "data.batch_size=2", "data.num_workers=0", "validation=none", "logger=none",
        "optim.scheduler=constant", "optim.warmup_steps=0",  # the same rate at every step: resumable at any step
        f"deepspeed.bf16={str(machine.dtype == 'bf16').lower()}",
        f"trainer.max_steps={TRAIN_STEPS}", "trainer.checkpoint_every=2", "trainer.log_every=1",
        f"run_dir={work / run}", f"hydra.run.dir={work / run}", *extra,
    ]  # fmt: skip


def read_losses(run_dir: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run_dir / "losses.jsonl").read_text().splitlines()]


def largest_relative_difference(losses: list[float], reference: list[float]) -> float:
    return max(abs(a - b) / max(abs(b), 1e-12) for a, b in zip(losses, reference, strict=True))


def check_training(machine: Machine, work: Path) -> list[Row]:
    import math

    rows = []
    curves = {}
    for stage in ("zero0", "zero2", "zero3"):
        start = time.perf_counter()
        error = run_command(train_command(machine, work, stage, f"deepspeed={stage}",
                                          f"trainer.export.enabled={stage == 'zero2'}"))  # fmt: skip
        seconds = time.perf_counter() - start
        if error:
            rows.append(Row(f"train {stage}", False, error))
            continue
        curves[stage] = read_losses(work / stage)
        finite = len(curves[stage]) == TRAIN_STEPS and all(math.isfinite(loss) for loss in curves[stage])
        numbers = f"{TRAIN_STEPS} steps in {seconds:.0f} s (process included), last loss {curves[stage][-1]:.4f}"
        rows.append(Row(f"train {stage}", finite, numbers))
    for stage in ("zero2", "zero3"):
        if stage in curves and "zero0" in curves:
            difference = largest_relative_difference(curves[stage], curves["zero0"])
            rows.append(Row(f"train {stage} = zero0", difference <= LOSS_AGREEMENT,
                            f"largest relative loss difference {difference:.2e} (<= {LOSS_AGREEMENT})"))  # fmt: skip
    if "zero2" in curves:
        rows.append(resume_row(machine, work, curves["zero2"]))
        rows.append(export_row(machine, work / "zero2" / "export" / "pipeline"))
    return rows


def resume_row(machine: Machine, work: Path, whole: list[float]) -> Row:
    """Stop a ZeRO-2 run at its step-2 checkpoint (it ends there), resume it to the end: the whole run's losses."""
    first = run_command(train_command(machine, work, "resumed", "deepspeed=zero2", "trainer.max_steps=2",
                                      "trainer.export.enabled=false"))  # fmt: skip
    second = first or run_command(train_command(machine, work, "resumed", "deepspeed=zero2", "resume=auto",
                                                "trainer.export.enabled=false"))  # fmt: skip
    if second:
        return Row("train resume", False, second)
    resumed = read_losses(work / "resumed")
    if len(resumed) != len(whole):
        return Row("train resume", False, f"{len(resumed)} logged steps, the whole run has {len(whole)}")
    difference = largest_relative_difference(resumed, whole)
    exact = "bit-identical" if resumed == whole else f"largest relative difference {difference:.2e}"
    return Row("train resume", difference <= LOSS_AGREEMENT, f"2 + {TRAIN_STEPS - 2} steps vs {TRAIN_STEPS}: {exact}")


def export_worker(spec: dict) -> dict:
    """Load an exported pipeline folder and generate one short video from it."""
    import numpy as np
    import PIL.Image
    import torch

    from animatex_pp.pipelines.loading import load_pipeline

    pipe = load_pipeline(spec["folder"], dtype=spec["dtype"]).to(spec["device"])
    pipe.set_progress_bar_config(disable=True)
    image = PIL.Image.fromarray(np.full((64, 64, 3), 128, np.uint8))
    generator = torch.Generator().manual_seed(0)
    video = pipe(image=image, prompt="a character", mode="ti2v", height=64, width=64, num_frames=5,
                 num_inference_steps=2, generator=generator, output_type="np").frames  # fmt: skip
    return {"finite": bool(np.isfinite(video).all()), "shape": list(np.shape(video))}


def export_row(machine: Machine, folder: Path) -> Row:
    result = run_worker("export", {"folder": str(folder), "dtype": machine.dtype, "device": machine.device})
    if "error" in result:
        return Row("train export", False, result["error"])
    return Row("train export", result["finite"], f"loaded and generated {tuple(result['shape'])} from {folder.name}/")


# ---------------------------------------------------------------------------------------------------- context parallel


def check_context_parallel(machine: Machine, work: Path) -> list[Row]:
    """`animatex-pp generate` on one process and under torchrun on every GPU (2 CPU processes in rehearsal)."""
    import numpy as np

    from animatex_pp.eval.metrics import psnr
    from animatex_pp.io.video import read_video
    from animatex_pp.testing import tiny_pipeline

    processes = 2 if machine.rehearsal else machine.gpus
    if processes < 2:
        return [Row("context parallel", True, f"{processes} GPU here: needs 2 or more, not run")]
    folder = work / "pipeline-cp"
    tiny_pipeline(seed=0).save_pretrained(folder)
    image = work / "reference.png"
    _write_reference(image)
    common = ["generate", "--model", str(folder), "--image", str(image), "--mode", "ti2v", "--prompt", "waves",
              "--size", "32x32", "--frames", "17", "--steps", "2", "--device", machine.device, "--dtype",
              machine.dtype, "--no-preview"]  # fmt: skip
    single, parallel = work / "single.mp4", work / "parallel.mp4"
    error = run_command([sys.executable, "-m", "animatex_pp.cli", *common, "--output", str(single)])
    start = time.perf_counter()
    error = error or run_command(["torchrun", f"--nproc-per-node={processes}", "-m", "animatex_pp.cli", *common,
                                  "--context-parallel", "ulysses", "--output", str(parallel)])  # fmt: skip
    seconds = time.perf_counter() - start
    if error:
        return [Row(f"context parallel x{processes}", False, error)]
    one, many = read_video(single)[0].astype(np.float64), read_video(parallel)[0].astype(np.float64)
    # In bf16 the split sums attention in another order than one process does; the videos agree to bf16 precision.
    agreement = float(psnr(many / 255.0, one / 255.0))
    numbers = (f"Ulysses over {processes} processes: PSNR {agreement:.1f} dB against one process "
               f"(>= {CONTEXT_PARALLEL_PSNR:.0f}), largest pixel difference {int(np.abs(many - one).max())}, "
               f"{seconds:.0f} s")  # fmt: skip
    return [Row(f"context parallel x{processes}", agreement >= CONTEXT_PARALLEL_PSNR, numbers)]


def _write_reference(path: Path) -> None:
    import numpy as np
    import PIL.Image

    gradient = np.linspace(0, 255, 32).astype(np.uint8)
    rows, columns = np.meshgrid(gradient, gradient, indexing="ij")
    PIL.Image.fromarray(np.stack([rows, columns, np.full_like(rows, 128)], axis=-1)).save(path)


# ---------------------------------------------------------------------------------------------------- 14B DiT


def dit_worker(spec: dict) -> dict:
    """One denoising step of a randomly initialised DiT built on the device in bf16."""
    import torch

    from animatex_pp.models.transformer import AnimateXTransformer3DModel
    from benchmarks.transformer_overhead import make_inputs

    device, dtype = torch.device(spec["device"]), getattr(torch, spec["torch_dtype"])
    default_dtype = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # built in bf16 straight away: 14B fp32 weights alone would fill 56 GB
    try:
        with torch.device(device):
            model = AnimateXTransformer3DModel.from_preset(spec["preset"]).eval()
            frames, height, width = spec["frames"], spec["height"], spec["width"]
            latent_frames = (frames - 1) // 4 + 1
            config = model.config
            base, streams = make_inputs(1, latent_frames, 0, config.text_dim, config.image_dim,
                                        config.ipi_clip_dim, device=device)  # fmt: skip
            base["hidden_states"] = torch.randn(1, config.in_channels, latent_frames, height // 8, width // 8)
            streams["pose_video"] = torch.rand(1, 3, frames, height, width)
            streams["reference_pose"] = torch.rand(1, 3, height, width)
    finally:
        torch.set_default_dtype(default_dtype)
    with torch.no_grad():
        conditions = model.encode_pose_conditions(**streams)
        model(**base, pose_conditions=conditions)  # warm-up: kernels chosen, memory pools filled
        synchronize(spec["device"])
        timings = []
        for _ in range(spec["repeats"]):
            start = time.perf_counter()
            # a guided denoising step is two transformer calls (with and without the text)
            model(**base, pose_conditions=conditions)
            model(**base, pose_conditions=conditions)
            synchronize(spec["device"])
            timings.append(time.perf_counter() - start)
    return {"seconds_per_step": min(timings), "peak_gib": peak_memory_gib(spec["device"]),
            "tokens": latent_frames * (height // 16) * (width // 16)}  # fmt: skip


def dit_forward_tflops(preset: str, frames: int, height: int, width: int) -> float:
    """FLOPs of one transformer call (pose conditions given), counted on the meta device by torch."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from animatex_pp.models.transformer import AnimateXTransformer3DModel
    from benchmarks.transformer_overhead import make_inputs

    with torch.device("meta"):
        model = AnimateXTransformer3DModel.from_preset(preset)
        config = model.config
        latent_frames = (frames - 1) // 4 + 1
        base, streams = make_inputs(1, latent_frames, 0, config.text_dim, config.image_dim, config.ipi_clip_dim,
                                    device="meta")  # fmt: skip
        base["hidden_states"] = torch.empty(1, config.in_channels, latent_frames, height // 8, width // 8)
        streams["pose_video"] = torch.empty(1, 3, frames, height, width)
        streams["reference_pose"] = torch.empty(1, 3, height, width)
        with torch.no_grad():
            conditions = model.encode_pose_conditions(**streams)
            counter = FlopCounterMode(display=False)
            with counter:
                model(**base, pose_conditions=conditions)
    return counter.get_total_flops() / 1e12


def card_peak_tflops(name: str, given: float | None) -> float | None:
    if given is not None:
        return given
    return next((peak for key, peak in CARD_PEAK_TFLOPS if key in name), None)


def check_dit(machine: Machine, peak_tflops: float | None) -> list[Row]:
    if machine.rehearsal:
        preset, shape, label = "tiny", {"frames": 9, "height": 32, "width": 32}, "tiny DiT (rehearsal)"
    else:
        preset, shape, label = "wan2.1-i2v-14b-480p", DIT_SHAPE, "14B DiT, 480p x 81"
    spec = {"device": machine.device, "torch_dtype": "bfloat16",
            "preset": preset, "repeats": 2, **shape}  # fmt: skip
    result = run_worker("dit", spec, timeout=1200)
    if "error" in result:
        return [Row(label, False, result["error"])]
    tflops = 2 * dit_forward_tflops(preset, **shape)
    achieved = tflops / result["seconds_per_step"]
    peak = card_peak_tflops(machine.name, peak_tflops)
    utilisation = f"MFU {achieved / peak:.1%} of {peak:.0f}" if peak else "MFU n/a (card peak unknown: --peak-tflops)"
    numbers = (f"{result['seconds_per_step']:.2f} s/step (2 calls, {result['tokens']} tokens), "
               f"peak {result['peak_gib']:.1f} GiB, {achieved:.0f} TFLOP/s, {utilisation}")  # fmt: skip
    return [Row(label, True, numbers)]


# ---------------------------------------------------------------------------------------------------- main

CHECKS = ("pipeline", "train", "cp", "14b")
WORKERS = {"pipeline": pipeline_worker, "export": export_worker, "dit": dit_worker}


def print_table(machine: Machine, rows: list[Row]) -> None:
    import torch

    print(f"{machine.name}, torch {torch.__version__}, {max(machine.gpus, 1)} device(s), {machine.dtype}\n")
    width = max(len(row.check) for row in rows)
    print(f"| {'check':<{width}} | result | numbers |")
    print(f"|{'-' * (width + 2)}|--------|---------|")
    for row in rows:
        print(f"| {row.check:<{width}} | {'pass' if row.passed else 'FAIL':<6} | {row.numbers} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip", nargs="+", choices=CHECKS, default=[], help="checks to leave out")
    parser.add_argument("--peak-tflops", type=float, help="the card's dense bf16 peak (default: from its name)")
    parser.add_argument("--rehearse-on-cpu", action="store_true", help="the same checks at tiny sizes on the CPU")
    parser.add_argument("--worker", nargs=2, metavar=("NAME", "SPEC"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    import huggingface_hub
    from diffusers.utils import logging as diffusers_logging

    from animatex_pp.logs import quiet_third_party_logs

    quiet_third_party_logs()
    diffusers_logging.disable_progress_bar()
    huggingface_hub.utils.disable_progress_bars()  # transformers' "Writing model shards" bars
    if args.worker:
        name, spec = args.worker
        print(json.dumps(WORKERS[name](json.loads(spec))))
        return 0
    import torch

    if not torch.cuda.is_available() and not args.rehearse_on_cpu:
        print(f"gpu_check: no CUDA device on this machine (torch {torch.__version__}): run it where an NVIDIA GPU is")
        return 2
    machine = Machine(args.rehearse_on_cpu)
    rows = []
    with tempfile.TemporaryDirectory(prefix="gpu_check-") as work:
        work = Path(work)
        if "pipeline" not in args.skip:
            rows += check_pipelines(machine, work)
        if "train" not in args.skip:
            rows += check_training(machine, work)
        if "cp" not in args.skip:
            rows += check_context_parallel(machine, work)
        if "14b" not in args.skip:
            rows += check_dit(machine, args.peak_tflops)
    print_table(machine, rows)
    return 0 if all(row.passed for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
