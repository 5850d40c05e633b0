"""SynthX build time on the CPU: a few hundred 64 x 64 x 17-frame clips, by worker count.

    python benchmarks/synthx.py                       # 200 train + 3 x 40 test clips, 1 and 2 workers
    python benchmarks/synthx.py --train 400 --test 80 --workers 2

Each row is one full build into a temporary folder (files written, metadata, synthx.json), timed end to end; the
bytes of every build are compared, so the table also shows that the worker count does not change the output.
Prints a markdown table.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from animatex_pp.synthx.build import BuildConfig, build  # noqa: E402


def digest(folder: Path) -> str:
    """One hash over every file's path and bytes."""
    total = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            total.update(str(path.relative_to(folder)).encode() + path.read_bytes())
    return total.hexdigest()[:12]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--frames", type=int, default=17)
    parser.add_argument("--train", type=int, default=200)
    parser.add_argument("--test", type=int, default=40)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()

    config = BuildConfig(size=args.size, frames=args.frames, train=args.train, test=args.test)
    clips = config.train + 3 * config.test
    rows = []
    for workers in args.workers:
        with tempfile.TemporaryDirectory() as folder:
            out = Path(folder) / "synthx"
            start = time.perf_counter()
            build(out, config, workers=workers, progress=False)
            seconds = time.perf_counter() - start
            megabytes = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 1e6
            rows.append((workers, seconds, megabytes, digest(out)))
    print(f"{clips} clips ({config.train} train, 3 x {config.test} test) of {config.frames} frames at "
          f"{config.size}x{config.size}\n")  # fmt: skip
    print("| workers | seconds | clips/s | MB written | output hash |\n|---|---|---|---|---|")
    for workers, seconds, megabytes, hashed in rows:
        print(f"| {workers} | {seconds:.1f} | {clips / seconds:.1f} | {megabytes:.1f} | {hashed} |")


if __name__ == "__main__":
    main()
