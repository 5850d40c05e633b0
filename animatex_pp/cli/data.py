"""`animatex-pp data check`: a training dataset's metadata, its bad rows and its clips per task.

The file is checked before any clip decodes; `animatex_pp.cli` turns FileNotFoundError and ValueError into exit
code 2 with the message.
"""

from __future__ import annotations

import argparse

from animatex_pp.cli.checks import existing_file

EPILOG = """\
examples:
  animatex-pp data check data/train.jsonl

Exit codes: 0 done, 1 nothing usable, 2 bad arguments or files.
"""


def run_check(args: argparse.Namespace) -> int:
    from animatex_pp.data.metadata import read_metadata

    report = read_metadata(existing_file(args.metadata, "metadata file"))
    print(report.summary_table())
    if report.problems:
        print(f"\nskipped rows:\n{report.problem_list(limit=len(report.problems))}")
    print(f"\n{len(report.clips)} usable of {report.num_rows} rows ({len(report.problems)} skipped)")
    return 0 if report.clips else 1


def register(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser("data", help="check a training dataset's metadata", epilog=EPILOG,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    commands = data.add_subparsers(dest="data_command", metavar="DATA_COMMAND", required=True)
    check = commands.add_parser("check", help="report bad rows and summarise clips per task", epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    check.add_argument("metadata", help="metadata file (.jsonl or .csv)")
    check.set_defaults(handler=run_check)
