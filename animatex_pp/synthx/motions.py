"""Motion as joint-angle curves: procedural dances, and real motion read from extracted pose sequences.

A `Motion` holds, per frame, the image-plane angle of every bone (radians, image axes: x right, y down, so pi/2
points down), the neck's offset in body units (torso lengths) and the facing (signed width factor: 1 facing the
camera, smaller when turned, negative from behind). Angles, not positions, are what a puppet receives: each puppet
hangs its *own* bones on them (`puppet.pose_body`), so an X body never takes human limb lengths.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from animatex_pp.pose import skeleton as sk
from animatex_pp.pose.sequence import PoseSequence

__all__ = ["ANGLES", "MOTIONS", "Motion", "MotionKind", "from_pose", "rest", "windows"]

# "head" is the head's tilt from straight up the spine; every other angle is the bone's direction in the image.
ANGLES = ("spine", "head", "r_upper_arm", "r_forearm", "l_upper_arm", "l_forearm", "r_thigh", "r_shin", "l_thigh",
          "l_shin")  # fmt: skip
DEG = np.pi / 180
# Standing, facing the camera: the puppet's right side is on the image's left (angles > 90 degrees point left).
REST = np.array([90, 0, 105, 98, 75, 82, 94, 91, 86, 89], dtype=np.float64) * DEG
# The smallest |facing|: a puppet seen edge-on would have no width to draw.
MIN_FACING = 0.35
# (parent, child) OpenPose-18 points whose direction is each limb angle, in ANGLES order after spine and head.
LIMB_POINTS = ((sk.R_SHOULDER, sk.R_ELBOW), (sk.R_ELBOW, sk.R_WRIST), (sk.L_SHOULDER, sk.L_ELBOW),
               (sk.L_ELBOW, sk.L_WRIST), (sk.R_HIP, sk.R_KNEE), (sk.R_KNEE, sk.R_ANKLE), (sk.L_HIP, sk.L_KNEE),
               (sk.L_KNEE, sk.L_ANKLE))  # fmt: skip


@dataclass(frozen=True)
class Motion:
    """Per-frame angles (F, len(ANGLES)) radians, root (F, 2) body units, facing (F,), time (F,) seconds."""

    name: str
    angles: np.ndarray
    root: np.ndarray
    facing: np.ndarray
    time: np.ndarray

    def __len__(self) -> int:
        return len(self.angles)

    def angle(self, name: str) -> np.ndarray:
        return self.angles[:, ANGLES.index(name)]


def rest(frames: int = 1, fps: float = 16.0) -> Motion:
    """Standing still, facing the camera."""
    return Motion("rest", np.tile(REST, (frames, 1)), np.zeros((frames, 2)), np.ones(frames), np.arange(frames) / fps)


def _mirror(angle: np.ndarray) -> np.ndarray:
    """The same direction reflected left-right (right arm's angle -> left arm's)."""
    return np.pi - angle


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _curves(frames: int, fps: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, float, np.ndarray]:
    """Clip progress u in [0, 1], a dance phase (radians; 0.75-1.5 cycles per clip), an amplitude factor, time."""
    u = np.linspace(0.0, 1.0, frames)
    phase = 2 * np.pi * rng.uniform(0.75, 1.5) * u + rng.uniform(0, 2 * np.pi)
    return u, phase, float(rng.uniform(0.7, 1.3)), np.arange(frames) / fps


def _pack(name: str, deltas: Mapping[str, np.ndarray], root, facing, time) -> Motion:
    """REST plus per-angle offsets (degrees) -> a Motion."""
    angles = np.tile(REST, (len(time), 1))
    for key, delta in deltas.items():
        angles[:, ANGLES.index(key)] += np.asarray(delta) * DEG
    return Motion(name, angles, np.asarray(root, dtype=np.float64), np.asarray(facing, dtype=np.float64), time)


def sway(frames: int, fps: float, rng: np.random.Generator) -> Motion:
    u, phase, amp, time = _curves(frames, fps, rng)
    s = np.sin(phase)
    deltas = {"spine": 10 * amp * s, "head": -6 * amp * s, "r_upper_arm": 28 * amp * s, "r_forearm": 34 * amp * s,
              "l_upper_arm": 28 * amp * s, "l_forearm": 34 * amp * s, "r_thigh": -5 * amp * s,
              "l_thigh": -5 * amp * s}  # fmt: skip
    root = np.stack([0.15 * amp * s, np.zeros(frames)], axis=1)  # (F, 2)
    return _pack("sway", deltas, root, np.ones(frames), time)


def wave(frames: int, fps: float, rng: np.random.Generator) -> Motion:
    u, phase, amp, time = _curves(frames, fps, rng)
    lift = _smoothstep(u / 0.25)  # the arm rises over the first quarter, then waves
    raised_upper, raised_fore = -150 * DEG, -100 * DEG + 30 * amp * DEG * np.sin(2 * phase)
    upper = REST[2] + lift * (raised_upper - REST[2])
    fore = REST[3] + lift * (raised_fore - REST[3])
    angles = np.tile(REST, (frames, 1))
    side = int(rng.integers(2))  # 0 right arm, 1 left arm
    columns = (2, 3) if side == 0 else (4, 5)
    angles[:, columns[0]] = upper if side == 0 else _mirror(upper)
    angles[:, columns[1]] = fore if side == 0 else _mirror(fore)
    angles[:, 0] += 4 * amp * DEG * np.sin(phase)
    return Motion("wave", angles, np.zeros((frames, 2)), np.ones(frames), time)


def walk(frames: int, fps: float, rng: np.random.Generator) -> Motion:
    u, phase, amp, time = _curves(frames, fps, rng)
    s = np.sin(phase)
    bend = 25 * amp * np.maximum(0.0, np.sin(phase + 0.6))  # the knee bends as the leg swings through
    deltas = {"r_thigh": 22 * amp * s, "r_shin": 22 * amp * s - bend, "l_thigh": -22 * amp * s,
              "l_shin": -22 * amp * s + bend, "r_upper_arm": -18 * amp * s, "r_forearm": -24 * amp * s,
              "l_upper_arm": 18 * amp * s, "l_forearm": 24 * amp * s}  # fmt: skip
    direction = rng.choice([-1.0, 1.0])
    root = np.stack([direction * 0.5 * (u - 0.5), -0.05 * np.abs(s)], axis=1)  # (F, 2): travel, and a bob
    return _pack("walk", deltas, root, np.ones(frames), time)


def jump(frames: int, fps: float, rng: np.random.Generator) -> Motion:
    u, _, amp, time = _curves(frames, fps, rng)
    take_off, landing = rng.uniform(0.15, 0.25), rng.uniform(0.65, 0.75)
    air = np.where((u > take_off) & (u < landing), np.sin(np.pi * (u - take_off) / (landing - take_off)), 0.0)
    crouch = np.exp(-(((u - take_off) / 0.08) ** 2)) + np.exp(-(((u - landing) / 0.08) ** 2))
    angles = np.tile(REST, (frames, 1))
    for column, spread in ((6, 1.0), (7, -1.0), (8, -1.0), (9, 1.0)):  # knees out, feet in while crouched
        angles[:, column] += spread * 28 * crouch * DEG
    arms_up = _smoothstep(air * 1.5)
    angles[:, 2] += arms_up * (-140 * DEG - REST[2])
    angles[:, 3] += arms_up * (-125 * DEG - REST[3])
    angles[:, 4], angles[:, 5] = _mirror(angles[:, 2]), _mirror(angles[:, 3])
    root = np.stack([np.zeros(frames), 0.2 * crouch - 0.6 * amp * air], axis=1)  # (F, 2): down, then up
    return Motion("jump", angles, root, np.ones(frames), time)


def turn(frames: int, fps: float, rng: np.random.Generator) -> Motion:
    u, phase, amp, time = _curves(frames, fps, rng)
    yaw = rng.uniform(50, 65) * DEG * np.sin(np.pi * u)
    out = 20 * amp * np.sin(np.pi * u)  # arms lift a little as the body turns
    deltas = {"r_upper_arm": out, "r_forearm": out, "l_upper_arm": -out, "l_forearm": -out,
              "head": 8 * np.sin(phase)}  # fmt: skip
    return _pack("turn", deltas, np.zeros((frames, 2)), np.maximum(np.cos(yaw), MIN_FACING), time)


@dataclass(frozen=True)
class MotionKind:
    """A procedural motion: its caption verb, whether it is for training or held out, and its generator."""

    name: str
    verb: str
    role: str  # "train" or "test" (held out)
    generate: Callable[[int, float, np.random.Generator], Motion]


MOTIONS: Mapping[str, MotionKind] = MappingProxyType({
    kind.name: kind
    for kind in (
        MotionKind("sway", "sways", "train", sway),
        MotionKind("wave", "waves", "train", wave),
        MotionKind("walk", "walks", "train", walk),
        MotionKind("jump", "jumps", "test", jump),
        MotionKind("turn", "turns", "test", turn),
    )
})  # fmt: skip
REAL_VERB = "dances"


def _fill_missing(values: np.ndarray, valid: np.ndarray, default: np.ndarray | float) -> np.ndarray:
    """Linear interpolation over time across frames where `valid` is False; `default` when none is valid."""
    if not valid.any():
        return np.broadcast_to(default, values.shape).astype(np.float64)
    frames = np.arange(len(values))
    if values.ndim == 1:
        return np.interp(frames, frames[valid], values[valid])
    return np.stack([np.interp(frames, frames[valid], column[valid]) for column in values.T], axis=1)


def _direction(vector: np.ndarray) -> np.ndarray:
    return np.arctan2(vector[..., 1], vector[..., 0])


def from_pose(pose: PoseSequence, name: str = "real") -> Motion:
    """A whole pose sequence's motion, normalised: angles of its bones, neck path in its torso lengths, facing.

    Undetected bones are interpolated over time from the frames that show them (REST when none does). Facing is the
    shoulder width across the spine relative to the widest frame, signed by which side the right shoulder is on.
    """
    if pose.fps is None:
        raise ValueError("a real motion needs its frame rate: extract the pose from a video, not an image")
    points = pose.body.astype(np.float64) * (pose.width, pose.height)  # (F, 18, 2) pixels
    seen = pose.body_conf >= sk.CONF_THRESHOLD  # (F, 18)
    hips_seen = seen[:, sk.R_HIP] & seen[:, sk.L_HIP]
    pelvis = (points[:, sk.R_HIP] + points[:, sk.L_HIP]) / 2
    torso_seen = hips_seen & seen[:, sk.NECK]
    if not torso_seen.any():
        raise ValueError(f"no frame of the pose shows the neck and both hips: {name} cannot drive a puppet")
    torso = float(np.median(np.linalg.norm(pelvis - points[:, sk.NECK], axis=-1)[torso_seen]))

    def unwrapped(vector: np.ndarray, valid: np.ndarray, default: float) -> np.ndarray:
        angle = _direction(vector)
        if valid.any():
            angle[valid] = np.unwrap(angle[valid])
        return _fill_missing(angle, valid, default)

    spine = unwrapped(pelvis - points[:, sk.NECK], torso_seen, REST[0])
    head_seen = seen[:, sk.NOSE] & seen[:, sk.NECK] & torso_seen
    head = unwrapped(points[:, sk.NOSE] - points[:, sk.NECK], head_seen, REST[0] + np.pi)
    head = np.angle(np.exp(1j * (head - spine - np.pi)))  # tilt from straight up the spine, in (-pi, pi]
    columns = [spine, head]
    for index, (parent, child) in enumerate(LIMB_POINTS):
        columns.append(unwrapped(points[:, child] - points[:, parent], seen[:, parent] & seen[:, child],
                                 REST[2 + index]))  # fmt: skip
    side = np.stack([np.cos(spine - np.pi / 2), np.sin(spine - np.pi / 2)], axis=1)  # (F, 2) toward the left side
    shoulders_seen = seen[:, sk.R_SHOULDER] & seen[:, sk.L_SHOULDER]
    width = np.einsum("fc,fc->f", points[:, sk.L_SHOULDER] - points[:, sk.R_SHOULDER], side)
    widest = np.abs(width[shoulders_seen]).max() if shoulders_seen.any() else 1.0
    facing = _fill_missing(width / max(widest, 1e-6), shoulders_seen, 1.0)
    facing = np.where(facing < 0, np.minimum(facing, -MIN_FACING), np.maximum(facing, MIN_FACING))
    root = _fill_missing(points[:, sk.NECK], seen[:, sk.NECK], 0.0) / torso
    time = np.arange(len(pose)) / pose.fps
    return Motion(name, np.stack(columns, axis=1), root - root[0], facing, time)


def resample(motion: Motion, start: float, frames: int, fps: float) -> Motion:
    """`frames` frames at `fps` from `start` seconds, linearly interpolated (angles are unwrapped, so exact)."""
    time = start + np.arange(frames) / fps

    def at(values: np.ndarray) -> np.ndarray:
        return np.stack([np.interp(time, motion.time, column) for column in np.atleast_2d(values.T)], axis=1)

    root = at(motion.root)
    return Motion(motion.name, at(motion.angles), root - root[0], at(motion.facing)[:, 0], time - start)


def windows(motion: Motion, frames: int, fps: float) -> list[Motion]:
    """Consecutive, non-overlapping clips of `frames` frames at `fps` covering as much of `motion` as fits."""
    length, step = (frames - 1) / fps, frames / fps  # a clip spans `length`; the next starts one frame later
    duration = float(motion.time[-1])
    count = int(np.floor((duration - length) / step + 1e-9)) + 1 if duration >= length else 0
    return [resample(motion, k * step, frames, fps) for k in range(count)]
