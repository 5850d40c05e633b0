"""The `animatex-pp` command: a thin shell over the library.

Each command is one thin module of this package with a `register(subparsers)` function, listed in
`COMMAND_MODULES`; `checks` holds the argument checks they share. This file only parses, dispatches and maps errors
to exit codes; the work is the library's.

Exit codes: 0 success, 1 the command ran and failed, 2 bad usage or bad input (a missing or wrong file: one line
on stderr, no traceback), 130 interrupted (Ctrl-C; outputs are written atomically, so any earlier file is kept).

Third-party log noise (MediaPipe's native logging, transformers' torchvision notice, DeepSpeed's accelerator line) is
kept out of the output unless `--verbose` or ANIMATEX_PP_VERBOSE=1 asks for it (`animatex_pp.logs`).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from contextlib import nullcontext

from animatex_pp import __version__
from animatex_pp.logs import (
    VERBOSE_ENV,
    filtered_native_stderr,
    quiet_third_party_logs,
    show_known_notices,
    verbose_requested,
)

COMMAND_MODULES: list[str] = [
    "animatex_pp.cli.generate",
    "animatex_pp.cli.convert",
    "animatex_pp.cli.pose",
    "animatex_pp.cli.data",
    "animatex_pp.cli.precompute",
    "animatex_pp.cli.synthx",
    "animatex_pp.cli.train",
    "animatex_pp.cli.eval",
    "animatex_pp.cli.demo",
]

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT = 0, 1, 2
# The shell's convention for a process ended by SIGINT (128 + 2).
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """A malformed command line; `main` prints it as one line and returns EXIT_BAD_INPUT."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line naming the command and the option, not usage text and an exit."""

    def error(self, message: str):
        raise UsageError(f"{self.prog}: error: {message} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="animatex-pp",
        description=(
            "Animate any character from one reference image and a driving pose sequence (Animate-X++ on Wan2.1)."
        ),
    )
    parser.add_argument("--version", action="version", version=f"animatex-pp {__version__}")
    parser.add_argument(
        "--verbose",
        action="store_true",
        help=f"show third-party log output too (MediaPipe, transformers, DeepSpeed); or set {VERBOSE_ENV}=1",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    verbose = "--verbose" in argv[:1] or verbose_requested()
    if not verbose:
        quiet_third_party_logs()
    else:
        show_known_notices()  # `import animatex_pp` dropped them
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as error:
        print(error, file=sys.stderr)
        return EXIT_BAD_INPUT
    if not hasattr(args, "handler"):
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        return args.handler(args) or EXIT_OK
    except (FileNotFoundError, ValueError) as error:
        print(f"animatex-pp {args.command}: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"animatex-pp {args.command}: interrupted; no output was written or replaced", file=sys.stderr)
        return EXIT_INTERRUPTED


def console_main() -> None:
    """The `animatex-pp` executable: `main` with MediaPipe's native log lines filtered out of descriptor 2."""
    argv = sys.argv[1:]
    quiet = not ("--verbose" in argv[:1] or verbose_requested())
    with filtered_native_stderr() if quiet else nullcontext():
        code = main(argv)
    sys.exit(code)
