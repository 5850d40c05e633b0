"""A small SynthX build shared by the tests that read one (built once per session, in-process)."""

import pytest

from animatex_pp.synthx.build import build
from tests.helpers.synthx import SMALL


@pytest.fixture(scope="session")
def small_build(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthx") / "small"
    build(out, SMALL, workers=1, progress=False)
    return out
