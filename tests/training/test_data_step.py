"""The config's data step (`data.prepare`): `data=synthx` builds SynthX when a run needs it, on rank 0 only, and
`train(cfg)` itself never builds anything."""

import threading

import pytest

import animatex_pp.synthx.prepare as prepare_module
from animatex_pp.synthx.prepare import build_if_missing
from animatex_pp.training import train
from animatex_pp.training.config import compose_config, prepare_data


@pytest.fixture
def builds(monkeypatch):
    """The builds asked for, as (folder, train clips), instead of building."""
    built = []
    monkeypatch.setattr(prepare_module, "build", lambda folder, config: built.append((folder, config.train)))
    return built


def synthx_config(tmp_path, *extra):
    return compose_config(["recipe=synthx_tiny", f"data.prepare.folder={tmp_path / 'sx'}", "data.prepare.train=3",
                           f"run_dir={tmp_path / 'run'}", *extra])  # fmt: skip


def test_synthx_is_built_only_when_a_run_needs_its_metadata(tmp_path, builds):
    metadata, folder = str(tmp_path / "sx" / "train.jsonl"), str(tmp_path / "sx")
    sizes = {"size": 64, "frames": 17, "train": 3, "test": 1, "seed": 0}
    assert build_if_missing(metadata, folder, **sizes, cache=str(tmp_path)) is None  # a cache holds what it reads
    other = tmp_path / "mine.jsonl"
    assert build_if_missing(str(other), folder, **sizes) is None  # the user's own file: training reports it missing
    assert builds == []
    assert build_if_missing(metadata, folder, **sizes) == tmp_path / "sx"
    assert builds == [(tmp_path / "sx", 3)]
    (tmp_path / "sx").mkdir()
    with pytest.raises(ValueError, match="exists but has no train.jsonl: delete it"):
        build_if_missing(metadata, folder, **sizes)


def test_the_data_step_runs_on_rank_0_and_the_other_ranks_wait_for_its_metadata(tmp_path, builds, monkeypatch):
    cfg = synthx_config(tmp_path)
    prepare_data(cfg)
    assert builds == [(tmp_path / "sx", 3)]
    prepare_data(synthx_config(tmp_path, "mode=plan"))  # a plan reads no data
    prepare_data(synthx_config(tmp_path, f"data.cache={tmp_path}"))  # a cache holds what training reads
    assert len(builds) == 1

    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    (tmp_path / "sx").mkdir()
    writer = threading.Timer(0.5, (tmp_path / "sx" / "train.jsonl").write_text, args=("{}\n",))
    writer.start()  # rank 0's build finishing
    prepare_data(cfg)
    writer.join()
    assert len(builds) == 1 and (tmp_path / "sx" / "train.jsonl").is_file()


def test_train_itself_builds_nothing(tmp_path, builds):
    with pytest.raises(FileNotFoundError, match="metadata file not found.*data.prepare"):
        train(synthx_config(tmp_path))
    assert builds == []
