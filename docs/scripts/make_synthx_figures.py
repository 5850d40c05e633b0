"""Make the pictures of docs/synthx.md (seconds on a CPU; no assets needed).

    python docs/scripts/make_synthx_figures.py [--out docs/figures] [--size 96]

Writes synthx_families.png (one character of every family performing a motion, frame by frame, over a still
scene) and synthx_ti2v.png (a character standing while the background drifts and zooms as its caption says, with
the ground-truth rate and the rate phase correlation measures on the frames).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from animatex_pp.eval.motion import estimate_background_motion
from animatex_pp.synthx import motions
from animatex_pp.synthx.bodies import FAMILIES, sample_body
from animatex_pp.synthx.captions import caption
from animatex_pp.synthx.draw import draw
from animatex_pp.synthx.puppet import fit, place, pose_body
from animatex_pp.synthx.scenes import background_frames, sample_camera
from animatex_pp.synthx.textures import sample_appearance

REPO = Path(__file__).resolve().parents[2]
FRAMES, SHOWN, FPS = 17, 6, 16.0
LABEL_WIDTH, HEADER = 170, 22


def clip(family: str, motion: motions.Motion, camera_label: str, size: int, seed: int):
    """Frames (F, size, size, 3) uint8 of one character of `family`, its camera and its layer."""
    rng = np.random.default_rng(seed)
    body = sample_body(FAMILIES[family], rng)
    skeleton = pose_body(body, motion)
    skeleton = place(skeleton, *fit([skeleton], size, rng))
    camera = sample_camera(camera_label, size, rng)
    layer = draw(skeleton, sample_appearance(rng), size, len(motion))
    return layer.over(background_frames(camera, len(motion), size, rng)), camera, layer


def sheet(rows: list[tuple[str, np.ndarray]], size: int, header: str) -> Image.Image:
    """Rows of frames with a label on the left and a header line on top."""
    width = LABEL_WIDTH + SHOWN * size
    image = Image.new("RGB", (width, HEADER + len(rows) * size), "white")
    canvas = ImageDraw.Draw(image)
    canvas.text((4, 4), header, fill="black")
    for index, (label, frames) in enumerate(rows):
        top = HEADER + index * size
        for line, text in enumerate(label.split("\n")):
            canvas.text((4, top + 4 + 12 * line), text, fill="black")
        for column, frame in enumerate(frames):
            image.paste(Image.fromarray(frame), (LABEL_WIDTH + column * size, top))
    return image


def families_figure(size: int) -> Image.Image:
    rows = []
    chosen = np.linspace(0, FRAMES - 1, SHOWN).round().astype(int)
    for seed, family in enumerate(FAMILIES):
        kind = list(motions.MOTIONS.values())[seed % len(motions.MOTIONS)]
        motion = kind.generate(FRAMES, FPS, np.random.default_rng(seed))
        frames, _, _ = clip(family, motion, "still", size, seed)
        rows.append((f"{family}\n({kind.name}, {kind.role})", frames[chosen]))
    return sheet(rows, size, f"SynthX families x frames ({', '.join(str(c) for c in chosen)} of {FRAMES})")


def ti2v_figure(size: int) -> Image.Image:
    rows = []
    chosen = np.linspace(0, FRAMES - 1, SHOWN).round().astype(int)
    for seed, label in enumerate(("left", "up", "zoom_in", "zoom_out", "still")):
        frames, camera, layer = clip("human", motions.rest(FRAMES, FPS), label, size, 100 + seed)
        measured = estimate_background_motion(frames, mask=layer.labels > 0)
        text = caption("", label, camera.speed, [], np.random.default_rng(seed)).lstrip(", ")
        truth = f"true dx {camera.dx:+.2f} dy {camera.dy:+.2f} zoom {camera.zoom:.3f}"
        seen = f"seen dx {np.median(measured.dx):+.2f} dy {np.median(measured.dy):+.2f} "
        seen += f"zoom {np.median(measured.zoom):.3f}"
        rows.append((f"{text}\n{truth}\n{seen}\n(px/frame)", frames[chosen]))
    return sheet(rows, size, "ti2v backgrounds: caption, ground-truth rate, rate measured by phase correlation")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "figures")
    parser.add_argument("--size", type=int, default=96, help="frame size of the pictures (default: 96)")
    args = parser.parse_args()
    families_figure(args.size).save(args.out / "synthx_families.png")
    ti2v_figure(args.size).save(args.out / "synthx_ti2v.png")
    print(f"wrote {args.out / 'synthx_families.png'} and {args.out / 'synthx_ti2v.png'}")


if __name__ == "__main__":
    main()
