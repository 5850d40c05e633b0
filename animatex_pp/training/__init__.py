"""Training (docs/training.md): the Wan DiT with partial-parameter adapters, trained jointly on animation and ti2v
batches by the task-mixing sampler, configured by Hydra (`conf/`, `recipes/`, typed by `schema`) and run on
DeepSpeed ZeRO.

`train(cfg) -> metrics` is the entry point that tests and `animatex-pp train` call.
"""

from animatex_pp.training.trainer import train

__all__ = ["train"]
