"""Make the pictures of docs/pose.md from the shared sample assets (MediaPipe backend, a few seconds on CPU).

    python docs/scripts/make_pose_figures.py [--assets ../shared/assets] [--out docs/figures]

Writes pose_extraction.png (frames of the sample walk with their skeletons), pose_retarget.png (the walk moved onto
two reference characters, and onto one of them written without legs) and pose_epi.png (EPI augmentations of one
driving pose). Skeletons are drawn with `color_order="rgb"` so that the pictures show OpenPose's usual colours; the
pipeline feeds the model the default "bgr" order (see docs/pose.md).
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from animatex_pp.io.image import read_image
from animatex_pp.io.video import read_video
from animatex_pp.pose import EPIAugment, PoseSequence, extract, render, retarget
from animatex_pp.pose.augment import EPIPlan

REPO = Path(__file__).resolve().parents[2]
THUMB_HEIGHT = 320
LABEL_HEIGHT = 28


# BlazePose finds no person in the winged figure (the case Animate-X is made for), so its skeleton was written by
# hand: OpenPose-18 points in pixels of the 832x1216 image, as anyone can do in a pose's JSON file.
WINGED_FIGURE_BODY = [
    (414, 130), (414, 236), (330, 280), (304, 450), (290, 600), (500, 280), (524, 450), (536, 600),
    (370, 600), (370, 860), (360, 1140), (456, 600), (456, 860), (440, 1150), (400, 116), (428, 116),
    (384, 124), (444, 124),
]  # fmt: skip
WINGED_FIGURE = PoseSequence(
    body=np.array([WINGED_FIGURE_BODY]) / (832, 1216), body_conf=np.ones((1, 18)), width=832, height=1216
)
# The same skeleton written as if the gown hid legs it does not have: hips, no knees or ankles (a mermaid's body
# plan), so that the picture shows retargeting leave out the parts a reference lacks.
LEGLESS_CONF = np.ones((1, 18))
LEGLESS_CONF[0, [9, 10, 12, 13]] = 0.0
LEGLESS_WINGED_FIGURE = dataclasses.replace(WINGED_FIGURE, body_conf=LEGLESS_CONF)
# Reference image, its skeleton (None: found by MediaPipe) and how the skeleton was made.
RETARGET_REFERENCES = [
    ("anime_girl.jpeg", None, "MediaPipe"),
    ("winged_figure.jpeg", WINGED_FIGURE, "hand-made"),
    ("winged_figure.jpeg", LEGLESS_WINGED_FIGURE, "hand-made, no legs"),
]


def overlay(image: np.ndarray, skeleton: np.ndarray) -> np.ndarray:
    """The skeleton over a dimmed image."""
    drawn = skeleton.any(axis=-1, keepdims=True)
    return np.where(drawn, skeleton, (image * 0.45).astype(np.uint8))


def thumbnail(image: np.ndarray, label: str) -> Image.Image:
    """An image scaled to THUMB_HEIGHT with a caption strip under it."""
    picture = Image.fromarray(image)
    width = round(picture.width * THUMB_HEIGHT / picture.height)
    tile = Image.new("RGB", (width, THUMB_HEIGHT + LABEL_HEIGHT), "white")
    tile.paste(picture.resize((width, THUMB_HEIGHT), Image.Resampling.LANCZOS), (0, 0))
    ImageDraw.Draw(tile).text((6, THUMB_HEIGHT + 7), label, fill="black")
    return tile


def grid(rows: list[list[Image.Image]], gap: int = 6) -> Image.Image:
    width = max(sum(tile.width for tile in row) + gap * (len(row) - 1) for row in rows)
    height = sum(max(tile.height for tile in row) for row in rows) + gap * (len(rows) - 1)
    sheet = Image.new("RGB", (width, height), "white")
    y = 0
    for row in rows:
        x = 0
        for tile in row:
            sheet.paste(tile, (x, y))
            x += tile.width + gap
        y += max(tile.height for tile in row) + gap
    return sheet


def skeleton(pose, height: int, width: int) -> np.ndarray:
    return render(pose, height, width, color_order="rgb", stick_width=6, point_radius=6)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", type=Path, default=REPO.parent / "shared" / "assets")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "figures")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    # 1. Extraction: a few frames of the walk and their skeletons.
    walk_path = args.assets / "videos" / "fashion_walk_380f.mp4"
    frames, fps = read_video(walk_path, stride=30)
    walk = extract(frames, fps=fps)
    height, width = frames.shape[1:3]
    drawn = skeleton(walk, height, width)
    shown = [0, 3, 6, 9, 12]
    rows = [
        [thumbnail(frames[i], f"frame {i * 30}") for i in shown],
        [thumbnail(overlay(frames[i], drawn[i]), "MediaPipe keypoints") for i in shown],
        [thumbnail(drawn[i], "render(pose, H, W)") for i in shown],
    ]
    grid(rows).save(args.out / "pose_extraction.png", optimize=True)

    # 2. Retargeting: the walk on two characters of other proportions, and on one without legs (it gets none).
    rows = []
    for name, reference, source in RETARGET_REFERENCES:
        image = np.asarray(read_image(args.assets / "images" / name))
        if reference is None:
            reference = extract(image, progress=False)
        moved = retarget(walk, reference)
        ref_h, ref_w = image.shape[:2]
        row = [thumbnail(overlay(image, skeleton(reference, ref_h, ref_w)[0]), f"reference ({source})")]
        row.append(thumbnail(overlay(image, skeleton(walk[0], ref_h, ref_w)[0]), "driving frame 0, as is"))
        shown = (0, 6, 12)
        retargeted = skeleton(moved[list(shown)], ref_h, ref_w)
        for drawn, i in zip(retargeted, shown, strict=True):
            row.append(thumbnail(overlay(image, drawn), f"retargeted, frame {i * 30}"))
        rows.append(row)
    grid(rows).save(args.out / "pose_retarget.png", optimize=True)

    # 3. EPI augmentation: one driving frame, realigned to an anchor from the dance video, then rescaled.
    dance_frames, dance_fps = read_video(args.assets / "videos" / "dance_anime_32f.mp4", stride=4)
    pool = extract(dance_frames, fps=dance_fps)
    augment = EPIAugment(pose_pool=[pool], seed=0)
    driving = walk[3]
    plans = [
        ("original", None),
        ("realigned to a pool anchor", EPIPlan(anchor=augment.anchors[3])),
        ("legs x1.3, arms x0.7", EPIPlan(factors={"legs": 1.3, "arms": 0.7})),
        ("face x1.8, neck x0.6", EPIPlan(factors={"face": 1.8, "neck": 0.6})),
        ("shoulders x1.4, body x0.8", EPIPlan(factors={"shoulders": 1.4, "body": 0.8})),
        ("drop right arm", EPIPlan(drop=("right_arm",))),
        ("drop + mirror-add left arm", EPIPlan(drop=("left_arm",), add=("left_arm",))),
    ]
    tiles = [thumbnail(skeleton(augment.apply(driving, plan), height, width)[0], label) for label, plan in plans]
    random_tiles = [
        thumbnail(skeleton(augment(driving, rng=seed), height, width)[0], f"random, seed {seed}") for seed in range(4)
    ]
    grid([tiles[:4], tiles[4:] + random_tiles[:1], random_tiles[1:]]).save(args.out / "pose_epi.png", optimize=True)
    print(f"wrote pose_extraction.png, pose_retarget.png, pose_epi.png to {args.out}")


if __name__ == "__main__":
    main()
