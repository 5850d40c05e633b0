"""The Animate-X++ transformer, its pose-conditioning streams, presets and checkpoint import."""

from animatex_pp.models.transformer import AnimateXTransformer3DModel

__all__ = ["AnimateXTransformer3DModel"]
