"""The SynthX base: the demo's DiT pretrained offline on SynthX image + caption -> video (`recipe=synthx_base`), as
Wan2.1 is a pretrained image-to-video model before Animate-X++ trains its adapters on it (docs/results.md, "The
SynthX base"). `animatex-pp demo --pretrain-base OUT` runs `pretrain_base`; every part resumes where it stopped.

The package ships one (`weights/base`, `shipped_base`): a pipeline folder without its VAE (the shipped codec is the
one it was trained on, recorded by digest in its `base_fit.json`), the transformer stored in float16 and without
the pose streams, which Animate-X++ adds fresh to a base as it does to Wan2.1. `base_pipeline` puts a base and its
codec together into a folder the trainer and the pipeline load.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from animatex_pp.demo.codec import CODEC_BUILD, WEIGHTS_FILE
from animatex_pp.io.files import atomic_directory, atomic_output
from animatex_pp.io.stages import file_digest
from animatex_pp.synthx.build import BuildConfig

__all__ = [
    "BASE_FIT_FILE", "I2V_METADATA", "base_pipeline", "i2v_metadata", "package_base", "pretrain_base",
    "pretraining_overrides", "precompute_for_run", "shipped_base",
]  # fmt: skip

I2V_METADATA = "train_i2v.jsonl"  # written beside the SynthX split it comes from, so its relative paths hold
BASE_FIT_FILE = "base_fit.json"  # how the base was made: its recipe, steps, loss, time and codec's digest
SHIPPED_BASE = Path(__file__).resolve().parent / "weights" / "base"
# float16 halves the shipped file (4.5 -> 2.3 MB); it is loaded as float32 (docs/results.md measures the difference)
SHIPPED_DTYPE = "float16"


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
    pipeline in `out/train/export/pipeline`), and that pipeline in the package's layout in `out/base`
    (`package_base`: what `weights/base` holds). Rerun the same call to continue an interrupted one. Returns the
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
    metrics = train(compose_config([*overrides, "resume=auto"]))
    record = {"recipe": "synthx_base", "command": "animatex-pp demo --pretrain-base OUT",
              **{name: metrics[name] for name in ("steps", "first_loss", "final_loss", "wall_time_s")}}  # fmt: skip
    package_base(metrics["export"], codec, out / "base", record)
    return metrics


def package_base(pipeline: str | os.PathLike, codec: str | os.PathLike, target: str | os.PathLike,
                 record: dict[str, Any]) -> Path:  # fmt: skip
    """`pipeline`, a pretrained base's exported folder, in the package's layout in `target` (`weights/base` is
    one): every component but the VAE, the transformer in `SHIPPED_DTYPE` without the pose streams' weights (the
    base never trains them), and `BASE_FIT_FILE` with `record` and the digest of `codec`'s VAE weights."""
    import torch
    from safetensors.torch import load_file, save_file

    from animatex_pp.models.transformer import AnimateXTransformer3DModel

    pipeline, target = Path(pipeline), Path(target)
    weights = pipeline / "transformer" / WEIGHTS_FILE
    state = load_file(weights)
    streams = tuple(f"{name}." for name in AnimateXTransformer3DModel.stream_names)
    kept = {name: tensor.to(getattr(torch, SHIPPED_DTYPE)) for name, tensor in state.items()
            if not name.startswith(streams)}  # fmt: skip
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_directory(target) as folder:
        for entry in pipeline.iterdir():
            if entry.is_dir() and entry.name not in ("vae", "transformer"):
                shutil.copytree(entry, folder / entry.name)
            elif entry.is_file():
                shutil.copy2(entry, folder / entry.name)
        (folder / "transformer").mkdir()
        shutil.copy2(pipeline / "transformer" / "config.json", folder / "transformer" / "config.json")
        save_file(kept, folder / "transformer" / WEIGHTS_FILE, metadata={"format": "pt"})
        fit = {**record, "codec_sha256": file_digest(Path(codec) / "vae" / WEIGHTS_FILE),
               "stored_dtype": SHIPPED_DTYPE,
               "parameters": sum(tensor.numel() for tensor in kept.values())}  # fmt: skip
        (folder / BASE_FIT_FILE).write_text(json.dumps(fit, indent=1) + "\n", encoding="utf-8")
    return target


def shipped_base() -> Path:
    """The folder of the base the package ships, checked to be whole."""
    for name in ("model_index.json", "transformer/config.json", f"transformer/{WEIGHTS_FILE}", BASE_FIT_FILE):
        if not (SHIPPED_BASE / name).is_file():
            raise FileNotFoundError(
                f"the package's base is incomplete ({SHIPPED_BASE / name} is missing): reinstall animatex_pp, or "
                "pretrain one with `animatex-pp demo --pretrain-base OUT` and give it as --base OUT/base"
            )
    return SHIPPED_BASE


def check_base(base: str | os.PathLike, codec: str | os.PathLike) -> Path:
    """`base` (the package's layout, or a whole pipeline folder) checked to hold a transformer and to have been
    trained on `codec` (a folder holding vae/), before any work starts; returns it as a Path."""
    base, codec = Path(base), Path(codec)
    if not (base / "model_index.json").is_file() or not (base / "transformer" / "config.json").is_file():
        raise FileNotFoundError(
            f"no base in {base} (no model_index.json and transformer/): give --base the OUT/base of "
            "`animatex-pp demo --pretrain-base OUT`, or a pipeline folder"
        )
    if (base / BASE_FIT_FILE).is_file():
        trained_on = json.loads((base / BASE_FIT_FILE).read_text(encoding="utf-8")).get("codec_sha256")
    elif (base / "vae" / WEIGHTS_FILE).is_file():
        trained_on = file_digest(base / "vae" / WEIGHTS_FILE)
    else:
        trained_on = None
    if trained_on is not None and trained_on != file_digest(codec / "vae" / WEIGHTS_FILE):
        raise ValueError(
            f"the base in {base} was pretrained on another codec than {codec}: a base's latents are its codec's. "
            "Give --codec the codec it was pretrained with, or pretrain a base on this one (--pretrain-base OUT "
            "--codec DIR)"
        )
    return base


def base_pipeline(base: str | os.PathLike, codec: str | os.PathLike, target: str | os.PathLike) -> Path:
    """A loadable pipeline folder in `target`: `base`'s components (`check_base`) with `codec`'s vae/ (a pipeline
    folder's own VAE is replaced, checked to be the same weights)."""
    base, codec, target = check_base(base, codec), Path(codec), Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_directory(target) as folder:
        for entry in base.iterdir():
            if entry.is_dir() and entry.name != "vae":
                shutil.copytree(entry, folder / entry.name)
            elif entry.is_file() and entry.name != BASE_FIT_FILE:
                shutil.copy2(entry, folder / entry.name)
        shutil.copytree(codec / "vae", folder / "vae")
    return target
