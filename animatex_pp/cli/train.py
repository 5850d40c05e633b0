"""`animatex-pp train [HYDRA OVERRIDES...]`: the Hydra command line over the config's data step and `train(cfg)`.

Everything after `train` is Hydra's: overrides (`recipe=synthx_tiny trainer.max_steps=100`), `-m` for a sweep,
`--cfg job` to print the composed config, `--help` for the config groups.
"""

from __future__ import annotations

import argparse
import json
import sys

EPILOG = """\
examples:
  animatex-pp train recipe=synthx_tiny
  animatex-pp train recipe=synthx_tiny deepspeed=zero2 trainer.num_processes=2
  animatex-pp train recipe=animatex_pp_wan14b_480p mode=plan
  animatex-pp train -m recipe=synthx_ablation
  animatex-pp train recipe=synthx_tiny resume=auto hydra.run.dir=outputs/my_run

Exit codes: 0 done, 1 failed, 2 bad arguments, config or files.
"""


def _hydra_main():
    import hydra

    from animatex_pp.training.config import CONFIG_NAME, config_dir, register_configs

    register_configs()

    @hydra.main(config_path=str(config_dir()), config_name=CONFIG_NAME, version_base="1.3")
    def hydra_train(cfg):
        from omegaconf.errors import OmegaConfBaseException

        from animatex_pp.training.config import prepare_data
        from animatex_pp.training.trainer import train

        try:
            prepare_data(cfg)
            metrics = train(cfg)
        except (ValueError, FileNotFoundError, OmegaConfBaseException) as error:
            print(f"animatex-pp train: error: {error}", file=sys.stderr)
            raise SystemExit(2) from None
        printable = {key: value for key, value in metrics.items() if not isinstance(value, (list, dict))}
        print(json.dumps(printable, indent=1))
        return metrics

    return hydra_train


def run_train(args: argparse.Namespace) -> int:
    # Hydra reads its arguments from sys.argv; the program name is what its --help shows.
    sys.argv = ["animatex-pp train", *args.overrides]
    try:
        _hydra_main()()
    except SystemExit as exit_:
        # Hydra ends its own errors (a bad override) with exit code 1; ours with 2
        return exit_.code if isinstance(exit_.code, int) else 1
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    # No option of its own (prefix characters no argument starts with): every argument, `-m` and `--help`
    # included, is passed to Hydra untouched.
    train = subparsers.add_parser(
        "train",
        help="train a model from a Hydra config (recipes: recipe=synthx_tiny, ...)",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        prefix_chars="\0",
        add_help=False,
    )
    train.add_argument("overrides", nargs=argparse.REMAINDER, help="Hydra overrides, -m, --cfg job, --help")
    train.set_defaults(handler=run_train)
