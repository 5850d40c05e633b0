"""Puppet appearance: a procedural texture per part (stripes, dots, checks, bands or plain), in the part's own frame.

Textures are functions of a pixel's coordinates along and across its part (body units), so a pattern moves with
the limb that wears it, and a character's look is drawn independently of its body plan and of the motion: the
pose says nothing about the appearance, and the model has to take it from the reference image.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass, replace

import numpy as np

from animatex_pp.synthx.bodies import PARTS

__all__ = ["LABELS", "PATTERNS", "Appearance", "sample_appearance", "shade"]

# Label values of a label map: 0 background, the puppet's parts, then up to two moving scene objects.
LABELS = ("background", *PARTS, "object_1", "object_2")
OBJECT_LABELS = (LABELS.index("object_1"), LABELS.index("object_2"))
PATTERNS = ("solid", "stripes", "dots", "checker", "bands")
# Parts that share one texture (left and right alike, as clothes are).
GROUPS = (("torso",), ("neck", "head"), ("r_upper_arm", "r_forearm", "l_upper_arm", "l_forearm"),
          ("r_thigh", "r_shin", "l_thigh", "l_shin"), ("ears", "tail", "fin"))  # fmt: skip
EYE_COLOUR = (0.08, 0.06, 0.1)
# Texture frequencies, cycles per body unit: low, so a pattern is a few bands or cells per part that a 4 x 8 x 8
# video codec can keep (at 2.5-6 cycles, a 2-6 px period, the demo's VAE erased the character to a flat colour).
FREQUENCY_RANGE = (0.5, 1.0)


@dataclass(frozen=True)
class Appearance:
    """Texture parameters per label value (arrays of length len(LABELS); colours (len(LABELS), 3) in [0, 1])."""

    pattern: np.ndarray
    colour_a: np.ndarray
    colour_b: np.ndarray
    frequency: np.ndarray  # cycles per body unit
    orientation: np.ndarray  # stripe direction in the part's frame, radians
    phase: np.ndarray

    def with_solid(self, label: int, colour: tuple[float, float, float]) -> Appearance:
        """A copy in which `label` is one plain colour (scene objects)."""
        arrays = {name: getattr(self, name).copy() for name in ("pattern", "colour_a", "colour_b")}
        arrays["pattern"][label] = PATTERNS.index("solid")
        arrays["colour_a"][label] = arrays["colour_b"][label] = colour
        return replace(self, **arrays)


def _colour(rng: np.random.Generator, hue: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(hue % 1.0, rng.uniform(0.35, 0.9), rng.uniform(0.45, 0.95)))


def sample_appearance(rng: np.random.Generator) -> Appearance:
    """A random character look: a few related hues, one pattern per part group."""
    count = len(LABELS)
    pattern = np.zeros(count, dtype=np.int64)
    colour_a, colour_b = np.zeros((count, 3)), np.zeros((count, 3))
    frequency, orientation, phase = np.ones(count), np.zeros(count), np.zeros(count)
    base_hue = rng.uniform()
    for group in GROUPS:
        labels = [LABELS.index(part) for part in group]
        hue = base_hue + rng.uniform(-0.35, 0.35)
        pattern[labels] = rng.integers(len(PATTERNS))
        colour_a[labels] = _colour(rng, hue)
        colour_b[labels] = _colour(rng, hue + rng.uniform(0.25, 0.75))
        frequency[labels] = rng.uniform(*FREQUENCY_RANGE)
        orientation[labels] = rng.choice([0.0, np.pi / 2, rng.uniform(0, np.pi)])
        phase[labels] = rng.uniform(0, 2 * np.pi)
    eyes = LABELS.index("eyes")
    colour_a[eyes] = colour_b[eyes] = EYE_COLOUR
    return Appearance(pattern, colour_a, colour_b, frequency, orientation, phase)


def shade(appearance: Appearance, labels: np.ndarray, along: np.ndarray, across: np.ndarray) -> np.ndarray:
    """Colours (N, 3) of N pixels with label values `labels` at part coordinates `along`, `across` (body units)."""
    pattern = appearance.pattern[labels]
    mix = np.zeros(len(labels))
    # Each pattern is evaluated only on the pixels that wear it.
    for kind in np.unique(pattern):
        name = PATTERNS[kind]
        if name == "solid":
            continue
        chosen = pattern == kind
        part = labels[chosen]
        u, v = along[chosen], across[chosen]
        frequency, orientation, phase = (
            appearance.frequency[part],
            appearance.orientation[part],
            appearance.phase[part],
        )
        rotated = u * np.cos(orientation) + v * np.sin(orientation)
        if name == "stripes":
            mix[chosen] = np.clip(2.5 * np.sin(2 * np.pi * frequency * rotated + phase) + 0.5, 0.0, 1.0)
        elif name == "bands":
            mix[chosen] = 0.5 + 0.5 * np.cos(0.6 * frequency * rotated + phase)
        else:
            cell_u, cell_v = frequency * u + phase, frequency * v
            if name == "dots":
                mix[chosen] = np.hypot(cell_u - np.round(cell_u), cell_v - np.round(cell_v)) < 0.3
            else:  # checker
                mix[chosen] = (np.floor(cell_u) + np.floor(cell_v)) % 2
    colour_a, colour_b = appearance.colour_a[labels], appearance.colour_b[labels]
    return colour_a + (colour_b - colour_a) * mix[:, None]
