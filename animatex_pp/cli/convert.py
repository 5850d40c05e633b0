"""`animatex-pp convert`: a pipeline folder from Wan2.1 I2V weights and a released Animate-X++ checkpoint.

A thin shell over `animatex_pp.pipelines.loading.pipeline_from_wan`: the paths are checked here, before 14B
parameters load.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from animatex_pp.cli.checks import (
    DTYPES,
    _existing_dir,
    _existing_file,
    _positive_float,
    _refuse_inputs,
    _torch_dtype,
    _writable_folder,
)

CONVERT_EPILOG = """\
example:
  animatex-pp convert --base Wan2.1-I2V-14B-720P-Diffusers --checkpoint animate-x++.ckpt \\
      --motion-encoder CLIP-ViT-H-14-laion2B-s32B-b79K --output animatex-720p

The output directory is a complete pipeline (safetensors): AnimateXPipeline.from_pretrained(OUTPUT) and
`animatex-pp generate --model OUTPUT` load it. It is written to a temporary directory beside OUTPUT and renamed
into place when complete. Exit codes: 0 done, 1 conversion failed, 2 bad arguments or files.
"""


# ----------------------------------------------------------------------------- convert


def run_convert(args: argparse.Namespace) -> int:
    # 1. Check the inputs before loading 14B parameters
    base = _existing_dir(
        args.base,
        "a diffusers Wan2.1 I2V directory",
        "model_index.json",
        "Download Wan-AI/Wan2.1-I2V-14B-720P-Diffusers (see docs/quickstart.md).",
    )
    checkpoint_path = _existing_file(
        args.checkpoint, "Animate-X++ checkpoint", {".ckpt", ".pt", ".pth", ".safetensors"}
    )
    motion_dir = None
    if args.motion_encoder:
        motion_dir = _existing_dir(
            args.motion_encoder,
            "a transformers CLIP directory",
            "config.json",
            "Use laion/CLIP-ViT-H-14-laion2B-s32B-b79K (transformers format).",
        )
    output = Path(args.output)
    inputs = {"--base": base, "--checkpoint": checkpoint_path, "--motion-encoder": motion_dir}
    _refuse_inputs(output, "--output", inputs)
    if output.exists() and not args.overwrite:
        raise ValueError(f"{output} exists; pass --overwrite to replace it")
    if not output.parent.exists():
        raise FileNotFoundError(f"the folder for --output does not exist: {output.parent}")
    _writable_folder(output.parent, "--output")
    from animatex_pp.models.weight_files import check_model_folder, check_pipeline_folder

    check_pipeline_folder(base, "--base", "Download it again (see docs/quickstart.md).")
    if motion_dir is not None:
        check_model_folder(motion_dir, "--motion-encoder")

    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler, WanImageToVideoPipeline
    from transformers import CLIPVisionModelWithProjection

    from animatex_pp.io.files import atomic_directory
    from animatex_pp.models.convert import (
        animatex_from_wan,
        convert_animatex_state_dict,
        infer_stream_config,
        load_animatex_checkpoint,
    )
    from animatex_pp.models.presets import split_preset
    from animatex_pp.pipelines.pipeline_animatex import AnimateXPipeline

    state_dict = load_animatex_checkpoint(checkpoint_path)
    converted = convert_animatex_state_dict(state_dict)
    has_ipi = converted.has_ipi
    if has_ipi and motion_dir is None:
        raise ValueError(
            f"{checkpoint_path.name} has an implicit pose indicator, which needs the CLIP it was trained with: pass "
            "--motion-encoder DIR (laion/CLIP-ViT-H-14-laion2B-s32B-b79K in transformers format)"
        )
    # The checkpoint's shapes give the stream sizes; the preset gives only what shapes cannot (head counts, ...).
    inferred = infer_stream_config(converted.streams)
    stream_config = {key: value for key, value in split_preset(args.preset)[1].items() if key not in inferred}

    # 2. Load the base pipeline: the VAE and the CLIPs stay in float32, as Wan recommends
    dtype = _torch_dtype(args.dtype)
    wan = WanImageToVideoPipeline.from_pretrained(
        base, dtype={"vae": torch.float32, "image_encoder": torch.float32, "default": dtype}
    )

    # 3. Apply the release to the transformer; add the motion encoder; the official sampler shift
    transformer = animatex_from_wan(wan.transformer, state_dict, lora=args.lora, **stream_config)
    motion_encoder = None
    if has_ipi:
        motion_encoder = CLIPVisionModelWithProjection.from_pretrained(motion_dir, dtype=torch.float32)
        clip_dim = transformer.config.ipi_clip_dim
        if motion_encoder.config.projection_dim != clip_dim:
            raise ValueError(
                f"the motion encoder projects to {motion_encoder.config.projection_dim} dimensions but the implicit "
                f"pose indicator takes {clip_dim}: use the CLIP the checkpoint was trained with"
            )
    scheduler_class = UniPCMultistepScheduler if args.scheduler == "unipc" else FlowMatchEulerDiscreteScheduler
    shift = {"flow_shift": args.shift} if args.scheduler == "unipc" else {"shift": args.shift}
    if args.scheduler == "unipc":
        scheduler = scheduler_class.from_config(
            wan.scheduler.config, prediction_type="flow_prediction", use_flow_sigmas=True, **shift
        )
    else:
        scheduler = scheduler_class(**shift)

    pipe = AnimateXPipeline(
        tokenizer=wan.tokenizer,
        text_encoder=wan.text_encoder,
        vae=wan.vae,
        scheduler=scheduler,
        transformer=transformer,
        image_processor=wan.image_processor,
        image_encoder=wan.image_encoder,
        motion_encoder=motion_encoder,
    )

    # 4. Save beside the destination, then rename into place
    with atomic_directory(output) as staging:
        pipe.save_pretrained(staging, safe_serialization=True)
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
    convert.add_argument("--shift", type=_positive_float, default=5.0, help="flow shift (official 5)")
    convert.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    convert.set_defaults(handler=run_convert)
