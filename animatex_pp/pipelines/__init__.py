"""Pipelines: `AnimateXPipeline` (in `pipeline_animatex`), long-video windowing, and the `generate`/`convert` CLI.

`from animatex_pp import AnimateXPipeline` imports it lazily; this package itself imports nothing heavy, so the CLI
and the windowing helpers load fast.
"""
