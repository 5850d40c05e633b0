"""Pipelines: `AnimateXPipeline` (`pipeline_animatex`), the frame plan and long-video windows (`windowing`), the
frame geometry (`geometry`), the pose streams' inputs shared with training (`conditioning`), getting a pipeline
(`loading`) and the checks made before one loads (`checks`).

`from animatex_pp import AnimateXPipeline` imports it lazily; this package itself imports nothing heavy, so the
command line and the windowing helpers load fast.
"""
