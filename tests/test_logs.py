"""The third-party lines `animatex_pp.logs` keeps out of the command's output, in a fresh interpreter each."""

import os
import subprocess
import sys

IMPORTS = "import deepspeed; from transformers import CLIPImageProcessor; CLIPImageProcessor(); print('imported')"


def run(prelude: str) -> str:
    env = {**os.environ, "ANIMATEX_PP_VERBOSE": ""}
    result = subprocess.run([sys.executable, "-c", prelude + IMPORTS], capture_output=True, text=True, check=True,
                            env=env)  # fmt: skip
    assert "imported" in result.stdout
    return result.stdout + result.stderr


def test_deepspeed_and_transformers_notices_are_dropped_when_quiet():
    # A plain import prints DeepSpeed's "Setting accelerator to CPU" and transformers' "... requires torchvision
    # (not installed); falling back to `CLIPImageProcessorPil`" (one interpreter only: importing DeepSpeed is slow).
    quiet = run("from animatex_pp.logs import quiet_third_party_logs; quiet_third_party_logs(); ")
    assert "Setting accelerator to" not in quiet and "requires torchvision" not in quiet


# The Python API, no command line: a tiny pipeline saved and loaded back, then DeepSpeed imported (as training does).
API = (
    "import sys, animatex_pp; from animatex_pp.testing import tiny_pipeline; "
    "from animatex_pp.pipelines.loading import load_pipeline; "
    "tiny_pipeline().save_pretrained(sys.argv[1]); load_pipeline(sys.argv[1]); import deepspeed; print('imported')"
)
NOTICES = ("Setting accelerator to", "requires torchvision")


def run_api(folder, verbose: str) -> str:
    env = {**os.environ, "ANIMATEX_PP_VERBOSE": verbose}
    result = subprocess.run([sys.executable, "-c", API, str(folder)], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert "imported" in result.stdout
    return result.stdout + result.stderr


def test_the_python_api_keeps_the_notices_out_unless_verbose_is_asked_for(tmp_path):
    quiet = run_api(tmp_path / "quiet", "")
    assert not [notice for notice in NOTICES if notice in quiet]
    loud = run_api(tmp_path / "loud", "1")
    assert all(notice in loud for notice in NOTICES)


def test_the_command_lines_verbose_flag_lets_the_notices_through():
    # `import animatex_pp` has dropped them; `--verbose` (here with no command: help, exit code 2) restores them.
    loud = run("from animatex_pp.cli import main; assert main(['--verbose']) == 2; ")
    assert all(notice in loud for notice in NOTICES)
    quiet = run("from animatex_pp.cli import main; assert main([]) == 2; ")
    assert not [notice for notice in NOTICES if notice in quiet]
