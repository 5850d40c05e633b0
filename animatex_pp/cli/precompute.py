"""`animatex-pp precompute`: encode a dataset's clips once (VAE, umT5, CLIP) into the training cache.

Arguments and files are checked before any model loads or clip decodes; `animatex_pp.cli` turns
FileNotFoundError and ValueError into exit code 2 with the message.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from animatex_pp.cli.checks import _check_device, _existing_dir, _positive_int, _seed, _size, _writable_folder
from animatex_pp.cli.data import _metadata_file
from animatex_pp.cli.generate import _load_pipeline

EPILOG = """\
examples:
  animatex-pp precompute data/train.jsonl --model animatex-720p --out data/cache --frames 81 \\
      --bucket 480x832 --bucket 832x480 --device cuda

Exit codes: 0 done, 1 failed, 2 bad arguments or files.
"""


def run_precompute(args: argparse.Namespace) -> int:
    metadata = _metadata_file(args.metadata)
    model_dir = _existing_dir(args.model, "a pipeline folder", "model_index.json",
                              "Give a folder written by save_pretrained or `animatex-pp convert`.")  # fmt: skip
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file: give a folder for the cache")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"--out: the folder {out.parent} does not exist; create it first")
    _writable_folder(out if out.is_dir() else out.parent, "--out")
    _check_device(args.device)

    import torch

    from animatex_pp.data.cache import precompute
    from animatex_pp.data.clips import ClipConfig
    from animatex_pp.data.encode import ConditionEncoder

    config = ClipConfig(
        num_frames=args.frames, max_stride=args.max_stride, buckets=tuple(args.bucket or [(480, 832), (832, 480)]),
        seed=args.seed,
    )  # fmt: skip
    # The encoders run in float32: the cache is read by every later run, so it is made at full precision.
    pipe = _load_pipeline(model_dir, dtype={"default": torch.float32}).to(args.device)
    index = precompute(
        metadata, out, ConditionEncoder(pipe), config, encoder_name=str(model_dir.resolve()),
        shard_size=args.shard_size, device=args.device, progress=not args.quiet,
    )  # fmt: skip
    samples = sum(len(shard["samples"]) for shard in index["shards"].values())
    print(f"wrote {out}: {samples} clips in {len(index['shards'])} shards, {len(index['failed'])} failed to decode, "
          f"{len(index['skipped'])} skipped")  # fmt: skip
    return 0


def _frames(text: str) -> int:
    value = _positive_int(text)
    if (value - 1) % 4:
        raise argparse.ArgumentTypeError(f"must be 4k + 1 (e.g. 17, 81), got {text}")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    pre = subparsers.add_parser(
        "precompute",
        help="encode a dataset's clips once (VAE, umT5, CLIP) into safetensors shards for training",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    pre.add_argument("metadata", help="metadata file (.jsonl or .csv)")
    pre.add_argument("--model", required=True, help="pipeline folder whose encoders are used")
    pre.add_argument("--out", required=True, help="cache folder (created; an interrupted run continues in it)")
    pre.add_argument("--frames", type=_frames, default=81, help="frames per clip, 4k + 1 (default: 81)")
    pre.add_argument("--max-stride", type=_positive_int, default=1, help="largest frame stride drawn (default: 1)")
    pre.add_argument("--bucket", type=_size, action="append",
                     help="a resolution bucket HxW, repeatable (default: 480x832 and 832x480)")  # fmt: skip
    pre.add_argument("--seed", type=_seed, default=0, help="the data seed, as in training (default: 0)")
    pre.add_argument("--shard-size", type=_positive_int, default=64, help="clips per shard (default: 64)")
    pre.add_argument("--device", default="cpu", help="device for the encoders (default: cpu)")
    pre.add_argument("--quiet", action="store_true", help="no progress bar")
    pre.set_defaults(handler=run_precompute)
