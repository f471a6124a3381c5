"""Parametric motions: joint-angle trajectories (see :data:`skeleton.ANGLES`) plus root offset.

Each motion is a pure function of time and a few parameters drawn from a seeded generator, so a
:class:`Motion` (kind + parameters) fully determines its trajectory at any frame rate.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mfollow.synth.skeleton import ANGLES

KINDS = ("walk", "wave", "squat", "jump", "arm_circles", "dance")

# A relaxed standing pose: arms slightly away from the body, elbows a little bent.
REST = {"r_shoulder": 0.25, "l_shoulder": 0.25, "r_elbow": 0.15, "l_elbow": 0.15, "r_hip": 0.06, "l_hip": 0.06}


@dataclass(frozen=True)
class Motion:
    """A motion kind and its parameters (tempo in Hz, amplitudes, phases)."""

    kind: str
    params: tuple[tuple[str, float], ...] = field(default=())

    @classmethod
    def sample(cls, kind: str, rng: np.random.Generator) -> Motion:
        """Random parameters for ``kind`` (one of :data:`KINDS`)."""
        if kind not in KINDS:
            raise ValueError(f"unknown motion {kind!r}; choose from {', '.join(KINDS)}")
        p: dict[str, float] = {"tempo": rng.uniform(0.6, 1.2), "phase": rng.uniform(0, 2 * np.pi)}
        p["amp"] = rng.uniform(0.8, 1.2)
        p["drift"] = rng.uniform(-0.15, 0.15)
        if kind == "dance":
            for name in ANGLES[:10]:
                for k in range(3):
                    p[f"{name}_a{k}"] = rng.normal(0, 0.35 / (k + 1))
                    p[f"{name}_f{k}"] = rng.uniform(0.2, 1.0) * (k + 1)
                    p[f"{name}_p{k}"] = rng.uniform(0, 2 * np.pi)
        return cls(kind, tuple(sorted(p.items())))

    def angles(self, t: np.ndarray) -> dict[str, np.ndarray]:
        """Every :data:`ANGLES` channel at times ``t`` (seconds), each an array shaped like ``t``."""
        p = dict(self.params)
        out = {name: np.zeros_like(t, dtype=np.float64) + REST.get(name, 0.0) for name in ANGLES}
        w = 2 * np.pi * p.get("tempo", 1.0) * t + p.get("phase", 0.0)
        a = p.get("amp", 1.0)
        getattr(self, f"_{self.kind}")(out, t, w, a, p)
        return out

    # Each motion edits the rest pose in place; ``w`` is the phase (radians) at each time.
    @staticmethod
    def _walk(o: dict, t: np.ndarray, w: np.ndarray, a: float, p: dict) -> None:
        o["r_hip"] = 0.06 + 0.35 * a * np.sin(w).clip(0)
        o["l_hip"] = 0.06 + 0.35 * a * np.sin(w + np.pi).clip(0)
        o["r_knee"] = 0.5 * a * np.sin(w).clip(0)
        o["l_knee"] = 0.5 * a * np.sin(w + np.pi).clip(0)
        o["r_shoulder"] = 0.25 + 0.3 * a * np.sin(w + np.pi)
        o["l_shoulder"] = 0.25 + 0.3 * a * np.sin(w)
        o["root_dx"] = p["drift"] * np.sin(0.5 * w)
        o["root_dy"] = -0.015 * np.abs(np.sin(w))

    @staticmethod
    def _wave(o: dict, t: np.ndarray, w: np.ndarray, a: float, p: dict) -> None:
        o["r_shoulder"] = np.full_like(t, 2.3)
        o["r_elbow"] = 0.6 + 0.5 * a * np.sin(2 * w)
        o["head"] = 0.12 * np.sin(w)
        o["torso"] = 0.05 * np.sin(w)

    @staticmethod
    def _squat(o: dict, t: np.ndarray, w: np.ndarray, a: float, p: dict) -> None:
        depth = 0.5 * (1 - np.cos(w)) * a  # 0 → 1 → 0 per period
        o["r_hip"] = 0.06 + 0.6 * depth
        o["l_hip"] = 0.06 + 0.6 * depth
        o["r_knee"] = 1.3 * depth
        o["l_knee"] = 1.3 * depth
        o["root_dy"] = 0.12 * depth
        o["r_shoulder"] = 0.25 + 1.1 * depth
        o["l_shoulder"] = 0.25 + 1.1 * depth

    @staticmethod
    def _jump(o: dict, t: np.ndarray, w: np.ndarray, a: float, p: dict) -> None:
        s = np.sin(w)
        air = s.clip(0)  # airborne half of the period
        crouch = (-s).clip(0)
        o["root_dy"] = -0.25 * a * air**1.5 + 0.06 * crouch
        o["r_knee"] = 0.9 * crouch + 0.3 * air
        o["l_knee"] = 0.9 * crouch + 0.3 * air
        o["r_hip"] = 0.06 + 0.3 * crouch + 0.15 * air
        o["l_hip"] = 0.06 + 0.3 * crouch + 0.15 * air
        o["r_shoulder"] = 0.25 + 2.4 * air
        o["l_shoulder"] = 0.25 + 2.4 * air
        o["root_dx"] = p["drift"] * np.sin(0.5 * w)

    @staticmethod
    def _arm_circles(o: dict, t: np.ndarray, w: np.ndarray, a: float, p: dict) -> None:
        o["r_shoulder"] = 1.6 + 1.3 * a * np.sin(w)
        o["l_shoulder"] = 1.6 + 1.3 * a * np.sin(w + np.pi / 2)
        o["r_elbow"] = 0.1 + 0.1 * np.cos(w)
        o["l_elbow"] = 0.1 + 0.1 * np.cos(w)
        o["torso"] = 0.06 * np.cos(w)

    @staticmethod
    def _dance(o: dict, t: np.ndarray, w: np.ndarray, a: float, p: dict) -> None:
        base = {"r_shoulder": 0.9, "l_shoulder": 0.9, "r_elbow": 0.5, "l_elbow": 0.5, "r_knee": 0.25, "l_knee": 0.25}
        for name in ANGLES[:10]:
            v = np.full_like(t, base.get(name, o[name][0] if o[name].size else 0.0), dtype=np.float64)
            for k in range(3):
                v = v + a * p[f"{name}_a{k}"] * np.sin(2 * np.pi * p[f"{name}_f{k}"] * t + p[f"{name}_p{k}"])
            o[name] = v
        # knees never bend backwards; torso and head stay within a natural range
        o["r_knee"], o["l_knee"] = np.abs(o["r_knee"]), np.abs(o["l_knee"])
        o["torso"], o["head"] = np.clip(o["torso"], -0.35, 0.35), np.clip(o["head"], -0.4, 0.4)
        o["root_dx"] = p["drift"] * np.sin(0.5 * w)
        o["root_dy"] = 0.04 * (o["r_knee"] + o["l_knee"]) / 2
