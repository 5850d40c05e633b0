"""`animatex-pp eval` under `torchrun --nproc-per-node 2`: the ranks evaluate disjoint halves of the clips, rank 0
writes the table a single process writes, and a rank killed mid-run resumes from the clips it saved."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from animatex_pp.synthx.build import BuildConfig, build

pytestmark = pytest.mark.slow

ENTRY = Path(__file__).with_name("torchrun_eval.py")
# Two animation clips over moving backgrounds, then two ti2v clips: rank 0 gets the 1st and 3rd, rank 1 the others.
CONFIG = BuildConfig(size=32, frames=9, train=2, test=2, seed=5, ti2v_share=1.0)
# The table and the numbers. Not the contact sheet: it is read back from the MP4s, and x264's bytes vary from one
# process to the next for the same frames (a few levels in some pixels).
OUTPUTS = ("metrics.md", "metrics.json")
# torchrun gives each of several workers one thread; the single process gets the same, so both compute alike.
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def split(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synthx") / "small"
    build(root, CONFIG, workers=1, progress=False)
    lines = [line for name in ("test_x_dynamic.jsonl", "train.jsonl") for line in (root / name).open()]
    assert [json.loads(line)["task"] for line in lines] == ["animation", "animation", "ti2v", "ti2v"]
    (root / "four.jsonl").write_text("".join(lines))
    return root / "four.jsonl"


def eval_args(model_dir: Path, split: Path, out: Path) -> list[str]:
    return ["eval", "--model", str(model_dir), "--data", str(split), "--out", str(out), "--steps", "1"]


def torchrun(args: list[str], log: Path, **env: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(ENTRY)]
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=600,
                          env={**ONE_THREAD, "SAVED_LOG": str(log), **env})  # fmt: skip


def saved_by_rank(log: Path) -> dict[int, list[str]]:
    return {rank: Path(f"{log}.{rank}").read_text().split() if Path(f"{log}.{rank}").is_file() else []
            for rank in (0, 1)}  # fmt: skip


@pytest.fixture(scope="module")
def single(model_dir, split, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("single") / "out"
    command = [sys.executable, "-m", "animatex_pp.cli", *eval_args(model_dir, split, out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=ONE_THREAD)
    assert result.returncode == 0, result.stderr
    return out


def ids(split: Path) -> list[str]:
    return [json.loads(line)["id"] for line in split.open()]


def test_two_ranks_evaluate_disjoint_halves_and_write_the_single_process_table(model_dir, split, single, tmp_path):
    out, log = tmp_path / "out", tmp_path / "saved"
    result = torchrun(eval_args(model_dir, split, out), log)
    assert result.returncode == 0, result.stderr
    clips = ids(split)
    assert saved_by_rank(log) == {0: clips[0::2], 1: clips[1::2]}
    for name in OUTPUTS:
        assert (out / name).read_bytes() == (single / name).read_bytes(), name
    assert (out / "contact_sheet.png").is_file()
    assert result.stdout.count("four, 4 clips: PSNR") == 1  # rank 0 reports, once


def test_a_killed_rank_resumes_from_the_clips_it_saved(model_dir, split, single, tmp_path):
    out, log = tmp_path / "out", tmp_path / "saved"
    clips = ids(split)
    killed = torchrun(eval_args(model_dir, split, out), log, DIE_RANK="1")
    assert killed.returncode != 0
    assert saved_by_rank(log)[1] == [clips[1]]  # rank 1 saved its first clip, then was killed
    assert not (out / "metrics.md").exists()
    kept = {path: path.stat().st_mtime_ns for path in (out / "clips").rglob("*.json")}
    done = {path.relative_to(out / "clips").with_suffix("").as_posix() for path in kept}
    assert clips[1] in done and clips[3] not in done

    resumed_log = tmp_path / "resumed"
    resumed = torchrun(eval_args(model_dir, split, out), resumed_log)
    assert resumed.returncode == 0, resumed.stderr
    second = saved_by_rank(resumed_log)
    # Only the clips without a result were shared out again, each to one rank; the results kept are untouched.
    assert sorted(second[0] + second[1]) == sorted(set(clips) - done)
    assert {path: path.stat().st_mtime_ns for path in kept} == kept
    for name in OUTPUTS:
        assert (out / name).read_bytes() == (single / name).read_bytes(), name
