"""`recipe=synthx_tiny` composes, and `animatex-pp train recipe=synthx_tiny` runs the same, from a bare checkout (no
install, `PYTHONPATH` only), from the installed package (this environment's: editable here, a wheel install in CI),
and from a wheel built here and installed into a folder of its own, each used from another folder."""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# Third-party packages without `site`: `python -S` skips this environment's .pth files, the editable install's
# finder among them, so only what PYTHONPATH names provides animatex_pp.
SITE_PACKAGES = sysconfig.get_paths()["purelib"]
COMPOSE = (
    "from animatex_pp.training.config import compose_config, config_dir, recipes_dir; "
    "cfg = compose_config(['recipe=synthx_tiny', 'run_dir=x']); "
    "print(config_dir(), recipes_dir(), cfg.trainer.max_steps, cfg.model.transformer.ipi_num_frames)"
)
# Not copied into the wheel's source tree: version control, caches, build products.
NOT_SOURCE = shutil.ignore_patterns(".git", "*cache*", "__pycache__", "*.egg-info", "build", "dist", "outputs")


def python(layout: str, root: Path | None = None) -> tuple[list[str], dict[str, str]]:
    """The interpreter command and environment of a layout: `checkout`, `installed` or `wheel` (at `root`)."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    if layout == "installed":
        return [sys.executable], env
    env["PYTHONPATH"] = f"{REPO if layout == 'checkout' else root}:{SITE_PACKAGES}"
    return [sys.executable, "-S"], env


def composed(layout: str, cwd: Path, root: Path | None = None) -> list[str]:
    command, env = python(layout, root)
    result = subprocess.run([*command, "-c", COMPOSE], cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.split()


def test_the_recipe_composes_from_a_bare_checkout_and_from_the_installed_package(tmp_path):
    conf, recipes, *values = composed("checkout", tmp_path)
    assert (Path(conf), Path(recipes)) == (REPO / "conf", REPO / "recipes")  # the checkout's folders
    assert values == ["600", "17"]
    assert composed("installed", tmp_path)[2:] == values


def build_wheel(tmp_path: Path) -> Path:
    """A wheel of a copy of the working tree (the checkout itself stays untouched by the build), installed into a
    folder of its own; that folder."""
    source = tmp_path / "source"
    shutil.copytree(REPO, source, ignore=NOT_SOURCE)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path / "dist"), str(source)], check=True, capture_output=True)  # fmt: skip
    (wheel,) = (tmp_path / "dist").glob("animatex_pp-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {"animatex_pp/recipes/synthx_tiny.yaml", "animatex_pp/conf/train.yaml"} <= set(names)
    assert "animatex_pp/conf/deepspeed/zero3.yaml" in names and not any(name.startswith("conf/") for name in names)
    # the demo's pretrained components, every file of them (animatex-pp demo downloads nothing)
    shipped = {path.relative_to(REPO).as_posix() for path in (REPO / "animatex_pp" / "demo" / "weights").rglob("*")
               if path.is_file()}  # fmt: skip
    assert "animatex_pp/demo/weights/base/transformer/diffusion_pytorch_model.safetensors" in shipped
    assert shipped <= set(names), sorted(shipped - set(names))
    target = tmp_path / "installed"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)  # fmt: skip
    return target


@pytest.mark.slow
def test_one_step_of_the_recipe_runs_the_same_from_a_checkout_the_installed_package_and_a_wheel(tmp_path):
    wheel_root = build_wheel(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    conf, recipes, *values = composed("wheel", elsewhere, wheel_root)
    package = wheel_root / "animatex_pp"
    assert (Path(conf), Path(recipes)) == (package / "conf", package / "recipes")
    assert values == ["600", "17"]

    # The first run's data step builds a small SynthX; the others find it there.
    one_step = ["recipe=synthx_tiny", "trainer.max_steps=1", f"data.prepare.folder={tmp_path / 'synthx'}",
                "data.prepare.train=8", "data.prepare.test=1", "data.batch_size=1", "data.num_workers=0",
                "trainer.export.enabled=false"]  # fmt: skip
    losses = {}
    for layout in ("checkout", "installed", "wheel"):
        command, env = python(layout, wheel_root)
        run = tmp_path / layout
        result = subprocess.run([*command, "-m", "animatex_pp.cli", "train", *one_step, f"hydra.run.dir={run}"],
                                cwd=elsewhere, env=env, capture_output=True, text=True, timeout=900)  # fmt: skip
        assert result.returncode == 0, (layout, result.stderr[-3000:])
        assert json.loads((run / "metrics.json").read_text())["steps"] == 1
        losses[layout] = (run / "losses.jsonl").read_text()
    assert (tmp_path / "synthx" / "train.jsonl").is_file()
    assert losses["checkout"] == losses["installed"] == losses["wheel"]
