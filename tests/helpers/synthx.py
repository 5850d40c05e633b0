"""The small SynthX build that the `small_build` fixture (tests/synthx/conftest.py) writes once per session."""

from animatex_pp.synthx.build import BuildConfig

# Small but complete: every split, ti2v clips with each of the first camera labels, X families round-robin.
SMALL = BuildConfig(size=64, frames=9, train=12, test=7, seed=3, ti2v_share=0.5)
