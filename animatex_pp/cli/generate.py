"""`animatex-pp generate`: a thin shell over `AnimateXPipeline`.

Every argument and file is checked before a model is loaded or a pose extractor runs: numbers and sizes, the device,
frame counts against every input (by the pipeline's own frame plan, from the model's configs), output paths (never
a directory, an unwritable folder or one of the inputs), and model folders whose weight files are missing or cut
short. A missing file is a `FileNotFoundError` and a wrong one a `ValueError`, which `animatex_pp.cli` turns into
exit code 2 with the message; messages name the option. Sizes are height x width everywhere, as `--size` takes them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from animatex_pp.cli.checks import (
    DTYPES,
    POSE_SUFFIXES,
    VIDEO_SUFFIXES,
    add_pose_backend_arguments,
    check_device,
    existing_dir,
    existing_file,
    height_width,
    integer,
    non_negative_float,
    open_image,
    output_path,
    pose_backend_options,
    positive_float,
    positive_int,
    random_seed,
    torch_dtype,
)
from animatex_pp.io.video import DEFAULT_FPS, IMAGE_SUFFIXES
from animatex_pp.pipelines.geometry import PipelineGeometry

EMPTY_SKELETON_LEVEL = 32  # a rendered skeleton video or image darker than this everywhere has nothing drawn
MODEL_HINT = "Rebuild it with `animatex-pp convert` or copy it again."

GENERATE_EPILOG = """\
examples:
  # animate a character with a driving video (its poses are extracted with MediaPipe)
  animatex-pp generate --model animatex-720p --image girl.png --driving-video dance.mp4 \\
      --prompt "a girl is dancing, flames burning in the background" --output girl_dance.mp4

  # a saved pose sequence and a reference skeleton, 1 window of 81 frames, 30 steps
  animatex-pp generate --model animatex-720p --image cat.png --pose dance.pose.npz \\
      --reference-pose cat.pose.npz --frames 81 --steps 30 --output cat_dance.mp4

  # poses extracted with DWPose (the extractor of the released weights' training data)
  animatex-pp generate --model animatex-720p --image girl.png --driving-video dance.mp4 \\
      --pose-backend dwpose --dwpose-dir weights/dwpose --output girl_dance.mp4

  # text-image-to-video: no pose, the prompt drives the motion
  animatex-pp generate --model animatex-720p --image city.png --mode ti2v \\
      --prompt "the camera flies over the city at night" --output city.mp4

  # one video on 4 GPUs: each window's tokens split 4 ways (Ulysses attention); the first process writes
  torchrun --nproc-per-node 4 -m animatex_pp.cli generate --model animatex-720p --image girl.png \\
      --driving-video dance.mp4 --device cuda --context-parallel ulysses --output girl_dance.mp4

Writes OUTPUT (H.264 MP4) and, unless --no-preview, OUTPUT with suffix .preview.png: a contact sheet of the
reference, the poses and the generated frames. Exit codes: 0 done, 1 generation failed, 2 bad arguments or files.
"""

# ----------------------------------------------------------------------------- generate


def _input_length(path: Path, stride: int) -> int | None:
    """Frames a pose file or video gives at `stride`, from its header (None when a video does not state it)."""
    from animatex_pp.io.video import count_selected, video_info
    from animatex_pp.pose.sequence import PoseSequence

    if path.suffix.lower() in VIDEO_SUFFIXES:
        info = video_info(path)
        return count_selected(info.num_frames, info.fps, None, stride, 0, None) if info.num_frames else None
    return len(PoseSequence.load(path)[::stride])


def _plan_frames(args: argparse.Namespace, inputs: dict[str, Path | None], geometry: PipelineGeometry):
    """The pipeline's own frame plan (`animatex_pp.pipelines.windowing.plan_frames`) for these options, from the
    model's configs and the inputs' headers: an impossible --frames or --window-overlap is refused naming it.
    Returns the frame count to ask for and the plan, both None when an input's length is not known yet."""
    from animatex_pp.pipelines.windowing import FrameArguments, plan_frames

    lengths = {}
    if args.mode == "animation":
        at_stride = f" at --stride {args.stride}" if args.stride > 1 else ""
        for option in ("--pose", "--driving-video"):
            if inputs[option] is not None and (length := _input_length(inputs[option], args.stride)) is not None:
                lengths[option + at_stride] = length
    # The IPI runs on keypoints: a pose file, or poses extracted from the driving video (not a rendered pose video).
    pose_path = inputs["--pose"]
    keypoints = args.mode == "animation" and (pose_path is None or pose_path.suffix.lower() not in VIDEO_SUFFIXES)
    names = FrameArguments(num_frames="--frames", window_overlap="--window-overlap")
    ipi_frames = geometry.ipi_frames if keypoints else None
    plan = plan_frames(
        args.frames, lengths, geometry.factors, ipi_frames, window_overlap=args.window_overlap, names=names
    )
    if plan.note is not None:
        print(plan.note)
    # Without a known input length the pipeline sets the default from the poses it is given.
    return (plan.num_frames, plan) if lengths or args.frames is not None else (None, None)


def _load_pose_or_video(path: Path, stride: int):
    """A saved PoseSequence, or a rendered pose video as uint8 frames, every `stride`-th frame; (pose, fps or None)."""
    from animatex_pp.io.video import read_video
    from animatex_pp.pose.sequence import PoseSequence

    if path.suffix.lower() in VIDEO_SUFFIXES:
        return read_video(path, stride=stride)
    pose = PoseSequence.load(path)[::stride]  # slicing with a step divides the sequence's fps too
    return pose, pose.fps


def _refuse_empty_poses(pose, pose_source: Path, reference_pose, reference_source: Path) -> None:
    """A ValueError when the driving poses show nobody in any frame, or the reference skeleton shows no body (keypoints
    with no detected point, or frames with nothing drawn on black)."""
    import numpy as np

    from animatex_pp.pose.report import HAND_MADE_HINT, has_body
    from animatex_pp.pose.sequence import PoseSequence

    def empty(value) -> bool:
        if isinstance(value, PoseSequence):
            return not has_body(value)
        return value is not None and np.asarray(value).max() < EMPTY_SKELETON_LEVEL

    opt_out = "(--allow-empty-pose generates anyway)"
    if empty(pose):
        raise ValueError(f"the driving poses from {pose_source} show nobody in any frame: give a video or pose file "
                         f"of a person {opt_out}")  # fmt: skip
    if empty(reference_pose if not isinstance(reference_pose, PoseSequence) else reference_pose[0]):
        raise ValueError(f"the reference skeleton from {reference_source} shows no body: give it with "
                         f"--reference-pose FILE (.json/.npz pose file or skeleton image); {HAND_MADE_HINT}; or "
                         f"--reference-pose none {opt_out}")  # fmt: skip


def run_generate(args: argparse.Namespace) -> int:
    # 1. Check every argument and file before a model loads or a pose extractor runs
    model_dir = existing_dir(
        args.model, "a pipeline directory", "model_index.json", "Make one with `animatex-pp convert`."
    )
    image_path = existing_file(args.image, "reference image", IMAGE_SUFFIXES)
    pose_path = existing_file(args.pose, "pose file") if args.pose else None
    driving_path = existing_file(args.driving_video, "driving video", VIDEO_SUFFIXES) if args.driving_video else None
    extract_reference = args.mode == "animation" and args.reference_pose == "auto"
    reference_pose_path = None
    if args.reference_pose not in ("auto", "none"):
        reference_pose_path = existing_file(args.reference_pose, "--reference-pose", POSE_SUFFIXES | IMAGE_SUFFIXES)
    inputs = {"--image": image_path, "--pose": pose_path, "--driving-video": driving_path}
    inputs["--reference-pose"] = reference_pose_path
    output = output_path(args.output, {".mp4"}, "--output", inputs)
    preview = None
    if not args.no_preview:
        preview = output_path(output.with_suffix(".preview.png"), {".png"}, "--output", inputs)
    if args.preview_video:
        output_path(output.with_suffix(".preview.mp4"), {".mp4"}, "--output", inputs)
    if args.mode == "animation" and pose_path is None and driving_path is None:
        raise ValueError(
            "--mode animation needs --pose or --driving-video (or use --mode ti2v for text-driven motion)"
        )
    if args.mode == "ti2v" and (pose_path or driving_path or reference_pose_path or args.retarget):
        raise ValueError("--mode ti2v takes no --pose, --driving-video, --reference-pose or --retarget")
    if args.retarget and (
        args.reference_pose == "none" or (reference_pose_path and reference_pose_path.suffix.lower() in IMAGE_SUFFIXES)
    ):
        raise ValueError("--retarget needs the reference skeleton's keypoints: --reference-pose auto or a pose file")
    if args.retarget and pose_path is not None and pose_path.suffix.lower() in VIDEO_SUFFIXES:
        raise ValueError("--retarget needs keypoints to move: give --pose as a pose file, not a rendered video")
    if args.keep_missing_parts and not args.retarget:
        raise ValueError("--keep-missing-parts applies to retargeting: add --retarget")
    backend_options = pose_backend_options(args)

    from animatex_pp.models.weight_files import check_pipeline_folder
    from animatex_pp.pipelines.loading import load_pipeline, read_pipeline_geometry

    # The model folder's weight files are whole, and its configs fix the sizes and frame counts it takes.
    check_pipeline_folder(model_dir, "--model", MODEL_HINT)
    geometry = read_pipeline_geometry(model_dir)
    height, width = args.size
    if height % geometry.size_multiple or width % geometry.size_multiple:
        raise ValueError(
            f"--size {height}x{width}: height and width must each be a multiple of {geometry.size_multiple}"
        )
    num_frames, plan = _plan_frames(args, inputs, geometry)
    check_device(args.device)
    device = args.device
    if args.context_parallel:
        from animatex_pp.pipelines.parallel import (
            check_folder_context_parallel,
            check_window_tokens,
            process_device,
        )

        if args.cpu_offload or args.cache_threshold is not None:
            raise ValueError(
                "--context-parallel runs the whole transformer on every process's device and every block on each: "
                "drop --cpu-offload and --cache-threshold"
            )
        device = process_device(args.device)
        degree = check_folder_context_parallel(model_dir, args.context_parallel, device, torch_dtype(args.dtype))
        if plan is not None:
            latent_height, latent_width = geometry.factors.latent_size(height, width)
            patch = (1, geometry.patch_size, geometry.patch_size)
            check_window_tokens(degree, plan.windows[0].length, latent_height, latent_width, patch)

    import numpy as np
    import torch

    from animatex_pp.io.preview import write_contact_sheet, write_preview_video
    from animatex_pp.io.video import read_video, write_video
    from animatex_pp.pipelines.conditioning import read_reference_pose
    from animatex_pp.pipelines.pipeline_animatex import OFFICIAL_NEGATIVE_PROMPT
    from animatex_pp.pose import extract, retarget

    # 2. Read the inputs
    image = open_image(image_path, "--image")
    pose, driving_video, reference_pose, fps = None, None, None, None
    if pose_path is not None:
        pose, fps = _load_pose_or_video(pose_path, args.stride)
    if driving_path is not None:
        driving_video, driving_fps = read_video(driving_path, stride=args.stride)
        fps = fps or driving_fps
        if pose is None:
            pose = extract(
                driving_video, args.pose_backend, fps=driving_fps, name=str(driving_path), **backend_options
            )
    if reference_pose_path is not None:
        reference_pose = read_reference_pose(reference_pose_path, "--reference-pose")
    if extract_reference:
        reference_pose = extract(np.asarray(image), args.pose_backend, progress=False, name=str(image_path),
                                 **backend_options)  # fmt: skip
    if not args.allow_empty_pose:
        _refuse_empty_poses(pose, pose_path or driving_path, reference_pose, reference_pose_path or image_path)
    if args.retarget:
        # Here rather than in the pipeline: the model and the previews get the poses of one call (so its warnings
        # appear once), and a reference that cannot be retargeted to is refused before any model loads.
        pose = retarget(pose, reference_pose[0], keep_missing_parts=args.keep_missing_parts)
    fps = args.fps or fps or DEFAULT_FPS

    # 3. Load the pipeline (the VAE and the CLIPs in float32) and apply the speed options
    pipe = load_pipeline(model_dir, dtype=args.dtype)
    if args.cpu_offload:
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.to(device)
    if args.context_parallel:
        from animatex_pp.pipelines.parallel import enable_context_parallel, is_main_process

        enable_context_parallel(pipe, args.context_parallel)
    # One progress bar, from the process that writes the video.
    writes = not args.context_parallel or is_main_process()
    pipe.set_progress_bar_config(desc="denoising", unit="step", disable=not writes)
    if args.vae_tiling:
        pipe.vae.enable_tiling()
    if args.cache_threshold is not None:
        from diffusers.hooks import FirstBlockCacheConfig

        pipe.transformer.enable_cache(FirstBlockCacheConfig(threshold=args.cache_threshold))
    if args.compile:
        pipe.transformer.compile_repeated_blocks(fullgraph=True)

    # 4. Generate
    generator = torch.Generator(device="cpu").manual_seed(args.seed)
    frames = pipe(
        image=image,
        pose=pose,
        prompt=args.prompt,
        negative_prompt=OFFICIAL_NEGATIVE_PROMPT if args.negative_prompt is None else args.negative_prompt,
        driving_video=driving_video,
        reference_pose=reference_pose,
        mode=args.mode,
        height=height,
        width=width,
        num_frames=num_frames,
        num_inference_steps=args.steps,
        guidance_scale=args.guidance,
        generator=generator,
        window_strategy=args.window_strategy,
        window_overlap=args.window_overlap,
        output_type="np",
    ).frames[0]
    if args.context_parallel:
        from animatex_pp.pipelines.parallel import finish_context_parallel

        # Every process holds the same video; the first one writes it, the others are done.
        finish_context_parallel()
        if not writes:
            return 0

    # 5. Write the video and the previews
    video = (np.clip(frames, 0.0, 1.0) * 255).round().astype(np.uint8)
    write_video(output, video, fps)
    print(f"wrote {output} ({len(video)} frames, {height}x{width}, {fps:g} fps)")
    pose_frames, reference_skeleton = _preview_poses(pose, reference_pose, height, width, len(video))
    if preview is not None:
        write_contact_sheet(preview, image, pose_frames, video, reference_pose=reference_skeleton)
        print(f"wrote {preview}")
    if args.preview_video:
        preview_video = output.with_suffix(".preview.mp4")
        write_preview_video(preview_video, image, pose_frames, video, fps)
        print(f"wrote {preview_video}")
    return 0


def _preview_poses(pose, reference_pose, height: int, width: int, num_frames: int):
    """The pose frames the model was driven by (already retargeted with --retarget), and the reference skeleton, as
    images for the previews: drawn at the stroke widths the model was fed (`official_strokes`), not `render`'s
    defaults."""
    from animatex_pp.pipelines.conditioning import official_strokes, render_reference_pose
    from animatex_pp.pose import render
    from animatex_pp.pose.sequence import PoseSequence

    if isinstance(pose, PoseSequence):
        pose = pose[:num_frames]
        pose = render(pose, height, width, **official_strokes(pose, height, width))
    if isinstance(reference_pose, PoseSequence):
        reference_pose = render_reference_pose(reference_pose, height, width)
    return pose, reference_pose


# ----------------------------------------------------------------------------- parsers


def register(subparsers) -> None:
    generate = subparsers.add_parser(
        "generate",
        help="animate a reference image with a pose sequence (or a prompt) and write an MP4",
        description="Animate the character in --image with the poses of --pose or --driving-video (Animate-X++),\n"
        "or with the prompt alone (--mode ti2v).",
        epilog=GENERATE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    inputs = generate.add_argument_group("inputs")
    inputs.add_argument("--model", required=True, metavar="DIR", help="pipeline directory (from `convert`)")
    inputs.add_argument("--image", required=True, metavar="PATH", help="reference image of the character")
    inputs.add_argument(
        "--pose",
        metavar="PATH",
        help="driving poses: a saved PoseSequence (.npz/.json) or a rendered pose video (.mp4 ...)",
    )
    inputs.add_argument(
        "--driving-video",
        metavar="PATH",
        help="driving video: its frames feed the implicit pose indicator; without --pose its poses are extracted",
    )
    inputs.add_argument(
        "--reference-pose",
        metavar="PATH|auto|none",
        default="auto",
        help="skeleton of the reference image: a pose file (.json/.npz, e.g. written by hand, docs/pose.md), a "
        "skeleton image, `auto` (default: extracted from --image, as the official inference always feeds it) or "
        "`none` (skip the reference-pose stream)",
    )
    inputs.add_argument(
        "--allow-empty-pose",
        action="store_true",
        help="generate even when the driving poses or the reference skeleton show no body (default: refuse)",
    )
    inputs.add_argument("--prompt", default="", help="text; in animation it describes the scene (default: empty)")
    inputs.add_argument(
        "--negative-prompt", default=None, help="negative text for guidance (default: the official Animate-X++ one)"
    )
    inputs.add_argument("--stride", type=positive_int, default=1, help="take every Nth input frame (default 1)")
    add_pose_backend_arguments(inputs, "for --driving-video without --pose and for --reference-pose auto")
    inputs.add_argument("--retarget", action="store_true", help="retarget the poses to --reference-pose's body")
    inputs.add_argument(
        "--keep-missing-parts",
        action="store_true",
        help="with --retarget, keep the parts the reference skeleton lacks (default: dropped, e.g. a mermaid's legs)",
    )

    sampling = generate.add_argument_group("generation")
    sampling.add_argument("--output", required=True, metavar="PATH", help="output video (.mp4)")
    sampling.add_argument("--mode", default="animation", choices=["animation", "ti2v"], help="default: animation")
    sampling.add_argument(
        "--size",
        type=height_width,
        default=(832, 480),
        metavar="HxW",
        help="height x width, multiples of 16 (832x480)",
    )
    sampling.add_argument(
        "--frames", type=positive_int, default=None, help="frames, 4k+1 (default: the pose's length; ti2v 81)"
    )
    sampling.add_argument("--steps", type=positive_int, default=50, help="denoising steps (default 50)")
    sampling.add_argument(
        "--guidance", type=non_negative_float, default=3.0, help="classifier-free guidance scale (default 3)"
    )
    sampling.add_argument("--seed", type=random_seed, default=0, help="random seed, 0 to 2**64 - 1 (default 0)")
    sampling.add_argument(
        "--fps", type=positive_float, default=None, help="output frame rate (default: the input's, else 16)"
    )
    sampling.add_argument(
        "--window-strategy", default="blend", choices=["blend", "carry"], help="long videos (default blend)"
    )
    sampling.add_argument(
        "--window-overlap", type=integer, default=None, help="frames shared by windows (multiple of 4)"
    )

    runtime = generate.add_argument_group("runtime")
    runtime.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:N or mps (default cpu)")
    runtime.add_argument("--dtype", default="bf16", choices=sorted(DTYPES), help="model dtype; the VAE stays fp32")
    runtime.add_argument("--cpu-offload", action="store_true", help="keep only the running model on --device")
    runtime.add_argument("--vae-tiling", action="store_true", help="decode in tiles (less memory)")
    runtime.add_argument(
        "--cache-threshold",
        type=positive_float,
        default=None,
        help="FirstBlockCache threshold, e.g. 0.05 (off by default)",
    )
    runtime.add_argument("--compile", action="store_true", help="torch.compile the repeated transformer blocks")
    runtime.add_argument(
        "--context-parallel",
        choices=["ulysses", "ring"],
        default=None,
        help="split each window's tokens across the N processes of `torchrun --nproc-per-node N -m animatex_pp.cli "
        "generate ...` (one GPU each; ring needs a flash-attn-like backend; docs/pipeline.md)",
    )
    runtime.add_argument("--no-preview", action="store_true", help="do not write OUTPUT.preview.png")
    runtime.add_argument("--preview-video", action="store_true", help="also write OUTPUT.preview.mp4 side by side")
    generate.set_defaults(handler=run_generate)
