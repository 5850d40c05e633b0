"""Pose: keypoint sequences, extraction backends, rendering, retargeting and EPI augmentation (docs/pose.md).

Independent of the video model: numpy at the core, torch only for the pose-video tensor `render(..., output="pt")`,
onnxruntime or mediapipe only inside their extraction backends.
"""

from animatex_pp.pose.augment import EPIAugment, EPIPlan
from animatex_pp.pose.extract import extract
from animatex_pp.pose.render import iter_render, render
from animatex_pp.pose.retarget import realign, retarget
from animatex_pp.pose.sequence import PoseSequence

__all__ = ["EPIAugment", "EPIPlan", "PoseSequence", "extract", "iter_render", "realign", "render", "retarget"]
