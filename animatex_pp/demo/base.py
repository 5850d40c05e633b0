"""The SynthX base: the demo's DiT pretrained offline on SynthX image + caption -> video (`recipe=synthx_base`), as
Wan2.1 is a pretrained image-to-video model before Animate-X++ trains its adapters on it (docs/results.md, "The
SynthX base"). `animatex-pp demo --pretrain-base OUT` runs `pretrain_base`; every part resumes where it stopped.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from animatex_pp.demo.codec import CODEC_BUILD
from animatex_pp.io.files import atomic_directory, atomic_output
from animatex_pp.synthx.build import BuildConfig

__all__ = ["I2V_METADATA", "i2v_metadata", "pretrain_base", "pretraining_overrides", "precompute_for_run"]

I2V_METADATA = "train_i2v.jsonl"  # written beside the SynthX split it comes from, so its relative paths hold


def i2v_metadata(split: str | os.PathLike) -> Path:
    """Every clip of a SynthX split as a ti2v clip (image + caption -> video), in `I2V_METADATA` beside it.

    SynthX's animation captions name the motion ("a human-like character sways, the camera stays still"), so the
    base learns motion from text as an I2V model does; the pose fields stay in the rows and no ti2v batch reads them.
    """
    split = Path(split)
    rows = [json.loads(line) for line in split.read_text(encoding="utf-8").splitlines() if line.strip()]
    target = split.parent / I2V_METADATA
    with atomic_output(target) as temporary:
        temporary.write_text("".join(json.dumps({**row, "task": "ti2v"}) + "\n" for row in rows), encoding="utf-8")
    return target


def precompute_for_run(overrides: list[str], metadata: Path, cache: Path, encoder_name: str, progress: bool) -> dict:
    """The clips of `metadata` through the frozen encoders of the training run that `overrides` compose, with the
    clip settings that run will use (both from the one composed config); resumes per shard. Returns the index's
    counts: samples, failed and skipped clips."""
    from omegaconf import OmegaConf

    from animatex_pp.data.cache import precompute
    from animatex_pp.data.clips import ClipConfig
    from animatex_pp.data.encode import ConditionEncoder
    from animatex_pp.training.config import compose_config
    from animatex_pp.training.model import build_pipeline

    cfg = OmegaConf.to_container(compose_config(overrides), resolve=True)
    clips = cfg["data"]["clips"]
    clip_config = ClipConfig(**{**clips, "buckets": tuple(map(tuple, clips["buckets"]))}, seed=cfg["seed"])
    index = precompute(metadata, cache, ConditionEncoder(build_pipeline(cfg["model"])), clip_config,
                       encoder_name=encoder_name, progress=progress)  # fmt: skip
    return {"samples": sum(len(shard["samples"]) for shard in index["shards"].values()),
            "failed": len(index["failed"]), "skipped": len(index["skipped"])}  # fmt: skip


def pretraining_overrides(out: Path, steps: int | None = None) -> list[str]:
    """`recipe=synthx_base` on `pretrain_base`'s folder layout."""
    overrides = [
        "recipe=synthx_base",
        f"data.metadata={out / 'synthx' / I2V_METADATA}",
        f"data.cache={out / 'cache'}",
        f"model.path={out / 'codec'}",
        f"run_dir={out / 'train'}",
    ]
    return overrides if steps is None else [*overrides, f"trainer.max_steps={steps}"]


def pretrain_base(
    out: str | os.PathLike,
    codec: str | os.PathLike,
    steps: int | None = None,
    build_config: BuildConfig = CODEC_BUILD,
    progress: bool = True,
) -> dict[str, Any]:
    """Pretrain the base into `out`: SynthX (`build_config`; default the codec fit's build) in `out/synthx`,
    `codec`'s `vae/` copied to `out/codec`, the precompute cache in `out/cache`, the run in `out/train` (its
    pipeline in `out/train/export/pipeline`). Rerun the same call to continue an interrupted one. Returns the
    run's metrics."""
    from animatex_pp.synthx.build import build
    from animatex_pp.training import train
    from animatex_pp.training.config import compose_config

    out, codec = Path(out), Path(codec)
    if not (codec / "vae" / "config.json").is_file():
        raise FileNotFoundError(f"no codec in {codec}: give a folder with vae/ (animatex-pp demo --fit-codec OUT)")
    out.mkdir(parents=True, exist_ok=True)
    synthx = out / "synthx"
    if not (synthx / "train.jsonl").is_file():
        build(synthx, build_config, progress=progress)
    metadata = i2v_metadata(synthx / "train.jsonl")
    if not (out / "codec" / "vae").is_dir():
        (out / "codec").mkdir(parents=True, exist_ok=True)
        with atomic_directory(out / "codec" / "vae") as folder:
            shutil.copytree(codec / "vae", folder, dirs_exist_ok=True)
    overrides = pretraining_overrides(out, steps)
    precompute_for_run(overrides, metadata, out / "cache", f"synthx base codec {codec.resolve()}", progress)
    return train(compose_config([*overrides, "resume=auto"]))
