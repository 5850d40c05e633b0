"""Shared test setup: offline hub, paths to the shared sample assets, a tiny saved pipeline, a small dataset."""

import os

# Set before diffusers/transformers are imported anywhere: a hub miss otherwise retries for ~20 s.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

SHARED_ASSETS = Path(__file__).resolve().parents[1].parent / "shared" / "assets"


@pytest.fixture(scope="session")
def shared_assets() -> Path:
    """The real sample images and videos in `../shared/assets` (never copied into the repository)."""
    if not SHARED_ASSETS.is_dir():
        pytest.fail(f"sample assets not found at {SHARED_ASSETS}: clone the project with ../shared beside it")
    return SHARED_ASSETS


@pytest.fixture(scope="session")
def clip_folder(tmp_path_factory, shared_assets) -> Path:
    """A small training dataset of both tasks with bad rows of every kind (`tests.helpers.clips`)."""
    from tests.helpers.clips import write_clip_folder

    return write_clip_folder(tmp_path_factory.mktemp("clips"), shared_assets)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A saved tiny random pipeline (`animatex_pp.testing.tiny_pipeline`), as a user's `--model` folder."""
    from animatex_pp.testing import tiny_pipeline

    path = tmp_path_factory.mktemp("tiny-pipeline")
    tiny_pipeline(seed=0).save_pretrained(path)
    return path
