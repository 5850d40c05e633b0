"""`animatex-pp convert`: a pipeline folder from Wan2.1 I2V weights and a released Animate-X++ checkpoint.

A thin shell over `animatex_pp.pipelines.loading.pipeline_from_wan`: the paths are checked here, before 14B
parameters load.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from animatex_pp.cli.checks import (
    DTYPES,
    existing_dir,
    existing_file,
    positive_float,
    refuse_inputs,
    writable_folder,
)

CONVERT_EPILOG = """\
example:
  animatex-pp convert --base Wan2.1-I2V-14B-720P-Diffusers --checkpoint animate-x++.ckpt \\
      --motion-encoder CLIP-ViT-H-14-laion2B-s32B-b79K --output animatex-720p

The output directory is a complete pipeline (safetensors): AnimateXPipeline.from_pretrained(OUTPUT) and
`animatex-pp generate --model OUTPUT` load it. It is written to a temporary directory beside OUTPUT and renamed
into place when complete. Exit codes: 0 done, 1 conversion failed, 2 bad arguments or files.
"""


def run_convert(args: argparse.Namespace) -> int:
    # 1. Check the paths before 14B parameters load (the library checks the folders' weight files)
    base = existing_dir(
        args.base,
        "a diffusers Wan2.1 I2V directory",
        "model_index.json",
        "Download Wan-AI/Wan2.1-I2V-14B-720P-Diffusers (see docs/quickstart.md).",
    )
    checkpoint = existing_file(args.checkpoint, "Animate-X++ checkpoint", {".ckpt", ".pt", ".pth", ".safetensors"})
    motion_encoder = None
    if args.motion_encoder:
        motion_encoder = existing_dir(
            args.motion_encoder,
            "a transformers CLIP directory",
            "config.json",
            "Use laion/CLIP-ViT-H-14-laion2B-s32B-b79K (transformers format).",
        )
    output = Path(args.output)
    refuse_inputs(output, "--output", {"--base": base, "--checkpoint": checkpoint, "--motion-encoder": motion_encoder})
    if output.exists() and not args.overwrite:
        raise ValueError(f"{output} exists; pass --overwrite to replace it")
    if not output.parent.exists():
        raise FileNotFoundError(f"the folder for --output does not exist: {output.parent}; create it first")
    writable_folder(output.parent, "--output")

    from animatex_pp.io.files import atomic_directory
    from animatex_pp.pipelines.loading import pipeline_from_wan

    # 2. Build the pipeline, then save it beside the destination and rename it into place
    pipe = pipeline_from_wan(
        base,
        checkpoint,
        motion_encoder,
        lora=args.lora,
        scheduler=args.scheduler,
        shift=args.shift,
        dtype=args.dtype,
        preset=args.preset,
    )
    with atomic_directory(output) as staging:
        pipe.save_pretrained(staging, safe_serialization=True)
    has_ipi = pipe.motion_encoder is not None
    print(f"wrote {output} (implicit pose indicator: {'yes' if has_ipi else 'no'}, transformer {args.dtype})")
    return 0


def register(subparsers) -> None:
    convert = subparsers.add_parser(
        "convert",
        help="build a pipeline directory from Wan2.1 I2V and a released Animate-X++ checkpoint",
        description="Combine a diffusers-format Wan2.1 I2V model with a released Animate-X++ checkpoint\n"
        "(LoRA merged, pose streams loaded) and a CLIP motion encoder into one AnimateXPipeline directory.",
        epilog=CONVERT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    convert.add_argument("--base", required=True, metavar="DIR", help="diffusers Wan2.1 I2V directory")
    convert.add_argument("--checkpoint", required=True, metavar="PATH", help="animate-x++.ckpt or _simple.ckpt")
    convert.add_argument(
        "--motion-encoder", metavar="DIR", help="transformers CLIPVisionModelWithProjection for the IPI (ViT-H/14)"
    )
    convert.add_argument("--output", required=True, metavar="DIR", help="pipeline directory to write")
    convert.add_argument(
        "--preset",
        default="wan2.1-i2v-14b-720p",
        help="model preset whose stream sizes the checkpoint has (default: the released sizes)",
    )
    convert.add_argument("--dtype", default="bf16", choices=sorted(DTYPES), help="transformer/text encoder dtype")
    convert.add_argument("--lora", default="merge", choices=["merge", "adapter"], help="merge the LoRA (default)")
    convert.add_argument("--scheduler", default="unipc", choices=["unipc", "euler"], help="flow-matching sampler")
    convert.add_argument("--shift", type=positive_float, default=5.0, help="flow shift (official 5)")
    convert.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    convert.set_defaults(handler=run_convert)
