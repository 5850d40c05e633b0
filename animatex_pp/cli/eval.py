"""`animatex-pp eval`: a thin shell over `animatex_pp.eval.evaluate.evaluate`.

Every input is checked there before a model loads; a missing or wrong one is a `FileNotFoundError` or `ValueError`,
which `animatex_pp.cli` prints as one line with exit code 2.
"""

from __future__ import annotations

import argparse

from animatex_pp.cli.checks import DTYPES, non_negative_float, positive_int, random_seed

EVAL_EPILOG = """\
examples:
  # a trained model on SynthX's held-out X characters, with the baselines
  animatex-pp eval --model runs/synthx_tiny/export/pipeline --data synthx/test_x.jsonl --out eval/test_x

  # the stress test: the driving pose as it is (another body's), not retargeted; beside the shipped base
  animatex-pp eval --model runs/synthx_tiny/export/pipeline --data synthx/test_x.jsonl --out eval/test_x_raw \\
      --driving raw --base-model base/pipeline

  # a released model on your own clips (metadata with pose files), 30 steps on a GPU
  animatex-pp eval --model animatex-720p --data my_clips/test.jsonl --out eval/mine --steps 30 --guidance 3 \\
      --device cuda

Writes OUT/metrics.json (per clip and mean, per baseline), OUT/metrics.md, OUT/contact_sheet.png, OUT/videos/ (the
outputs), OUT/clips/ (one result per clip) and OUT/stage.json (the settings: a rerun with the same ones skips the
clips done; other settings are refused).
Under `torchrun --nproc-per-node N -m animatex_pp.cli eval ...` the ranks share the clips out (--device cuda: each
its own GPU) and rank 0 writes the one table.
Exit codes: 0 done, 1 evaluation failed, 2 bad arguments or files.
"""


def run_eval(args: argparse.Namespace) -> int:
    from animatex_pp.eval.evaluate import evaluate
    from animatex_pp.eval.sharding import this_shard

    metrics = evaluate(
        args.model,
        args.data,
        args.out,
        driving=args.driving,
        baselines=not args.no_baselines,
        no_pose=not args.skip_no_pose,
        base_model=args.base_model,
        num_inference_steps=args.steps,
        guidance_scale=args.guidance,
        seed=args.seed,
        device=args.device,
        dtype=args.dtype,
        limit=args.limit,
    )
    if not this_shard().is_main:
        return 0  # under torchrun, rank 0 reports
    summary = metrics["summary"]
    parts = [f"PSNR {summary['psnr']:.2f} dB", f"SSIM {summary['ssim']:.4f}"]
    if summary["character_psnr"] is not None:
        parts.append(f"character PSNR {summary['character_psnr']:.2f} dB")
    if summary["foreground_iou"] is not None:
        parts.append(f"foreground IoU {summary['foreground_iou']:.3f}")
    if summary["copy_reference_psnr"] is not None:
        parts.append(f"copy-the-reference PSNR {summary['copy_reference_psnr']:.2f} dB")
    if summary["no_pose_psnr"] is not None:
        parts.append(f"no-pose PSNR {summary['no_pose_psnr']:.2f} dB")
    if summary["background_motion_accuracy"] is not None:
        parts.append(f"background motion {100 * summary['background_motion_accuracy']:.0f} %")
    print(f"{metrics['split']}, {metrics['mean']['clips']} clips: {', '.join(parts)}")
    print(f"wrote {args.out}/metrics.json, metrics.md, contact_sheet.png")
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="score a pipeline on every clip of a split against its ground truth, with baselines",
        description="Generate every clip of --data with its reference, poses and caption, score the outputs against\n"
        "the clips' videos (PSNR, PSNR*, SSIM, L1, background motion; with SynthX's ground truth the character's\n"
        "PSNR, foreground IoU and spurious share), beside baselines: copying the reference frame (its pixels, and\n"
        "through the VAE), the same model with the pose streams off (mode ti2v), an optional base model, and the\n"
        "VAE's reconstruction of the ground truth (the ceiling).",
        epilog=EVAL_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", required=True, metavar="DIR", help="pipeline directory (convert or train export)")
    parser.add_argument("--data", required=True, metavar="METADATA", help="the split's .jsonl/.csv, e.g. test_x.jsonl")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (an earlier run's resumes)")
    parser.add_argument("--steps", type=positive_int, default=8, help="denoising steps (default 8)")
    parser.add_argument(
        "--guidance", type=non_negative_float, default=1.0, help="classifier-free guidance scale (default 1: off)"
    )
    parser.add_argument("--seed", type=random_seed, default=0, help="the noise seed of every clip (default 0)")
    parser.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:N or mps (default cpu)")
    parser.add_argument(
        "--dtype",
        default="auto",
        choices=("auto", *sorted(DTYPES)),
        help="transformer/text encoder dtype; auto (default): bf16 on a CUDA device that has it natively, else fp32",
    )
    parser.add_argument("--limit", type=positive_int, default=None, help="evaluate only the first N clips")
    parser.add_argument("--no-baselines", action="store_true", help="score the model only, without baselines")
    parser.add_argument(
        "--skip-no-pose",
        action="store_true",
        help="skip the pose-streams-off baseline (a second generation per clip); keep copy-the-reference",
    )
    parser.add_argument(
        "--driving",
        choices=("retargeted", "raw"),
        default="retargeted",
        help="the driving pose retargeted onto each clip's reference pose (default), or raw: the stress test",
    )
    parser.add_argument(
        "--base-model", default=None, metavar="DIR", help="another pipeline run on the same clips (the 'before')"
    )
    parser.set_defaults(handler=run_eval)
