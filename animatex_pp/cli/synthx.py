"""`animatex-pp synthx build OUT`: write a SynthX benchmark from the command line.

Every argument and input file is checked, and real motion sources are read, before the first clip is rendered;
`animatex_pp.cli` turns FileNotFoundError and ValueError into exit code 2 with the message.
"""

from __future__ import annotations

import argparse

from animatex_pp.cli.checks import POSE_SUFFIXES, existing_file, positive_int
from animatex_pp.io.video import IMAGE_SUFFIXES

EPILOG = """\
examples:
  animatex-pp synthx build synthx --size 64 --frames 17 --train 200 --test 40 --seed 0
  animatex-pp pose extract ../shared/assets/videos/fashion_walk_380f.mp4 --no-hands --out walk.pose.npz
  animatex-pp synthx build synthx --motion-from walk.pose.npz     # real motion too (pose files or videos)

Exit codes: 0 done, 1 failed, 2 bad arguments or files.
"""


def _motion_sources(paths: list[str], progress: bool) -> dict:
    """Real motions by file name: pose files are read, videos get their poses extracted (MediaPipe, slow)."""
    from animatex_pp.pose import PoseSequence, extract
    from animatex_pp.synthx.motions import from_pose

    files = [existing_file(path, "--motion-from file") for path in paths]
    for path in files:
        if path.suffix.lower() in IMAGE_SUFFIXES:
            raise ValueError(f"--motion-from takes pose files (.npz, .json) or videos, not an image: {path}")
    if len({path.name for path in files}) != len(files):
        raise ValueError("--motion-from files need distinct names: motions are recorded by file name")
    sources = {}
    for path in files:
        if path.suffix.lower() in POSE_SUFFIXES:
            pose = PoseSequence.load(path)
        else:
            pose = extract(path, backend="mediapipe", hands=False, progress=progress)
        sources[path.name] = from_pose(pose, name=path.name)
    return sources


def _build(args: argparse.Namespace) -> int:
    from animatex_pp.synthx.build import BuildConfig, build, check_output, real_windows

    config = BuildConfig(size=args.size, frames=args.frames, fps=args.fps, train=args.train, test=args.test,
                         seed=args.seed, ti2v_share=args.ti2v_share)  # fmt: skip
    config.check()
    out = check_output(args.out)
    sources = _motion_sources(args.motion_from, progress=not args.quiet)
    real_windows(sources, config)  # a source too short for one clip is refused before any clip is drawn
    summary = build(out, config, motion_sources=sources, workers=args.workers, progress=not args.quiet)
    counts = ", ".join(f"{split} {info['clips']}" for split, info in summary["splits"].items())
    print(f"wrote {out}: {counts} clips of {config.frames} frames at {config.size}x{config.size}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    synthx = subparsers.add_parser(
        "synthx",
        help="build the SynthX procedural benchmark",
        description="SynthX: puppets of many body plans dancing over still or moving scenes, with ground truth.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = synthx.add_subparsers(dest="synthx_command", metavar="SYNTHX_COMMAND", required=True)
    build = commands.add_parser("build", help="write a benchmark folder", epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    build.add_argument("out", help="folder to write (new, empty, or an earlier SynthX build, which is replaced)")
    build.add_argument("--size", type=int, default=64, help="frame height and width in pixels (default: 64)")
    build.add_argument("--frames", type=int, default=17, help="frames per clip, 4k+1 (default: 17)")
    build.add_argument("--fps", type=float, default=16.0, help="frame rate (default: 16)")
    build.add_argument("--train", type=int, default=200, help="clips in train.jsonl (default: 200)")
    build.add_argument("--test", type=int, default=40, help="clips in each test split (default: 40)")
    build.add_argument("--seed", type=int, default=0, help="the same seed writes the same bytes (default: 0)")
    build.add_argument("--ti2v-share", type=float, default=0.25, help="share of ti2v clips in train (default: 0.25)")
    build.add_argument(
        "--motion-from",
        nargs="+",
        default=[],
        metavar="FILE",
        help="real motion: pose files (.npz, .json) or videos (poses extracted with MediaPipe)",
    )
    build.add_argument("--workers", type=positive_int, help="processes rendering clips (default: up to 2)")
    build.add_argument("--quiet", action="store_true", help="no progress bar")
    build.set_defaults(handler=_build)
