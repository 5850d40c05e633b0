"""SynthX: a procedural character-animation benchmark with exact ground truth (docs/synthx.md).

2D puppets of many body plans (`bodies`) perform joint-angle motions (`motions`) with their own bones (`puppet`),
drawn as textured anti-aliased parts (`textures`, `draw`) over scenes seen by a still, drifting or zooming camera
(`scenes`), captioned from a small vocabulary (`captions`); `build` writes the splits in the metadata format of
docs/data.md, and `truth` reads each clip's keypoints, masks and background motion back for the metrics.
"""

from animatex_pp.synthx.bodies import FAMILIES, BodyPlan, Family, sample_body
from animatex_pp.synthx.build import SPLITS, BuildConfig, build
from animatex_pp.synthx.truth import ClipTruth, clip_truth, read_truth

__all__ = ["FAMILIES", "SPLITS", "BodyPlan", "BuildConfig", "ClipTruth", "Family", "build", "clip_truth",
           "read_truth", "sample_body"]  # fmt: skip
