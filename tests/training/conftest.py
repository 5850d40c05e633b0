"""Training tests share the small sample-video dataset of the data tests."""

from tests.data.conftest import clip_folder  # noqa: F401 (a fixture, found by pytest here)
