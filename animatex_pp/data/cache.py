"""Precompute: the frozen encoders' outputs for every clip, written once, so training never loads those encoders.

`precompute` cuts each clip as the on-the-fly dataset would at step 0 on rank 0 (`SampleKey(0, 0, index)`: window,
stride and reference frame), encodes it with `ConditionEncoder` (VAE latents of the clip and of the I2V condition,
umT5 prompt states, Wan CLIP image states, pooled CLIP of the driving frames) and writes safetensors shards of
`shard_size` samples plus `index.json`. What the cache fixes: the window and the reference frame of each clip.
What stays random per step: the EPI augmentation of the pose (the window's pose is stored and rendered after the
step's EPI draw), condition dropout, σ and the noise. So a cached sample at step 0 on rank 0 gives exactly the
model inputs of the on-the-fly path for the same key.

Resumable: a shard is written to a hidden temporary file and renamed when complete, then the index is rewritten
the same way, so an interrupted run leaves the finished shards, and the next run does only the rest. What the cache
was made with (the metadata's content, the clip settings, the encoders) is its stage record, `stage.json`
(`animatex_pp.io.stages`): a cache made with other settings is refused rather than mixed.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from animatex_pp.data.clips import ClipConfig, ClipDataset, SampleKey, collate, make_epi, pose_inputs
from animatex_pp.data.encode import ENCODED_TENSORS, ConditionEncoder
from animatex_pp.data.metadata import ClipRecord, read_metadata
from animatex_pp.io.files import atomic_output
from animatex_pp.io.stages import file_digest, open_stage, read_marker
from animatex_pp.pose.augment import EPIAugment
from animatex_pp.pose.sequence import PoseSequence

logger = logging.getLogger(__name__)

CACHE_FORMAT = "animatex_pp.PrecomputeCache/1"
INDEX_FILE = "index.json"
EPI_POOL_FILE = "epi_pool.safetensors"


STAGE_FILE = "stage.json"


def _write_json(path: Path, data: Any) -> None:
    with atomic_output(path) as temporary:
        temporary.write_text(json.dumps(data, indent=1))


def _pose_tensors(prefix: str, pose: PoseSequence) -> dict[str, torch.Tensor]:
    return {f"{prefix}/{name}": torch.from_numpy(array) for name, array in pose._arrays().items()}


def _pose_from(tensors: dict[str, torch.Tensor], prefix: str, size: tuple[int, int]) -> PoseSequence:
    arrays = {
        name[len(prefix) + 1 :]: tensor.numpy() for name, tensor in tensors.items() if name.startswith(f"{prefix}/")
    }
    return PoseSequence(**arrays, width=size[1], height=size[0])


def extract_missing_poses(records: list[ClipRecord], folder: Path, progress: bool = True) -> tuple[dict, dict]:
    """Extract (once: existing files are kept) the poses an animation clip lacks, into `folder`.

    Returns `poses` and `reference_poses`, line -> pose file, as `ClipDataset` takes them.
    """
    from animatex_pp.pose.extract import extract  # the pose extra: imported only when a pose is missing

    missing = [record for record in records if record.task == "animation" and record.pose is None]
    references = [
        record
        for record in records
        if record.task == "animation" and record.reference is not None and record.reference_pose is None
    ]
    poses, reference_poses = {}, {}
    if not missing and not references:
        return poses, reference_poses
    folder.mkdir(parents=True, exist_ok=True)
    jobs = [(record.video, folder / f"line-{record.line}.npz", poses, record.line) for record in missing]
    jobs += [(r.reference, folder / f"line-{r.line}.reference.npz", reference_poses, r.line) for r in references]
    for source, target, found, line in tqdm(jobs, desc="extracting missing poses", disable=not progress):
        if not target.exists():
            extract(source, progress=False).save(target)
        found[line] = str(target)
    return poses, reference_poses


def cache_settings(metadata: Path, config: ClipConfig, encoder_name: str) -> dict[str, Any]:
    """What a cache depends on: the metadata's content, the settings that cut clips, and the encoders."""
    settings = dataclasses.asdict(config)
    window = {name: settings[name] for name in ("num_frames", "max_stride", "buckets", "size_multiple", "seed")}
    return {"format": CACHE_FORMAT, "metadata_sha256": file_digest(metadata), "clips": window,
            "encoder": encoder_name}  # fmt: skip


def precompute(
    metadata: str | os.PathLike,
    out: str | os.PathLike,
    encoder: ConditionEncoder,
    config: ClipConfig,
    encoder_name: str = "",
    shard_size: int = 64,
    device: torch.device | str = "cpu",
    progress: bool = True,
    on_shard: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Encode every usable clip of `metadata` into the cache folder `out`; returns the index.

    `encoder_name` identifies the encoders in the fingerprint (e.g. the pipeline's path). `on_shard(k)` is called
    after shard k is safely written (tests use it to interrupt a run).
    """
    metadata, out = Path(metadata), Path(out)
    if shard_size < 1:
        raise ValueError(f"--shard-size must be at least 1, got {shard_size}")
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file: give a folder for the cache")
    report = read_metadata(metadata)
    report.require_usable()
    out.mkdir(parents=True, exist_ok=True)
    stage = open_stage(out / STAGE_FILE, cache_settings(metadata, config, encoder_name), on_change="refuse",
                       what=f"the cache folder {out}")  # fmt: skip
    index_path = out / INDEX_FILE
    if stage.status != "fresh" and index_path.exists():
        index = json.loads(index_path.read_text())
    else:
        index = {"format": CACHE_FORMAT, "shards": {}, "failed": []}

    poses, reference_poses = extract_missing_poses(report.clips, out / "poses", progress)
    dataset = ClipDataset(report.clips, config, poses=poses, reference_poses=reference_poses)
    index["skipped"] = [{"line": line, "reason": reason} for line, reason in dataset.skipped]
    if not (out / EPI_POOL_FILE).exists():
        pool = {}
        for entry, pose in enumerate(dataset.epi.pool):
            pool.update(_pose_tensors(f"{entry}", pose))
        sizes = {str(entry): [pose.height, pose.width] for entry, pose in enumerate(dataset.epi.pool)}
        with atomic_output(out / EPI_POOL_FILE) as temporary:
            save_file(pool, str(temporary), metadata={"sizes": json.dumps(sizes)})

    num_shards = -(-len(dataset) // shard_size)
    done = {int(k) for k in index["shards"]}
    bar = tqdm(total=len(dataset), desc="precompute", unit="clip", disable=not progress)
    bar.update(sum(len(index["shards"][str(k)]["samples"]) for k in done))
    for shard in range(num_shards):
        if shard in done:
            continue
        tensors, samples, failed = {}, [], []
        for position in range(shard * shard_size, min((shard + 1) * shard_size, len(dataset))):
            key = SampleKey(0, 0, position)
            record = dataset.records[position]
            window = dataset.window(key)
            try:
                raw = dataset.read(position, window)
            except (ValueError, OSError) as error:
                failed.append({"line": record.line, "reason": str(error)})
                bar.update()
                continue
            sample = dataset.sample(raw, key)
            inputs = encoder.encode(collate([sample]), device)
            tensors.update({f"{position}/{name}": inputs[name][0].contiguous().cpu() for name in ENCODED_TENSORS
                            if name in inputs})  # fmt: skip
            if raw.pose is not None:
                tensors.update(_pose_tensors(f"{position}/pose", raw.pose))
                tensors.update(_pose_tensors(f"{position}/reference_pose", raw.reference_pose))
            samples.append(
                {"index": position, "line": record.line, "task": record.task, "caption": record.caption,
                 "bucket": list(dataset.buckets[position]), "window": dataclasses.asdict(window),
                 "pose_size": None if raw.pose is None else [raw.pose.height, raw.pose.width]}
            )  # fmt: skip
            bar.update()
        name = f"shard-{shard:05d}.safetensors"
        with atomic_output(out / name) as temporary:
            save_file(tensors, str(temporary))
        index["shards"][str(shard)] = {"file": name, "samples": samples}
        index["failed"] += failed
        _write_json(index_path, index)
        if on_shard is not None:
            on_shard(shard)
    bar.close()
    if index["failed"]:
        logger.warning("%d clips failed to decode and are not in the cache; first: %s", len(index["failed"]),
                       index["failed"][0])  # fmt: skip
    stage.finish({"samples": sum(len(shard["samples"]) for shard in index["shards"].values()),
                  "failed": len(index["failed"]), "skipped": len(index["skipped"])})  # fmt: skip
    return index


class CachedClipDataset(Dataset):
    """The samples of a precompute cache, as model inputs; index with a `SampleKey` as `ClipDataset`.

    Encoded tensors come from the cache; an animation sample's pose tensors are rendered from the stored window
    pose after the key's EPI draw, exactly as `ClipDataset` does (`config` gives EPI's settings and seed).
    """

    def __init__(self, folder: str | os.PathLike, config: ClipConfig):
        self.folder = Path(folder)
        index_path = self.folder / INDEX_FILE
        if not index_path.is_file():
            raise FileNotFoundError(
                f"no precompute cache in {self.folder} (no {INDEX_FILE}): run `animatex-pp precompute`"
            )
        index = json.loads(index_path.read_text())
        stage = read_marker(self.folder / STAGE_FILE)
        if index.get("format") != CACHE_FORMAT or stage is None:
            raise ValueError(f"{self.folder} is not a precompute cache of this version: run `animatex-pp precompute`")
        expected = stage["settings"]["clips"]
        for name in ("num_frames", "seed"):
            if expected[name] != getattr(config, name):
                raise ValueError(
                    f"the cache in {self.folder} was cut with {name}={expected[name]}, the data config asks for "
                    f"{getattr(config, name)}: precompute again with these settings, or use the cache's"
                )
        self.config = config
        self.samples = sorted(
            (dict(sample, file=shard["file"]) for shard in index["shards"].values() for sample in shard["samples"]),
            key=lambda sample: sample["index"],
        )
        if not self.samples:
            raise ValueError(f"the cache in {self.folder} holds no sample: every clip failed (see {INDEX_FILE})")
        self.tasks = [sample["task"] for sample in self.samples]
        self.buckets = [tuple(sample["bucket"]) for sample in self.samples]
        self.epi = self._load_epi()

    def _load_epi(self) -> EPIAugment:
        with safe_open(self.folder / EPI_POOL_FILE, framework="pt") as file:
            sizes = json.loads(file.metadata()["sizes"])
            tensors = {name: file.get_tensor(name) for name in file.keys()}  # noqa: SIM118 (safe_open has no iter)
        return make_epi([_pose_from(tensors, entry, tuple(size)) for entry, size in sizes.items()], self.config)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: SampleKey | tuple[int, int, int]) -> dict[str, Any]:
        key = SampleKey(*key)
        entry = self.samples[key.index]
        prefix = f"{entry['index']}/"
        with safe_open(self.folder / entry["file"], framework="pt") as file:
            names = [name for name in file.keys() if name.startswith(prefix)]  # noqa: SIM118
            tensors = {name[len(prefix) :]: file.get_tensor(name) for name in names}
        sample: dict[str, Any] = {name: tensors[name] for name in ENCODED_TENSORS if name in tensors}
        sample.update(caption=entry["caption"], task=entry["task"], replaced=0)
        sample["key"] = torch.tensor(key, dtype=torch.int64)
        if entry["task"] == "animation":
            size = tuple(entry["pose_size"])
            pose, reference_pose = _pose_from(tensors, "pose", size), _pose_from(tensors, "reference_pose", size)
            # The EPI draw is keyed by the sample's index in the clip list, as on the fly.
            epi_key = SampleKey(key.step, key.rank, entry["index"])
            sample.update(pose_inputs(pose, reference_pose, epi_key, self.epi, self.config, *entry["bucket"]))
        return sample
