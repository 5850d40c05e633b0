"""Precompute: the cache gives the on-the-fly path's model inputs, survives interruption, refuses other settings."""

import json

import pytest
import torch

from animatex_pp.cli import main
from animatex_pp.data.cache import CachedClipDataset, precompute
from animatex_pp.data.clips import ClipConfig, ClipDataset, SampleKey, collate, pose_inputs
from animatex_pp.data.encode import ConditionEncoder
from animatex_pp.data.metadata import read_metadata
from animatex_pp.io.video import read_video, write_video
from animatex_pp.pipelines.conditioning import resize_frames
from animatex_pp.testing import tiny_pipeline

CONFIG = ClipConfig(num_frames=9, max_stride=2, buckets=((96, 64), (64, 96)), epi_probability=1.0, seed=5)


@pytest.fixture(scope="module")
def encoder():
    return ConditionEncoder(tiny_pipeline(seed=0))


@pytest.fixture(scope="module")
def cache(clip_folder, encoder, tmp_path_factory):
    out = tmp_path_factory.mktemp("cache") / "cache"
    precompute(clip_folder / "metadata.jsonl", out, encoder, CONFIG, encoder_name="tiny", shard_size=3,
               progress=False)  # fmt: skip
    return out


def test_cache_and_on_the_fly_give_the_same_model_inputs(clip_folder, encoder, cache):
    live = ClipDataset(read_metadata(clip_folder / "metadata.jsonl").clips, CONFIG)
    cached = CachedClipDataset(cache, CONFIG)
    assert len(cached) == len(live) == 7
    for index in (0, 5):  # an animation and a ti2v clip
        key = SampleKey(0, 0, index)
        expected = encoder.encode(collate([live[key]]))
        got = collate([cached[key]])
        assert set(got) - {"caption", "task", "key", "replaced"} == set(expected), index
        for name, tensor in expected.items():
            assert torch.equal(got[name], tensor), (index, name)
    # what stays random: the EPI draw of a later step differs from step 0's, in the cache as on the fly
    later = cached[SampleKey(9, 0, 0)]
    assert torch.equal(later["latents"], cached[SampleKey(0, 0, 0)]["latents"])
    assert not torch.equal(later["pose_keypoints"], cached[SampleKey(0, 0, 0)]["pose_keypoints"])
    # ... drawn as the live dataset draws step 9's EPI, on the window the cache fixed (step 0's)
    raw = live.read(0, live.window(SampleKey(0, 0, 0)))
    redrawn = pose_inputs(raw.pose, raw.reference_pose, SampleKey(9, 0, 0), live.epi, CONFIG, 96, 64)
    assert torch.equal(later["pose_keypoints"], redrawn["pose_keypoints"])


def test_an_interrupted_precompute_keeps_its_shards_and_continues(clip_folder, encoder, tmp_path):
    out = tmp_path / "cache"

    def stop_after_first(shard):
        if shard == 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        precompute(clip_folder / "metadata.jsonl", out, encoder, CONFIG, encoder_name="tiny", shard_size=3,
                   progress=False, on_shard=stop_after_first)  # fmt: skip
    index = json.loads((out / "index.json").read_text())
    assert list(index["shards"]) == ["0"]
    assert sorted(path.name for path in out.iterdir()) == ["epi_pool.safetensors", "index.json",
                                                          "shard-00000.safetensors", "stage.json"]  # fmt: skip
    assert json.loads((out / "stage.json").read_text())["done"] is False
    first_shard = (out / "shard-00000.safetensors").read_bytes()
    written = []
    index = precompute(clip_folder / "metadata.jsonl", out, encoder, CONFIG, encoder_name="tiny", shard_size=3,
                       progress=False, on_shard=written.append)  # fmt: skip
    assert written == [1, 2] and (out / "shard-00000.safetensors").read_bytes() == first_shard
    assert sum(len(shard["samples"]) for shard in index["shards"].values()) == 7
    assert json.loads((out / "stage.json").read_text())["result"]["samples"] == 7
    assert not [path for path in out.iterdir() if path.name.startswith(".")]  # no temporary left behind


def test_a_cache_of_other_settings_is_refused(clip_folder, encoder, cache):
    other = ClipConfig(num_frames=13, buckets=CONFIG.buckets, seed=5)
    changed = r"other settings \(clips.max_stride: 2 before, 1 now; clips.num_frames: 9 before, 13 now\)"
    with pytest.raises(ValueError, match=changed):
        precompute(clip_folder / "metadata.jsonl", cache, encoder, other, encoder_name="tiny", progress=False)
    with pytest.raises(ValueError, match="cut with num_frames=9"):
        CachedClipDataset(cache, other)
    with pytest.raises(FileNotFoundError, match="run `animatex-pp precompute`"):
        CachedClipDataset(clip_folder, CONFIG)


def test_precompute_command_extracts_missing_poses_and_reports(clip_folder, shared_assets, tmp_path, capsys):
    model = tmp_path / "tiny"
    tiny_pipeline().save_pretrained(model)
    rows = [json.loads(line) for line in (clip_folder / "metadata.jsonl").read_text().splitlines()[:1]]
    rows[0].pop("pose")  # extracted by precompute
    # The dance at 192 x 128, where MediaPipe finds the whole torso in every frame; at the fixture's 96 x 64 the
    # dancer is so small that whether it does depends on the CPU's kernels (it found none on one machine).
    dance, fps = read_video(shared_assets / "videos" / "dance_anime_32f.mp4")
    write_video(tmp_path / "dance.mp4", resize_frames(dance, 192, 128), fps)
    rows[0]["video"] = str(tmp_path / "dance.mp4")
    rows.append({"video": str(clip_folder / "clips" / "walk_0.mp4"), "task": "ti2v", "caption": "still"})
    metadata = tmp_path / "two.jsonl"
    metadata.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    out = tmp_path / "cache"
    code = main(["precompute", str(metadata), "--model", str(model), "--out", str(out), "--frames", "9",
                 "--bucket", "96x64", "--quiet"])  # fmt: skip
    assert code == 0
    assert "2 clips in 1 shards, 0 failed to decode" in capsys.readouterr().out
    assert (out / "poses" / "line-1.npz").is_file()
    assert len(CachedClipDataset(out, ClipConfig(num_frames=9, buckets=((96, 64),)))) == 2

    assert main(["precompute", str(metadata), "--model", str(tmp_path), "--out", str(out)]) == 2
    assert main(["precompute", str(metadata), "--model", str(model), "--out", str(out), "--frames", "8"]) == 2
    assert main(["precompute", str(tmp_path / "no.jsonl"), "--model", str(model), "--out", str(out)]) == 2
