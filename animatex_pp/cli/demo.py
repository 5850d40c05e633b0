"""`animatex-pp demo [--out DIR]`: the whole system on this machine (`animatex_pp.demo`).

Options are checked before any stage starts; `animatex_pp.cli` turns FileNotFoundError and ValueError into exit
code 2 with the message.
"""

from __future__ import annotations

import argparse
import dataclasses

from animatex_pp.cli.checks import output_folder, positive_int

EPILOG = """\
examples:
  animatex-pp demo                          # into ./animatex-demo: 8 to 15 minutes on 2 CPU cores
  animatex-pp demo --out /tmp/demo          # a second run reuses every stage already built
  animatex-pp demo --quick --out /tmp/q     # every stage at toy sizes (a minute or two): checks the install
  animatex-pp demo --ablation               # then the synthx_ablation sweep: four more runs, ~20 minutes

Writes DIR/demo.mp4 (reference | pose | output), DIR/preview.png, DIR/metrics.json and DIR/report.md.
Exit codes: 0 done, 1 failed, 2 bad arguments.
"""


def run_demo_command(args: argparse.Namespace) -> int:
    from animatex_pp.demo import QUICK, DemoConfig, run_demo

    out = output_folder(args.out, "--out", "the demo")
    config = QUICK if args.quick else DemoConfig()
    options = {"train_steps": args.steps, "vae_steps": args.vae_steps, "threads": args.threads}
    changes = {field: value for field, value in options.items() if value is not None}
    metrics = run_demo(out, dataclasses.replace(config, **changes), progress=not args.quiet, ablation=args.ablation)
    print((out / "report.md").read_text(encoding="utf-8"))
    print(f"done in {metrics['wall_time_s']:.0f} s: {out}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    demo = subparsers.add_parser(
        "demo",
        help="build SynthX, fit a VAE, train, evaluate and animate a held-out character, on this CPU",
        description="The demo: SynthX, the VAE, precompute, training, evaluation with baselines, a generated clip.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument("--out", default="animatex-demo", help="folder to write (default: ./animatex-demo)")
    demo.add_argument("--quick", action="store_true", help="toy sizes: every stage runs, nothing is learnt")
    demo.add_argument("--steps", type=positive_int, help="training steps (default: the synthx_tiny recipe's)")
    demo.add_argument(
        "--vae-steps",
        type=positive_int,
        help="VAE fitting steps on 5-frame crops (default: 400), before 150 on whole clips",
    )
    demo.add_argument(
        "--ablation",
        action="store_true",
        help="also train and evaluate the synthx_ablation sweep (full / no IPI / no EPI / no ti2v)",
    )
    demo.add_argument(
        "--threads", type=positive_int, help="torch threads (default: 1, fastest on a shared 2-core machine)"
    )
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    demo.set_defaults(handler=run_demo_command)
