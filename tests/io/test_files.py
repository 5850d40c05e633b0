"""Atomic writes: whole or nothing, earlier outputs kept on failure, ordinary permissions."""

import os
import stat

import pytest

from animatex_pp.io.files import atomic_directory, atomic_output


@pytest.fixture
def umask_022():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def test_file_appears_whole_with_umask_permissions(tmp_path, umask_022):
    target = tmp_path / "video.mp4"
    with atomic_output(target) as temporary:
        assert temporary.parent == tmp_path and temporary.suffix == ".mp4" and temporary != target
        temporary.write_bytes(b"new")
        assert not target.exists()  # nothing visible until the write is complete
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["video.mp4"]


def test_a_failed_write_keeps_the_earlier_file_and_leaves_nothing_behind(tmp_path):
    target = tmp_path / "pose.npz"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="encoder crashed"):
        with atomic_output(target) as temporary:
            temporary.write_bytes(b"half")
            raise RuntimeError("encoder crashed")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pose.npz"]


def test_directory_replaces_an_existing_one_only_when_complete(tmp_path, umask_022):
    target = tmp_path / "pipeline"
    target.mkdir()
    (target / "old.json").write_text("old")
    with pytest.raises(ValueError, match="bad weights"):
        with atomic_directory(target) as staging:
            (staging / "half.json").write_text("half")
            raise ValueError("bad weights")
    assert [p.name for p in target.iterdir()] == ["old.json"]

    with atomic_directory(target) as staging:
        (staging / "model_index.json").write_text("{}")
    assert [p.name for p in target.iterdir()] == ["model_index.json"]
    assert stat.S_IMODE(target.stat().st_mode) == 0o755
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipeline"]
