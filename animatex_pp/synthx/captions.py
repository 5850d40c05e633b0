"""Captions from a small vocabulary with paraphrases: who is in the clip, what it does, how the background moves.

Every background phrase states its motion in words `animatex_pp.eval.motion.expected_motion_label` reads back
(a test checks each one), and drifts and zooms carry a speed adverb: slow and fast rates never overlap.
"""

from __future__ import annotations

import numpy as np

__all__ = ["BACKGROUND_PHRASES", "caption"]

# "{how}" is a speed adverb. A camera subject reverses a drift: the camera panning right moves the content left.
BACKGROUND_PHRASES = {
    "still": ("the background is still", "the camera stays still", "the background does not move",
              "in front of a static background"),
    "left": ("the background drifts {how} to the left", "the scene slides {how} left",
             "the camera pans {how} to the right"),
    "right": ("the background drifts {how} to the right", "the scene slides {how} right",
              "the camera pans {how} to the left"),
    "up": ("the background drifts {how} upwards", "the scene scrolls {how} up", "the camera pans {how} down"),
    "down": ("the background drifts {how} downwards", "the scene scrolls {how} down", "the camera pans {how} up"),
    "zoom_in": ("the camera zooms in {how}", "the view zooms in {how}", "the background zooms in {how}"),
    "zoom_out": ("the camera zooms out {how}", "the view zooms out {how}", "the background zooms out {how}"),
}  # fmt: skip
SPEED_WORDS = {"slow": ("slowly", "gently", "gradually"), "fast": ("quickly", "rapidly", "swiftly"), "none": ("",)}
# Objects' verbs are none that the motion reader takes for background motion ("moves", "slides", "drifts", ...).
OBJECT_VERBS = {"ball": ("rolls", "bounces"), "box": ("hops", "tumbles")}
OBJECT_DIRECTIONS = {"left": "to the left", "right": "to the right", "up": "upwards", "down": "downwards"}


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def caption(subject: str, camera_label: str, speed: str, objects: list[dict], rng: np.random.Generator) -> str:
    """ "{subject}, {background phrase}[, {object phrase}...]" with a random paraphrase of each part."""
    background = _pick(rng, BACKGROUND_PHRASES[camera_label]).format(how=_pick(rng, SPEED_WORDS[speed]))
    parts = [subject, background]
    for item in objects:
        verb = _pick(rng, OBJECT_VERBS[item["kind"]])
        parts.append(f"a {item['colour']} {item['kind']} {verb} {OBJECT_DIRECTIONS[item['direction']]}")
    return ", ".join(parts)
