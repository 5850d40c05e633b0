"""`animatex-pp pose extract | render | retarget`: the pose tools from the command line.

Inputs are checked (files exist, output folders exist, suffixes known) before any model is loaded or frame decoded;
`animatex_pp.cli` turns FileNotFoundError and ValueError into exit code 2 with the message.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from animatex_pp.cli.checks import (
    POSE_SUFFIXES,
    add_pose_backend_arguments,
    existing_file,
    integer,
    non_negative_int,
    open_image,
    output_path,
    pose_backend_options,
    positive_float,
    positive_int,
)
from animatex_pp.io.video import DEFAULT_FPS, IMAGE_SUFFIXES
from animatex_pp.pose.render import MAX_SIDE

OVERLAY_DIM = 0.5  # the reference image behind a checked skeleton is dimmed so the limbs stand out

EPILOG = """\
examples:
  animatex-pp pose extract dance.mp4 --out dance.pose.npz
  animatex-pp pose extract dance.mp4 --pose-backend dwpose --dwpose-dir weights/dwpose --fps 16 \\
      --out dance.pose.npz
  animatex-pp pose render dance.pose.npz --out dance.pose.mp4 --height 832 --width 480
  animatex-pp pose render character.pose.json --frame 0 --over character.png --out check.png
  animatex-pp pose retarget dance.pose.npz --reference character.png --out dance_on_character.pose.npz

Exit codes: 0 done, 1 failed, 2 bad arguments or files.
"""


def _extract(args: argparse.Namespace) -> int:
    from animatex_pp.pose import extract
    from animatex_pp.pose.report import HAND_MADE_HINT, has_body, summary

    source = existing_file(args.input, "input video or image")
    out = output_path(args.out, POSE_SUFFIXES, "--out", {"the input": source})
    options = pose_backend_options(args)
    pose = extract(
        source,
        backend=args.pose_backend,
        fps=args.fps,
        stride=args.stride,
        start=args.start,
        max_frames=args.max_frames,
        progress=not args.quiet,
        **options,
    )
    if not has_body(pose) and not args.allow_empty_pose:
        raise ValueError(f"{args.pose_backend} found nobody in {source}, so {out} was not written: {HAND_MADE_HINT} "
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

    pose_path = existing_file(args.pose, "pose file", POSE_SUFFIXES)
    over_path = None if args.over is None else existing_file(args.over, "--over image", IMAGE_SUFFIXES)
    out = output_path(args.out, {".mp4", ".png"}, "--out", {"the pose file": pose_path, "--over": over_path})
    still = out.suffix.lower() == ".png"
    if not still and (args.frame is not None or args.over is not None):
        raise ValueError("--frame and --over draw one frame as a picture: give --out a .png path")
    # The picture as a viewer shows it (16-bit scaled, transparency over white, EXIF orientation).
    over = None if over_path is None else open_image(over_path, "--over image")
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

    driving_path = existing_file(args.driving, "driving pose file", POSE_SUFFIXES)
    driving = PoseSequence.load(driving_path)
    reference_path = existing_file(args.reference, "reference", POSE_SUFFIXES | IMAGE_SUFFIXES)
    out = output_path(
        args.out, POSE_SUFFIXES, "--out", {"the driving pose": driving_path, "--reference": reference_path}
    )
    options = pose_backend_options(args)
    if not has_body(driving):
        raise ValueError(f"the driving pose {driving_path} shows nobody in any frame: extract it from a video of a "
                         "person")  # fmt: skip
    if reference_path.suffix.lower() in IMAGE_SUFFIXES:
        reference = extract(reference_path, backend=args.pose_backend, progress=False, **options)
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
    add_pose_backend_arguments(extract, "(default mediapipe)")
    extract.add_argument("--fps", type=positive_float, help="resample the video to this rate first (default: its own)")
    extract.add_argument("--stride", type=positive_int, default=1, help="keep every STRIDE-th frame (default: 1)")
    extract.add_argument("--start", type=non_negative_int, default=0, help="skip this many frames first (default: 0)")
    extract.add_argument("--max-frames", type=positive_int, help="stop after this many frames")
    extract.add_argument("--quiet", action="store_true", help="no progress bar")
    extract.add_argument("--allow-empty-pose", action="store_true",
                         help="write the pose even when nobody is found (default: refuse, exit code 2)")  # fmt: skip
    extract.set_defaults(handler=_extract)

    render = commands.add_parser("render", help="draw a pose file as a skeleton video (H.264 MP4) or one frame (PNG)",
                                 epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    render.add_argument("pose", help="pose file (.npz or .json)")
    render.add_argument("--out", required=True, help="video (.mp4) or, for one frame, picture (.png) to write")
    render.add_argument("--frame", type=integer, help="the frame a .png shows (default: 0)")
    render.add_argument(
        "--over",
        metavar="IMAGE",
        help="draw the frame over this image (e.g. the reference, to check a hand-made skeleton)",
    )
    for side in ("height", "width"):
        render.add_argument(
            f"--{side}",
            type=integer,
            help=f"{side} in pixels, at most {MAX_SIDE} (default: --over's, else the pose image's)",
        )
    render.add_argument("--fps", type=positive_float, help=f"frame rate (default: the pose's, else {DEFAULT_FPS:g})")
    render.add_argument(
        "--color-order",
        choices=("bgr", "rgb"),
        default="bgr",
        help="bgr: as the released checkpoints saw skeletons; rgb: OpenPose's look (default: bgr)",
    )
    render.add_argument("--stick-width", type=positive_int, default=4, help="limb half-width in pixels (default: 4)")
    render.add_argument(
        "--point-radius", type=non_negative_int, default=4, help="keypoint radius in pixels (default: 4)"
    )
    render.add_argument("--quiet", action="store_true", help="no progress bar")
    render.set_defaults(handler=_render)

    retarget = commands.add_parser("retarget", help="move a driving pose onto a reference body", epilog=EPILOG,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    retarget.add_argument("driving", help="driving pose file (.npz or .json)")
    retarget.add_argument("--reference", required=True,
                          help="reference image (its pose is extracted) or pose file (.npz or .json)")  # fmt: skip
    retarget.add_argument(
        "--reference-frame", type=integer, default=0, help="frame of a reference pose file (default: 0)"
    )
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
    add_pose_backend_arguments(retarget, "for a --reference image")
    retarget.set_defaults(handler=_retarget)
