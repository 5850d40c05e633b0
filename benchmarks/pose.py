"""Pose tools on the CPU: decoding, MediaPipe extraction and skeleton rendering speed, in frames per second.

    python benchmarks/pose.py                    # 120 frames of the sample walk, medians of 3 runs (~1 minute)
    python benchmarks/pose.py --frames 380 --repeats 5

Extraction runs on frames already decoded (decoding is timed on its own); MediaPipe tracks across frames, as
`extract` does for a video. Rendering draws the extracted poses at 832 x 480 (the official generation size), to
uint8 frames and to the pipeline's float tensor. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from animatex_pp.io.video import read_video  # noqa: E402
from animatex_pp.pose import extract, render  # noqa: E402

DEFAULT_VIDEO = Path(__file__).resolve().parents[2] / "shared" / "assets" / "videos" / "fashion_walk_380f.mp4"
HEIGHT, WIDTH = 832, 480


def frames_per_second(run, count: int, repeats: int) -> float:
    """Median frames per second of `run()` over `repeats` runs, each handling `count` frames."""
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - start)
    return count / statistics.median(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", type=Path, default=DEFAULT_VIDEO)
    parser.add_argument("--frames", type=int, default=120, help="frames of the video to use (default: 120)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per measurement, median kept (default: 3)")
    args = parser.parse_args()

    rows = []
    rate = frames_per_second(lambda: read_video(args.video, max_frames=args.frames), args.frames, args.repeats)
    frames, fps = read_video(args.video, max_frames=args.frames)
    height, width = frames.shape[1:3]
    rows.append((f"decode {width}x{height} H.264 (PyAV)", rate))

    poses = {}
    for hands in (True, False):
        label = "MediaPipe Holistic (body, feet, hands)" if hands else "MediaPipe Pose (body, feet)"

        def run(hands=hands):
            poses[hands] = extract(frames, backend="mediapipe", fps=fps, progress=False, hands=hands)

        rows.append((f"extract: {label}", frames_per_second(run, len(frames), args.repeats)))

    for hands, output in ((True, "np"), (False, "np"), (True, "pt")):
        what = "body, feet, hands" if hands else "body, feet"
        label = f"render {HEIGHT}x{WIDTH} ({what}) -> {'uint8 frames' if output == 'np' else 'float tensor'}"
        draw = lambda h=hands, o=output: render(poses[h], HEIGHT, WIDTH, o)  # noqa: E731
        rows.append((label, frames_per_second(draw, len(frames), args.repeats)))

    found = (poses[True].body_conf >= 0.3).all(axis=1).mean()
    print(f"{args.video.name}: {len(frames)} frames, median of {args.repeats} runs; full body found on {found:.0%}\n")
    print("| what | frames/s |\n|---|---|")
    for label, rate in rows:
        print(f"| {label} | {rate:.1f} |")


if __name__ == "__main__":
    main()
