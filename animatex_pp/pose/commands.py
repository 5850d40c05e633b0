"""`animatex-pp pose extract | render | retarget`: the pose tools from the command line.

Inputs are checked (files exist, output folders exist, suffixes known) before any model is loaded or frame decoded;
`animatex_pp.cli` turns FileNotFoundError and ValueError into exit code 2 with the message.
"""

from __future__ import annotations

import argparse
from collections.abc import Set
from pathlib import Path

from animatex_pp.data.video import DEFAULT_FPS, IMAGE_SUFFIXES
from animatex_pp.pose.skeleton import CONF_THRESHOLD

POSE_SUFFIXES = frozenset({".npz", ".json"})

EPILOG = """\
examples:
  animatex-pp pose extract dance.mp4 --backend mediapipe --out dance.pose.npz
  animatex-pp pose extract dance.mp4 --backend dwpose --det-model yolox_l.onnx \\
      --pose-model dw-ll_ucoco_384.onnx --fps 16 --out dance.pose.npz
  animatex-pp pose render dance.pose.npz --out dance.pose.mp4 --height 832 --width 480
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

    source = _input_file(args.input, "input video or image")
    out = _output_file(args.out, POSE_SUFFIXES)
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
    pose.save(out)
    detected = (pose.body_conf >= CONF_THRESHOLD).all(axis=1).mean()
    print(f"wrote {out}: {pose}; full body found on {detected:.0%} of frames")
    return 0


def _render(args: argparse.Namespace) -> int:
    from animatex_pp.data.video import write_video
    from animatex_pp.pose import PoseSequence, iter_render

    pose = PoseSequence.load(_input_file(args.pose, "pose file", POSE_SUFFIXES))
    out = _output_file(args.out, {".mp4"})
    # H.264 needs even sizes: the pose's own size is rounded down to even; an explicit size is used as given.
    height = args.height or pose.height // 2 * 2
    width = args.width or pose.width // 2 * 2
    fps = args.fps or pose.fps or DEFAULT_FPS
    frames = iter_render(
        pose,
        height,
        width,
        color_order=args.color_order,
        stick_width=args.stick_width,
        point_radius=args.point_radius,
        progress=not args.quiet,
    )
    write_video(out, frames, fps)
    print(f"wrote {out}: {len(pose)} frames, {width}x{height}, {fps:g} fps, {args.color_order} colours")
    return 0


def _retarget(args: argparse.Namespace) -> int:
    from animatex_pp.pose import PoseSequence, extract, retarget

    driving = PoseSequence.load(_input_file(args.driving, "driving pose file", POSE_SUFFIXES))
    reference_path = _input_file(args.reference, "reference", POSE_SUFFIXES | IMAGE_SUFFIXES)
    out = _output_file(args.out, POSE_SUFFIXES)
    if reference_path.suffix.lower() in IMAGE_SUFFIXES:
        reference = extract(reference_path, backend=args.backend, progress=False, **_backend_options(args))
    else:
        reference = PoseSequence.load(reference_path)
        if not -len(reference) <= args.reference_frame < len(reference):
            raise ValueError(f"--reference-frame {args.reference_frame} is out of range: {reference_path} has "
                             f"{len(reference)} frames")  # fmt: skip
        reference = reference[args.reference_frame]
    result = retarget(driving, reference)
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
    extract.set_defaults(handler=_extract)

    render = commands.add_parser("render", help="draw a pose file as a skeleton video (H.264 MP4)", epilog=EPILOG,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    render.add_argument("pose", help="pose file (.npz or .json)")
    render.add_argument("--out", required=True, help="video to write (.mp4)")
    render.add_argument("--height", type=int, help="video height in pixels (default: the pose's image height)")
    render.add_argument("--width", type=int, help="video width in pixels (default: the pose's image width)")
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
    _add_backend_arguments(retarget)
    retarget.set_defaults(handler=_retarget)
