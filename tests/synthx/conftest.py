"""A small SynthX build shared by the tests that read one (built once per session, in-process)."""

import pytest

from animatex_pp.synthx.build import BuildConfig, build

# Small but complete: every split, ti2v clips with each of the first camera labels, X families round-robin.
SMALL = BuildConfig(size=64, frames=9, train=12, test=7, seed=3, ti2v_share=0.5)


@pytest.fixture(scope="session")
def small_build(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthx") / "small"
    build(out, SMALL, workers=1, progress=False)
    return out
