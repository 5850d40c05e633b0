"""animatex_pp: Animate-X++ universal character animation on diffusers' Wan2.1 image-to-video DiT.

Public names are imported lazily, as diffusers does, so that `import animatex_pp` (and the CLI) stays fast
and a user of the pose tools does not pay for importing the video model. transformers' torchvision notice and
DeepSpeed's accelerator line are dropped unless ANIMATEX_PP_VERBOSE=1 is set (`animatex_pp.logs`).
"""

import importlib

from animatex_pp import logs as _logs

__version__ = "0.1.0"

# Third-party start-up notices stay out of a user's output, as the command line keeps them (`animatex_pp.logs`).
if not _logs.verbose_requested():
    _logs.drop_known_notices()

_LAZY_IMPORTS = {
    "AnimateXTransformer3DModel": "animatex_pp.models.transformer",
    "AnimateXPipeline": "animatex_pp.pipelines.pipeline_animatex",
    "PoseSequence": "animatex_pp.pose.sequence",
}

__all__ = sorted(_LAZY_IMPORTS)


def __getattr__(name: str):
    if name not in _LAZY_IMPORTS:
        raise AttributeError(f"module 'animatex_pp' has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY_IMPORTS[name]), name)


def __dir__():
    return sorted(list(globals()) + __all__)
