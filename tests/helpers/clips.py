"""A small training dataset made from the sample videos: both tasks, with bad rows of every kind.

The `clip_folder` fixture (tests/conftest.py) writes it once per session with `write_clip_folder`.
"""

import json
from pathlib import Path

import numpy as np

from animatex_pp.io.video import read_video, write_video
from animatex_pp.pipelines.conditioning import resize_frames
from tests.helpers.poses import HUMAN_LENGTHS, STANDING_ANGLES, body_pixels, make_pose

CLIP_HEIGHT, CLIP_WIDTH = 96, 64  # portrait, like the dance videos
GOOD_ANIMATION, GOOD_TI2V = 4, 3


def swaying_pose(num_frames: int, phase: float):
    """A standing skeleton whose arms swing, one frame per video frame, in a clip's (CLIP_HEIGHT, CLIP_WIDTH) frame.

    Built in the sample dance video's 768 x 1216 pixels, where the human proportions of `synthetic` fit.
    """
    frames = []
    for frame in range(num_frames):
        angles = dict(STANDING_ANGLES)
        swing = 0.6 * np.sin(phase + frame / 3)
        angles["r_upper_arm"] += swing
        angles["l_upper_arm"] -= swing
        frames.append(body_pixels(HUMAN_LENGTHS, angles, neck=(384.0, 300.0)))
    scale = np.array([CLIP_WIDTH / 768, CLIP_HEIGHT / 1216])
    return make_pose(np.stack(frames) * scale, CLIP_WIDTH, CLIP_HEIGHT, fps=None)


def write_clip(path: Path, frames: np.ndarray, fps: float) -> None:
    write_video(path, frames, fps=fps, crf=10)


def write_clip_folder(root: Path, shared_assets: Path) -> Path:
    """`metadata.jsonl` + clips, poses and a reference image in `root`; `bad_lines` lists the bad rows' lines."""
    (root / "clips").mkdir()
    (root / "poses").mkdir()
    dance, dance_fps = read_video(shared_assets / "videos" / "dance_anime_32f.mp4")
    dance = resize_frames(dance, CLIP_HEIGHT, CLIP_WIDTH)
    walk, _ = read_video(shared_assets / "videos" / "fashion_walk_380f.mp4", stride=3, max_frames=40)
    walk = resize_frames(walk, CLIP_WIDTH, CLIP_HEIGHT)  # landscape: a second resolution bucket

    rows = []
    for number in range(GOOD_ANIMATION):
        frames = np.roll(dance, number * 5, axis=0)  # different clips of the same dance
        write_clip(root / "clips" / f"dance_{number}.mp4", frames, dance_fps)
        swaying_pose(len(frames), phase=number).save(root / "poses" / f"dance_{number}.npz")
        rows.append({"video": f"clips/dance_{number}.mp4", "task": "animation", "caption": "a girl dances",
                     "pose": f"poses/dance_{number}.npz"})  # fmt: skip
    captions = ["the background drifts left", "the camera zooms in", "a woman walks, the street is still"]
    for number in range(GOOD_TI2V):
        write_clip(root / "clips" / f"walk_{number}.mp4", walk[number * 3 :], 10.0)
        rows.append({"video": f"clips/walk_{number}.mp4", "task": "ti2v", "caption": captions[number]})
    good = len(rows)

    swaying_pose(len(dance) - 5, phase=0).save(root / "poses" / "short.npz")
    (root / "clips" / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 4)
    bad = [
        {"video": "clips/missing.mp4", "task": "animation", "caption": "x", "pose": "poses/dance_0.npz"},
        {"video": "clips/walk_0.mp4", "task": "dance", "caption": "x"},
        {"video": "clips/walk_0.mp4", "task": "ti2v", "caption": "  "},
        {"video": "clips/dance_0.mp4", "task": "animation", "caption": "x", "pose": "poses/short.npz"},
        {"video": "clips/corrupt.mp4", "task": "ti2v", "caption": "the background drifts right"},
    ]
    lines = [json.dumps(row) for row in rows]
    lines += (
        [json.dumps(row) for row in bad[:2]]
        + ['{"video": "clips/walk_1.mp4", "task": ']
        + [json.dumps(row) for row in bad[2:]]
    )
    (root / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    (root / "bad_lines.json").write_text(json.dumps(list(range(good + 1, len(lines) + 1))))
    return root
