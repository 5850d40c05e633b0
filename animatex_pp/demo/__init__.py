"""`animatex-pp demo`: the whole system on one CPU in minutes (docs/results.md).

`run` holds the stages (SynthX, the codec, precompute, training, evaluation, outputs); `codec` fits the demo's
`AutoencoderKLWan` on SynthX frames.
"""

from animatex_pp.demo.run import QUICK, DemoConfig, run_demo

__all__ = ["QUICK", "DemoConfig", "run_demo"]
