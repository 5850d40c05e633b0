"""The third-party lines `animatex_pp.logs` keeps out of the command's output, in a fresh interpreter each."""

import subprocess
import sys

IMPORTS = "import deepspeed; from transformers import CLIPImageProcessor; CLIPImageProcessor(); print('imported')"


def run(prelude: str) -> str:
    result = subprocess.run([sys.executable, "-c", prelude + IMPORTS], capture_output=True, text=True, check=True)
    assert "imported" in result.stdout
    return result.stdout + result.stderr


def test_deepspeed_and_transformers_notices_are_dropped_when_quiet():
    # A plain import prints DeepSpeed's "Setting accelerator to CPU" and transformers' "... requires torchvision
    # (not installed); falling back to `CLIPImageProcessorPil`" (one interpreter only: importing DeepSpeed is slow).
    quiet = run("from animatex_pp.logs import quiet_third_party_logs; quiet_third_party_logs(); ")
    assert "Setting accelerator to" not in quiet and "requires torchvision" not in quiet
