"""Inputs of `animatex-pp generate` runs on the tiny pipeline, shared by the CLI and context-parallel tests."""

from pathlib import Path

import numpy as np
import PIL.Image

from animatex_pp.io.video import write_video

POSE_SIZE = 32


def write_generate_inputs(folder: Path) -> Path:
    """`folder` with reference.png (48 x 40, random) and pose.mp4: 9 frames of a 32 x 32 rendered pose (an orange
    square moving down and right)."""
    rng = np.random.default_rng(0)
    PIL.Image.fromarray(rng.integers(0, 256, (48, 40, 3), dtype=np.uint8)).save(folder / "reference.png")
    pose = np.zeros((9, POSE_SIZE, POSE_SIZE, 3), np.uint8)
    for index in range(9):
        pose[index, 8 + index : 14 + index, 10:16] = (255, 85, 0)
    write_video(folder / "pose.mp4", pose, 8)
    return folder
