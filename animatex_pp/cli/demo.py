"""`animatex-pp demo [--out DIR]`: the whole system on this machine (`animatex_pp.demo`); `animatex-pp demo
--fit-codec OUT`: the research codec fit alone (`animatex_pp.demo.codec.fit_codec`); `animatex-pp demo
--pretrain-base OUT`: the SynthX base's pretraining (`animatex_pp.demo.base.pretrain_base`). Both are
reproducible from a seed and resumable: rerun the same command.

Options are checked before any stage starts; `animatex_pp.cli` turns FileNotFoundError and ValueError into exit
code 2 with the message.
"""

from __future__ import annotations

import argparse
import dataclasses

from animatex_pp.cli.checks import existing_dir, non_negative_int, output_folder, positive_int

EPILOG = """\
examples:
  animatex-pp demo                          # into ./animatex-demo: 8 to 15 minutes on 2 CPU cores
  animatex-pp demo --out /tmp/demo          # a second run reuses every stage already built
  animatex-pp demo --quick --out /tmp/q     # every stage at toy sizes (a minute or two): checks the install
  animatex-pp demo --ablation               # then the synthx_ablation sweep: four more runs, ~25 minutes
  animatex-pp demo --from-scratch --out /tmp/s  # no base: the whole transformer from random weights
  animatex-pp demo --fit-codec /tmp/codec   # the research codec fit alone: hours; rerun it to resume
  animatex-pp demo --pretrain-base /tmp/base  # the SynthX base on the package's codec: hours; rerun to resume

--fit-codec OUT builds SynthX (600 train clips, 32 per test split, seed 0) into OUT/synthx unless it is there,
then fits the codec from seed 0 with the research settings (docs/results.md, "The codec fit"): OUT/vae (the
codec, loadable by the pipeline), OUT/vae_fit.json (settings and held-out test_x numbers), OUT/checkpoint
(written every 5 minutes; the same command continues from it).

--pretrain-base OUT builds the same SynthX into OUT/synthx unless it is there, copies the codec (the package's, or
--codec DIR's vae/) into OUT/codec, precomputes OUT/cache and trains recipe=synthx_base into OUT/train
(checkpoints every 500 steps; the same command continues from the last). The base pipeline is
OUT/train/export/pipeline, and OUT/base the same in the package's layout (the layout of the base the package ships,
animatex_pp/demo/weights/base).

The demo trains Animate-X++'s adapters (recipe=synthx_animate) on the package's SynthX base and codec; --base DIR
(a --pretrain-base OUT/base) and --codec DIR (a --fit-codec OUT) replace them; a base is refused with a codec it
was not pretrained on.

Writes DIR/demo.mp4 (reference | pose | output), DIR/preview.png (the first test_x and test_x_dynamic clips with
their baselines and ground truth), DIR/metrics.json and DIR/report.md.
Exit codes: 0 done, 1 failed, 2 bad arguments.
"""


def run_fit_codec_command(args: argparse.Namespace) -> int:
    import torch

    from animatex_pp.demo.codec import CODEC_BUILD, Clips, CodecFitConfig, fit_codec
    from animatex_pp.synthx.build import build

    out = output_folder(args.fit_codec, "--fit-codec", "the codec fit")
    defaults = CodecFitConfig()
    config = CodecFitConfig(
        steps=defaults.steps if args.codec_steps is None else args.codec_steps,
        warm_steps=defaults.warm_steps if args.codec_warm_steps is None else args.codec_warm_steps,
    )
    config.check()
    torch.set_num_threads(args.threads or 1)
    synthx = out / "synthx"
    if not (synthx / "train.jsonl").is_file():
        build(synthx, CODEC_BUILD, progress=not args.quiet)
    result = fit_codec(synthx / "train.jsonl", Clips.load(synthx / "test_x.jsonl"), out, config, resume=True,
                       progress=not args.quiet)  # fmt: skip
    numbers = f"frame {result['psnr']:.2f} dB, character {result['character_psnr']:.2f} dB"
    numbers += f", background {result['background_psnr']:.2f} dB, reversal gap {result['reversal_gap_db']:+.2f} dB"
    print(f"held-out test_x: {numbers}")
    print(f"done in {result['fit_time_s']:.0f} s of fitting: {out}")
    return 0


def run_pretrain_base_command(args: argparse.Namespace) -> int:
    import torch

    from animatex_pp.demo.base import pretrain_base
    from animatex_pp.demo.codec import shipped_codec

    out = output_folder(args.pretrain_base, "--pretrain-base", "the base's pretraining")
    if args.codec is None:
        codec = shipped_codec()
    else:
        codec = existing_dir(args.codec, "a codec fit's folder (--codec)", "vae/config.json",
                             "Give the OUT of `animatex-pp demo --fit-codec OUT`.")  # fmt: skip
    torch.set_num_threads(args.threads or 1)
    metrics = pretrain_base(out, codec, steps=args.steps, progress=not args.quiet)
    print(f"done: {metrics['steps']} steps, final loss {metrics['final_loss']:.4f}: {out / 'train' / 'export'}")
    return 0


def run_demo_command(args: argparse.Namespace) -> int:
    demo_only = {"--quick": args.quick, "--ablation": args.ablation, "--steps": args.steps is not None,
                 "--codec": args.codec is not None, "--base": args.base is not None,
                 "--from-scratch": args.from_scratch}  # fmt: skip
    codec_only = {
        "--codec-steps": args.codec_steps is not None,
        "--codec-warm-steps": args.codec_warm_steps is not None,
    }
    if args.pretrain_base is not None:
        others = (args.fit_codec is not None, args.quick, args.ablation, args.base is not None, args.from_scratch)
        if any(codec_only.values()) or any(others):
            raise ValueError("--pretrain-base takes only --codec, --steps, --threads and --quiet")
        return run_pretrain_base_command(args)
    if args.fit_codec is not None:
        if any(demo_only.values()):
            raise ValueError(
                f"--fit-codec fits the codec alone: drop {', '.join(k for k, v in demo_only.items() if v)}"
            )
        return run_fit_codec_command(args)
    if any(codec_only.values()):
        raise ValueError(f"{', '.join(k for k, v in codec_only.items() if v)} only go with --fit-codec OUT")
    from animatex_pp.demo import QUICK, DemoConfig, run_demo

    out = output_folder(args.out, "--out", "the demo")
    config = QUICK if args.quick else DemoConfig()
    if args.base is not None:
        existing_dir(args.base, "a base folder (--base)", "model_index.json",
                     "Give the OUT/base of `animatex-pp demo --pretrain-base OUT`.")  # fmt: skip
    options = {"train_steps": args.steps, "codec": args.codec, "base": args.base, "threads": args.threads,
               "from_scratch": args.from_scratch or None}  # fmt: skip
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
    demo.add_argument(
        "--steps",
        type=positive_int,
        help="training steps (default: the recipe's: synthx_animate; synthx_tiny with --from-scratch, synthx_base "
        "with --pretrain-base)",
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
    demo.add_argument("--fit-codec", metavar="OUT", help="instead of the demo, the research codec fit into OUT")
    demo.add_argument("--codec-steps", type=positive_int, help="with --fit-codec: end-to-end steps (default: 18000)")
    demo.add_argument(
        "--codec-warm-steps", type=non_negative_int, help="with --fit-codec: warm-start steps (default: 600)"
    )
    demo.add_argument("--pretrain-base", metavar="OUT", help="instead of the demo, the SynthX base's pretraining")
    demo.add_argument(
        "--codec", metavar="DIR", help="a codec fit's folder, OUT of --fit-codec OUT (default: the package's codec)"
    )
    demo.add_argument(
        "--base", metavar="DIR", help="a SynthX base, OUT/base of --pretrain-base OUT (default: the package's base)"
    )
    demo.add_argument(
        "--from-scratch",
        action="store_true",
        help="train the whole transformer from random weights (recipe=synthx_tiny) instead of adapters on the base",
    )
    demo.set_defaults(handler=run_demo_command)
