"""`animatex-pp precompute`: encode a dataset's clips once (VAE, umT5, CLIP) into the training cache.

Arguments and files (the frame count against the model's VAE too) are checked before any model loads or clip
decodes; `animatex_pp.cli` turns FileNotFoundError and ValueError into exit code 2 with the message.
"""

from __future__ import annotations

import argparse

from animatex_pp.cli.checks import (
    check_device,
    existing_dir,
    existing_file,
    height_width,
    output_folder,
    positive_int,
    random_seed,
)

EPILOG = """\
examples:
  animatex-pp precompute data/train.jsonl --model animatex-720p --out data/cache --frames 81 \\
      --bucket 480x832 --bucket 832x480 --device cuda

Exit codes: 0 done, 1 failed, 2 bad arguments or files.
"""


def run_precompute(args: argparse.Namespace) -> int:
    metadata = existing_file(args.metadata, "metadata file")
    model_dir = existing_dir(args.model, "a pipeline folder", "model_index.json",
                             "Give a folder written by save_pretrained or `animatex-pp convert`.")  # fmt: skip
    out = output_folder(args.out, "--out", "the cache", {"the metadata file": metadata, "--model": model_dir})
    check_device(args.device)

    from animatex_pp.pipelines.loading import load_pipeline, read_pipeline_geometry

    read_pipeline_geometry(model_dir).factors.check_frame_count(args.frames, "--frames")

    from animatex_pp.data.cache import precompute
    from animatex_pp.data.clips import ClipConfig
    from animatex_pp.data.encode import ConditionEncoder
    from animatex_pp.pipelines.placement import move_encoders, transformer_without_weights

    config = ClipConfig(
        num_frames=args.frames, max_stride=args.max_stride, buckets=tuple(args.bucket or [(480, 832), (832, 480)]),
        seed=args.seed,
    )  # fmt: skip
    # The encoders run in float32: the cache is read by every later run, so it is made at full precision. Only they
    # go to the device, and the transformer's weights are never read: precompute never runs it, and reads only its
    # config and stream layout.
    transformer = transformer_without_weights(model_dir)
    pipe = move_encoders(load_pipeline(model_dir, dtype="fp32", transformer=transformer), args.device)
    index = precompute(
        metadata, out, ConditionEncoder(pipe), config, encoder_name=str(model_dir.resolve()),
        shard_size=args.shard_size, device=args.device, progress=not args.quiet,
    )  # fmt: skip
    samples = sum(len(shard["samples"]) for shard in index["shards"].values())
    print(f"wrote {out}: {samples} clips in {len(index['shards'])} shards, {len(index['failed'])} failed to decode, "
          f"{len(index['skipped'])} skipped")  # fmt: skip
    return 0


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
    pre.add_argument("--frames", type=positive_int, default=81, help="frames per clip, 4k + 1 (default: 81)")
    pre.add_argument("--max-stride", type=positive_int, default=1, help="largest frame stride drawn (default: 1)")
    pre.add_argument("--bucket", type=height_width, action="append",
                     help="a resolution bucket HxW, repeatable (default: 480x832 and 832x480)")  # fmt: skip
    pre.add_argument("--seed", type=random_seed, default=0, help="the data seed, as in training (default: 0)")
    pre.add_argument("--shard-size", type=positive_int, default=64, help="clips per shard (default: 64)")
    pre.add_argument("--device", default="cpu", help="device for the encoders (default: cpu)")
    pre.add_argument("--quiet", action="store_true", help="no progress bar")
    pre.set_defaults(handler=run_precompute)
