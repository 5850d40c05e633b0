"""benchmarks/gpu_check.py: one line and exit code 2 without CUDA, and every check passing in its CPU rehearsal (the
same code at tiny sizes, gloo for NCCL), so the script is ready to run unchanged on a GPU."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_check.py"


def load_script():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_without_cuda_it_says_so_in_one_line_and_exits_2():
    done = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert done.returncode == 2
    assert done.stdout.splitlines() == [done.stdout.strip()]
    assert "no CUDA device" in done.stdout


@pytest.mark.parametrize(
    ("device_name", "peak"),
    [
        ("NVIDIA H100 PCIe", 756.0),  # the PCIe card, not the SXM one whose name it contains
        ("NVIDIA H100 80GB HBM3", 989.0),
        ("NVIDIA A100-SXM4-80GB", 312.0),
        ("NVIDIA A10G", 70.0),  # not the A10
        ("NVIDIA L40S", 362.0),  # not the L40
        ("Some Future Card", None),
    ],
)
def test_the_card_peak_is_read_from_the_device_name(device_name, peak):
    assert load_script().card_peak_tflops(device_name, None) == peak


def test_a_given_peak_wins_over_the_table():
    assert load_script().card_peak_tflops("NVIDIA H100 PCIe", 500.0) == 500.0


@pytest.mark.slow
def test_the_cpu_rehearsal_passes_every_check():
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--rehearse-on-cpu"], capture_output=True, text=True, cwd=REPO, timeout=1500
    )
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ") and "| check" not in line]
    checks = {row.split("|")[1].strip() for row in rows}
    failed = [row for row in rows if "| FAIL" in row]
    assert done.returncode == 0 and not failed, done.stdout + done.stderr[-3000:]
    expected = {"pipeline tiny, native", "train zero0", "train zero2", "train zero3", "train zero2 = zero0",
                "train zero3 = zero0", "train resume", "train export", "context parallel x2",
                "tiny DiT (rehearsal)"}  # fmt: skip
    assert checks == expected, checks
