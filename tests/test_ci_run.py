"""`.ci/run` removes the virtual environment it made, however it ends, and keeps one the caller names with VENV."""

import os
import subprocess
from pathlib import Path

CI_RUN = Path(__file__).resolve().parents[1] / ".ci" / "run"


def run_ci(tmp_path: Path, **env) -> subprocess.CompletedProcess:
    # A stand-in python3 that makes the environment folder and then fails, as a broken install would.
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir(exist_ok=True)
    (fake_bin / "python3").write_text('#!/bin/sh\nmkdir -p "$3" && touch "$3/big-file"\nexit 1\n')
    (fake_bin / "python3").chmod(0o755)
    scratch = tmp_path / "scratch"
    scratch.mkdir(exist_ok=True)
    inherited = {key: value for key, value in os.environ.items() if key != "VENV"}
    environment = {**inherited, "PATH": f"{fake_bin}:{os.environ['PATH']}", "TMPDIR": str(scratch), **env}
    return subprocess.run(["bash", str(CI_RUN)], env=environment, capture_output=True, text=True)


def test_ci_removes_the_environment_it_made(tmp_path):
    result = run_ci(tmp_path)
    assert result.returncode != 0  # the stand-in failed the run ...
    assert list((tmp_path / "scratch").iterdir()) == []  # ... and the temporary environment is gone all the same


def test_ci_keeps_an_environment_the_caller_names(tmp_path):
    result = run_ci(tmp_path, VENV=str(tmp_path / "mine"))
    assert result.returncode != 0
    assert (tmp_path / "mine" / "big-file").is_file()
