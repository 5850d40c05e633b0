"""The `animatex-pp` command: a thin shell over the library.

Each area of the library contributes its subcommands through a `register(subparsers)` function in its own
`commands` module, listed in `COMMAND_MODULES`; this file only parses, dispatches and maps errors to exit codes.

Exit codes: 0 success, 1 the command ran and failed, 2 bad usage or bad input (a missing or wrong file).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from animatex_pp import __version__

COMMAND_MODULES: list[str] = [
    "animatex_pp.pipelines.commands",
    "animatex_pp.pose.commands",
    "animatex_pp.data.commands",
    "animatex_pp.synthx.commands",
]

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="animatex-pp",
        description=(
            "Animate any character from one reference image and a driving pose sequence (Animate-X++ on Wan2.1)."
        ),
    )
    parser.add_argument("--version", action="version", version=f"animatex-pp {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        return args.handler(args) or EXIT_OK
    except (FileNotFoundError, ValueError) as error:
        print(f"animatex-pp {args.command}: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
