"""Body plans and character families, as data: which parts a puppet has and how long and wide they are.

Lengths are in *body units*, where a human-like puppet's torso (neck to pelvis) is 1. `HUMAN` holds the human
proportions; a `Family` names the parts it lacks or gains and the ranges of its multipliers of `HUMAN`. Any
proportion a family does not give varies in `HUMAN_VARIATION`, so no two puppets of a family are alike, and an
X family's own ranges *replace* that variation, so its difference from every human-like puppet is guaranteed (a big
head's smallest multiplier is above twice the human's largest). A new family is one `Family(...)` line.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

__all__ = ["FAMILIES", "HUMAN", "PARTS", "BodyPlan", "Family", "sample_body"]

# Drawable parts, in label order (label = index + 1; 0 is background). Ears are animal ears on top of the head;
# the fin is the single tapering lower body of a legless (mermaid-like) puppet.
PARTS = (
    "torso", "neck", "head", "eyes", "ears", "r_upper_arm", "r_forearm", "l_upper_arm", "l_forearm", "r_thigh",
    "r_shin", "l_thigh", "l_shin", "tail", "fin",
)  # fmt: skip
ARMS = frozenset({"r_upper_arm", "r_forearm", "l_upper_arm", "l_forearm"})
LEGS = frozenset({"r_thigh", "r_shin", "l_thigh", "l_shin"})
HUMAN_PARTS = frozenset({"torso", "neck", "head", "eyes"}) | ARMS | LEGS

# Human proportions in body units (torso = neck to pelvis = 1); widths are half-widths.
HUMAN = MappingProxyType({
    "head": 0.24,  # head radius
    "neck": 0.12,  # neck point to the bottom of the head
    "torso": 1.0,
    "shoulders": 0.34,  # neck to each shoulder
    "hips": 0.17,  # pelvis to each hip
    "upper_arm": 0.48,
    "forearm": 0.44,
    "thigh": 0.7,
    "shin": 0.66,
    "limb_width": 0.17,  # chunky, cartoon limbs: several pixels wide at 64 x 64, so a 8 x 8 codec keeps them
    "neck_width": 0.13,
    "tail": 0.9,  # tail length, used only by puppets with a tail
    "ears": 0.6,  # ear height in head radii
})  # fmt: skip
HUMAN_VARIATION = (0.9, 1.1)


@dataclass(frozen=True)
class Family:
    """A kind of character: parts removed from and added to the human set, and multiplier ranges of `HUMAN`."""

    name: str
    description: str  # the phrase a caption uses ("a big-headed character")
    remove: frozenset[str] = frozenset()
    add: frozenset[str] = frozenset()
    scales: Mapping[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def parts(self) -> frozenset[str]:
        return (HUMAN_PARTS - self.remove) | self.add

    @property
    def human_like(self) -> bool:
        return self.parts == HUMAN_PARTS and not self.scales


def combine(name: str, description: str, *families: Family) -> Family:
    """A family with every change of `families` (their scale ranges must not overlap in keys)."""
    scales: dict[str, tuple[float, float]] = {}
    for family in families:
        clash = scales.keys() & family.scales.keys()
        if clash:
            raise ValueError(f"families {[f.name for f in families]} both set {sorted(clash)}: combine others")
        scales.update(family.scales)
    remove = frozenset().union(*(f.remove for f in families))
    add = frozenset().union(*(f.add for f in families))
    return Family(name, description, remove=remove, add=add, scales=scales)


_HUMAN = Family("human", "a human-like character")
_NO_ARMS = Family("no_arms", "an armless character", remove=ARMS)
_BIG_HEAD = Family("big_head", "a big-headed character", scales={"head": (2.4, 3.2), "neck": (0.5, 0.9)})
_TAIL = Family("tail", "a character with a tail and animal ears", add=frozenset({"tail", "ears"}),
               scales={"tail": (0.8, 1.4)})  # fmt: skip
_SHORT_LEGS = Family("short_legs", "a short-legged character", scales={"thigh": (0.35, 0.55), "shin": (0.35, 0.55)})
_LONG_NECK = Family("long_neck", "a long-necked character", scales={"neck": (4.0, 6.0)})
_NO_LEGS = Family("no_legs", "a mermaid-like character with no legs", remove=LEGS, add=frozenset({"fin"}))

FAMILIES: Mapping[str, Family] = MappingProxyType({
    family.name: family
    for family in (
        _HUMAN, _NO_ARMS, _BIG_HEAD, _TAIL, _SHORT_LEGS, _LONG_NECK, _NO_LEGS,
        combine("big_head_no_arms", "a big-headed armless character", _BIG_HEAD, _NO_ARMS),
        combine("tail_short_legs", "a short-legged character with a tail", _TAIL, _SHORT_LEGS),
        combine("long_neck_no_legs", "a long-necked mermaid-like character", _LONG_NECK, _NO_LEGS),
    )
})  # fmt: skip


@dataclass(frozen=True)
class BodyPlan:
    """One puppet's body: its family, its parts and its proportions in body units (keys of `HUMAN`)."""

    family: str
    parts: frozenset[str]
    size: Mapping[str, float]

    def __getitem__(self, key: str) -> float:
        return self.size[key]

    def to_dict(self) -> dict:
        return {
            "family": self.family,
            "parts": sorted(self.parts),
            "size": {k: round(v, 6) for k, v in self.size.items()},
        }


def sample_body(family: Family, rng: np.random.Generator) -> BodyPlan:
    """A puppet of `family`: each proportion drawn uniformly in its range and multiplied into `HUMAN`."""
    size = {}
    for key, human in HUMAN.items():
        low, high = family.scales.get(key, HUMAN_VARIATION)
        size[key] = human * float(rng.uniform(low, high))
    return BodyPlan(family=family.name, parts=family.parts, size=MappingProxyType(size))
