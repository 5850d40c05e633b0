"""The library's import contracts (pyproject.toml, `[tool.importlinter]`): layers that run one way, and a model that
knows nothing of training. Checked on the package as it is, and shown to fail on a copy with a back edge added."""

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "animatex_pp"


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """import-linter's command on the package found first under `root` (a checkout or a copy of one)."""
    script = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    return subprocess.run([sys.executable, "-c", script], cwd=root, env={"PYTHONPATH": str(root), "PATH": ""},
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def copy_of_checkout(tmp_path: Path) -> Path:
    shutil.copytree(PACKAGE, tmp_path / "animatex_pp", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_package_keeps_its_import_contracts():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "Contracts: 2 kept, 0 broken." in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        # a low layer reaching up: video I/O importing the pipeline
        ("io/video.py", "import animatex_pp.pipelines.pipeline_animatex", "one-way layers"),
        # library code importing the command line
        ("eval/metrics.py", "from animatex_pp.cli import checks", "one-way layers"),
        # siblings of one layer are independent
        ("synthx/draw.py", "import animatex_pp.training.objective", "one-way layers"),
        # the model importing a distribution library
        ("models/pose_streams.py", "import deepspeed", "the model knows nothing of training"),
    ],
)
def test_a_back_edge_breaks_a_contract(tmp_path, module, line, broken):
    copy = copy_of_checkout(tmp_path)
    path = copy / "animatex_pp" / module
    path.write_text(f"{path.read_text()}\n{line}\n")
    result = lint_imports(copy)
    assert result.returncode != 0
    # the report names the broken contract and, under it, the edge that was added
    report = result.stdout.split("Broken contracts", 1)[-1]
    assert broken in report, result.stdout[-3000:]
    assert f"animatex_pp.{module[:-3].replace('/', '.')} -> " in report, result.stdout[-3000:]


def test_no_model_file_imports_torch_distributed():
    """import-linter sees external packages by their top-level name only (torch), so this is checked by hand."""
    for path in sorted((PACKAGE / "models").glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            assert not any(name.startswith("torch.distributed") for name in names), f"{path.name}: {names}"
