"""`animatex-pp pose extract | render | retarget`: the pose tools from the command line.

Inputs are checked (files exist, output folders exist, suffixes known) before any model is loaded or frame decoded;
`animatex_pp.cli` turns FileNotFoundError and ValueError into exit code 2 with the message.
"""

from __future__ import annotations

import argparse
from collections.abc import Set
from pathlib import Path

from animatex_pp.cli.checks import POSE_SUFFIXES
from animatex_pp.io.video import DEFAULT_FPS, IMAGE_SUFFIXES
from animatex_pp.pose.render import MAX_SIDE

OVERLAY_DIM = 0.5  # the reference image behind a checked skeleton is dimmed so the limbs stand out

EPILOG = """\
examples:
  animatex-pp pose extract dance.mp4 --backend mediapipe --out dance.pose.npz
  animatex-pp pose extract dance.mp4 --backend dwpose --det-model yolox_l.onnx \\
      --pose-model dw-ll_ucoco_384.onnx --fps 16 --out dance.pose.npz
  animatex-pp pose render dance.pose.npz --out dance.pose.mp4 --height 832 --width 480
  animatex-pp pose render character.pose.json --frame 0 --over character.png --out check.png
  animatex-pp pose retarget dance.pose.npz --reference character.png --out dance_on_character.pose.npz

Exit codes: 0 done, 1 failed, 2 bad arguments or files.
"""


def _input_file(path: str, what: str, suffixes: Set[str] | None = None) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    if suffixes is not None and path.suffix.lower() not in suffixes:
        raise ValueError(f"{what} must be one of {', '.join(sorted(suffixes))}, got {path.name}")
    return path


def _output_file(path: str, suffixes: Set[str]) -> Path:
    path = Path(path)
    if path.suffix.lower() not in suffixes:
        raise ValueError(f"--out must end in {' or '.join(sorted(suffixes))}, got {path.name}")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"output folder {path.parent} does not exist: create it first")
    return path


def _check_at_least(args: argparse.Namespace, minimum: float, *options: str) -> None:
    """A ValueError naming the first of `options` (attribute names) given below `minimum`."""
    for option in options:
        value = getattr(args, option)
        if value is not None and not value >= minimum:
            flag = "--" + option.replace("_", "-")
            raise ValueError(f"{flag} must be {'positive' if minimum > 0 else f'at least {minimum}'}, got {value:g}")


def _backend_options(args: argparse.Namespace) -> dict:
    if args.backend == "dwpose":
        if not args.det_model or not args.pose_model:
            raise ValueError("--backend dwpose needs --det-model yolox_l.onnx and --pose-model dw-ll_ucoco_384.onnx")
        return {
            "det_model": _input_file(args.det_model, "DWPose detector model"),
            "pose_model": _input_file(args.pose_model, "DWPose pose model"),
        }
    return {"hands": not args.no_hands}


def _extract(args: argparse.Namespace) -> int:
    from animatex_pp.pose import extract
    from animatex_pp.pose.report import HAND_MADE_HINT, has_body, summary

    source = _input_file(args.input, "input video or image")
    out = _output_file(args.out, POSE_SUFFIXES)
    _check_at_least(args, 0.0, "start")
    _check_at_least(args, 1, "stride", "max_frames")
    _check_at_least(args, 1e-9, "fps")
    options = _backend_options(args)
    pose = extract(
        source,
        backend=args.backend,
        fps=args.fps,
        stride=args.stride,
        start=args.start,
        max_frames=args.max_frames,
        progress=not args.quiet,
        **options,
    )
    if not has_body(pose) and not args.allow_empty_pose:
        raise ValueError(f"{args.backend} found nobody in {source}, so {out} was not written: {HAND_MADE_HINT} "
                         "(--allow-empty-pose writes the empty pose anyway)")  # fmt: skip
    pose.save(out)
    print(f"wrote {out}: {pose}; {summary(pose)}")
    return 0


def _render_size(args: argparse.Namespace, pose, over) -> tuple[int, int]:
    """(height, width) to draw at: as given, else the image drawn over, else the pose's image (even for H.264)."""
    even = Path(args.out).suffix.lower() == ".mp4"
    default_height, default_width = (over.height, over.width) if over is not None else (pose.height, pose.width)
    height = (default_height // 2 * 2 if even else default_height) if args.height is None else args.height
    width = (default_width // 2 * 2 if even else default_width) if args.width is None else args.width
    for option, value, given in (("--height", height, args.height), ("--width", width, args.width)):
        if not 1 <= value <= MAX_SIDE:
            source = f"{option} {value}" if given is not None else f"the default size {height}x{width} (HxW)"
            raise ValueError(f"{source}: a side must be 1 to {MAX_SIDE} pixels; give --height and --width")
    return height, width


def _render(args: argparse.Namespace) -> int:
    from animatex_pp.pose import PoseSequence, iter_render

    pose_path = _input_file(args.pose, "pose file", POSE_SUFFIXES)
    out = _output_file(args.out, {".mp4", ".png"})
    still = out.suffix.lower() == ".png"
    if not still and (args.frame is not None or args.over is not None):
        raise ValueError("--frame and --over draw one frame as a picture: give --out a .png path")
    over = None
    if args.over is not None:
        over = _open_image(_input_file(args.over, "--over image", IMAGE_SUFFIXES))
    _check_at_least(args, 1e-9, "fps")
    _check_at_least(args, 1, "stick_width")
    _check_at_least(args, 0, "point_radius")
    pose = PoseSequence.load(pose_path)
    if still:
        frame = args.frame or 0
        if not -len(pose) <= frame < len(pose):
            raise ValueError(f"--frame {frame} is out of range: {pose_path} has {len(pose)} frames")
        pose = pose[frame]
    height, width = _render_size(args, pose, over)
    frames = iter_render(
        pose,
        height,
        width,
        color_order=args.color_order,
        stick_width=args.stick_width,
        point_radius=args.point_radius,
        progress=not args.quiet and not still,
    )
    if still:
        _write_still(out, next(frames), over)
        drawn_on = f" over {args.over}" if over is not None else ""
        print(f"wrote {out}: frame {args.frame or 0} of {pose_path}{drawn_on}, {height}x{width} (HxW)")
        return 0
    from animatex_pp.io.video import write_video

    fps = args.fps or pose.fps or DEFAULT_FPS
    write_video(out, frames, fps)
    print(f"wrote {out}: {len(pose)} frames, {height}x{width} (HxW), {fps:g} fps, {args.color_order} colours")
    return 0


def _open_image(path: Path):
    """The --over picture as a viewer shows it (16-bit scaled, transparency over white, EXIF orientation)."""
    from animatex_pp.io.image import read_image

    return read_image(path, "--over image")


def _write_still(out: Path, skeleton, over) -> None:
    """The skeleton frame as a PNG; over a picture, the picture dimmed where no skeleton is drawn."""
    import numpy as np
    from PIL import Image

    from animatex_pp.io.files import atomic_output

    if over is not None:
        background = np.asarray(over.resize(skeleton.shape[1::-1], Image.Resampling.BILINEAR))
        drawn = skeleton.any(axis=-1, keepdims=True)  # (H, W, 1)
        skeleton = np.where(drawn, skeleton, (background * OVERLAY_DIM).astype(np.uint8))
    with atomic_output(out) as temporary:
        Image.fromarray(skeleton).save(temporary, format="PNG")


def _retarget(args: argparse.Namespace) -> int:
    from animatex_pp.pose import PoseSequence, extract, retarget
    from animatex_pp.pose.report import HAND_MADE_HINT, has_body

    driving_path = _input_file(args.driving, "driving pose file", POSE_SUFFIXES)
    driving = PoseSequence.load(driving_path)
    reference_path = _input_file(args.reference, "reference", POSE_SUFFIXES | IMAGE_SUFFIXES)
    out = _output_file(args.out, POSE_SUFFIXES)
    if not has_body(driving):
        raise ValueError(f"the driving pose {driving_path} shows nobody in any frame: extract it from a video of a "
                         "person")  # fmt: skip
    if reference_path.suffix.lower() in IMAGE_SUFFIXES:
        reference = extract(reference_path, backend=args.backend, progress=False, **_backend_options(args))
    else:
        reference = PoseSequence.load(reference_path)
        if not -len(reference) <= args.reference_frame < len(reference):
            raise ValueError(f"--reference-frame {args.reference_frame} is out of range: {reference_path} has "
                             f"{len(reference)} frames")  # fmt: skip
        reference = reference[args.reference_frame]
    if not has_body(reference):
        raise ValueError(f"--reference {reference_path} shows no body point: {HAND_MADE_HINT}")
    result = retarget(driving, reference, keep_missing_parts=args.keep_missing_parts, match_sides=args.match_sides)
    result.save(out)
    print(f"wrote {out}: {result}")
    return 0


def _add_backend_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backend", choices=("mediapipe", "dwpose"), default="mediapipe", help="pose detector (default: mediapipe)"
    )
    parser.add_argument("--det-model", help="dwpose: path of yolox_l.onnx")
    parser.add_argument("--pose-model", help="dwpose: path of dw-ll_ucoco_384.onnx")
    parser.add_argument("--no-hands", action="store_true", help="mediapipe: body and feet only (twice as fast)")


def register(subparsers: argparse._SubParsersAction) -> None:
    pose = subparsers.add_parser(
        "pose",
        help="extract, render and retarget pose sequences",
        description="Pose sequences: extract keypoints from videos, draw them, move them onto another body.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = pose.add_subparsers(dest="pose_command", metavar="POSE_COMMAND", required=True)

    extract = commands.add_parser("extract", help="keypoints of one person from a video or image", epilog=EPILOG,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    extract.add_argument("input", help="video file or image")
    extract.add_argument("--out", required=True, help="pose file to write (.npz or .json)")
    _add_backend_arguments(extract)
    extract.add_argument("--fps", type=float, help="resample the video to this rate first (default: its own)")
    extract.add_argument("--stride", type=int, default=1, help="keep every STRIDE-th frame (default: 1)")
    extract.add_argument("--start", type=int, default=0, help="skip this many frames first (default: 0)")
    extract.add_argument("--max-frames", type=int, help="stop after this many frames")
    extract.add_argument("--quiet", action="store_true", help="no progress bar")
    extract.add_argument("--allow-empty-pose", action="store_true",
                         help="write the pose even when nobody is found (default: refuse, exit code 2)")  # fmt: skip
    extract.set_defaults(handler=_extract)

    render = commands.add_parser("render", help="draw a pose file as a skeleton video (H.264 MP4) or one frame (PNG)",
                                 epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    render.add_argument("pose", help="pose file (.npz or .json)")
    render.add_argument("--out", required=True, help="video (.mp4) or, for one frame, picture (.png) to write")
    render.add_argument("--frame", type=int, help="the frame a .png shows (default: 0)")
    render.add_argument(
        "--over",
        metavar="IMAGE",
        help="draw the frame over this image (e.g. the reference, to check a hand-made skeleton)",
    )
    for side in ("height", "width"):
        render.add_argument(
            f"--{side}",
            type=int,
            help=f"{side} in pixels, at most {MAX_SIDE} (default: --over's, else the pose image's)",
        )
    render.add_argument("--fps", type=float, help=f"frame rate (default: the pose's, else {DEFAULT_FPS:g})")
    render.add_argument(
        "--color-order",
        choices=("bgr", "rgb"),
        default="bgr",
        help="bgr: as the released checkpoints saw skeletons; rgb: OpenPose's look (default: bgr)",
    )
    render.add_argument("--stick-width", type=int, default=4, help="limb half-width in pixels (default: 4)")
    render.add_argument("--point-radius", type=int, default=4, help="keypoint radius in pixels (default: 4)")
    render.add_argument("--quiet", action="store_true", help="no progress bar")
    render.set_defaults(handler=_render)

    retarget = commands.add_parser("retarget", help="move a driving pose onto a reference body", epilog=EPILOG,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    retarget.add_argument("driving", help="driving pose file (.npz or .json)")
    retarget.add_argument("--reference", required=True,
                          help="reference image (its pose is extracted) or pose file (.npz or .json)")  # fmt: skip
    retarget.add_argument("--reference-frame", type=int, default=0, help="frame of a reference pose file (default: 0)")
    retarget.add_argument("--out", required=True, help="pose file to write (.npz or .json)")
    retarget.add_argument(
        "--keep-missing-parts",
        action="store_true",
        help="keep the driving parts the reference lacks (default: left out, e.g. a mermaid's legs)",
    )
    retarget.add_argument(
        "--match-sides",
        action="store_true",
        help="swap the reference's left/right labels when it faces the other way than the driver",
    )
    _add_backend_arguments(retarget)
    retarget.set_defaults(handler=_retarget)
