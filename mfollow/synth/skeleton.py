"""Puppet skeletons: body proportions and forward kinematics to OpenPose-18, feet and hands.

A puppet faces the viewer, so its right side is on the image's left. Angles are in radians; an
absolute direction ``a`` is the unit vector (sin a, cos a) in image axes (x right, y down), so
``a = 0`` points down and ``a > 0`` turns toward +x. Joint angles (see :data:`ANGLES`) are
relative and mirrored between the sides: a positive shoulder angle lifts either arm away from
the body, a positive elbow or knee angle bends the limb the same way on both sides.

Lengths are in units of the puppet's height; :func:`forward` scales by the height in pixels.
Retargeting a motion to another puppet is therefore exact: the same angles on other proportions.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

#: Joint-angle channels of a motion (radians) plus the root offset (in puppet heights).
ANGLES = (
    "torso", "head", "r_shoulder", "r_elbow", "l_shoulder", "l_elbow",
    "r_hip", "r_knee", "l_hip", "l_knee", "root_dx", "root_dy",
)  # fmt: skip


@dataclass(frozen=True)
class Proportions:
    """Segment lengths and half-widths as fractions of the puppet's height."""

    torso: float = 0.30  # pelvis → neck
    neck: float = 0.07  # neck → head centre minus the head radius
    head: float = 0.065  # head radius
    shoulder: float = 0.11  # half the shoulder width
    hip: float = 0.07  # half the hip width
    upper_arm: float = 0.17
    forearm: float = 0.15
    hand: float = 0.065
    thigh: float = 0.24
    shin: float = 0.23
    foot: float = 0.07
    arm_width: float = 0.032  # half-widths (capsule radii)
    leg_width: float = 0.042

    @classmethod
    def sample(cls, rng: np.random.Generator, spread: float = 0.15) -> Proportions:
        """Random proportions: every field scaled by a factor in [1 - spread, 1 + spread]."""
        base = cls()
        return cls(**{f.name: getattr(base, f.name) * rng.uniform(1 - spread, 1 + spread) for f in fields(cls)})


@dataclass(frozen=True)
class Skeleton:
    """Joint positions in pixels for F frames (image axes).

    ``body`` (F, 18, 2) OpenPose-18; ``feet`` (F, 6, 2); ``hands`` (F, 2, 21, 2) left then right;
    ``head`` (F, 2) head centre; ``up`` (F, 2) the head's up direction; ``pelvis`` (F, 2);
    ``height_px`` (F,) the puppet's height in pixels in each frame (it changes with camera zoom).
    """

    body: np.ndarray
    feet: np.ndarray
    hands: np.ndarray
    head: np.ndarray
    up: np.ndarray
    pelvis: np.ndarray
    height_px: float
    props: Proportions


def _dir(a: np.ndarray) -> np.ndarray:
    """Absolute angle(s) (F,) → unit direction(s) (F, 2) in image axes."""
    return np.stack([np.sin(a), np.cos(a)], axis=-1)


def _hand(wrist: np.ndarray, along: np.ndarray, size: np.ndarray, side: float) -> np.ndarray:
    """21 hand points (F, 21, 2): a wrist and five fanned fingers of four points each.

    ``along`` is the forearm's absolute angle (F,); ``size`` (F, 1) the hand length in pixels;
    ``side`` is +1 for the left hand and -1 for the right (mirrored fan).
    """
    spreads = np.radians([-55.0, -22.0, -6.0, 9.0, 24.0]) * side  # thumb, index, middle, ring, pinky
    starts = (0.18, 0.38, 0.38, 0.38, 0.38)  # where each finger leaves the palm
    lengths = (0.55, 0.78, 0.85, 0.78, 0.62)  # where it ends (fractions of the hand length)
    pts = [wrist]
    for spread, start, end in zip(spreads, starts, lengths, strict=True):
        d = _dir(along + spread)  # (F, 2)
        pts += [wrist + d * size * (start + (end - start) * k / 3) for k in range(4)]
    return np.stack(pts, axis=1)


def forward(angles: dict[str, np.ndarray], props: Proportions, root: np.ndarray, height_px: float) -> Skeleton:
    """Forward kinematics.

    Args:
        angles: each :data:`ANGLES` channel as an (F,) array (radians; root offsets in heights).
        props: the puppet's proportions.
        root: (2,) or (F, 2) pelvis anchor in pixels, before the motion's root offset.
        height_px: the puppet's height in pixels, a scalar or (F,) (camera zoom varies it).

    Returns:
        The :class:`Skeleton` for the F frames.
    """
    p = props
    n = len(angles["torso"])
    heights = np.broadcast_to(np.asarray(height_px, dtype=np.float64), (n,))
    h = heights[:, None]  # (F, 1): scales every (F, 2) offset
    pelvis = np.broadcast_to(np.asarray(root, dtype=np.float64), (n, 2)) + h * np.stack(
        [angles["root_dx"], angles["root_dy"]], axis=-1
    )
    torso_up = angles["torso"] + np.pi  # the torso points up from the pelvis
    across = _dir(angles["torso"] + np.pi / 2)  # toward +x (the puppet's left) along the shoulders
    neck = pelvis + h * p.torso * _dir(torso_up)
    head_a = torso_up + angles["head"]
    up = _dir(head_a)
    head = neck + h * (p.neck + p.head) * up
    head_across = _dir(head_a - np.pi / 2)  # toward +x when upright

    def arm(side: float, shoulder_a: np.ndarray, elbow_a: np.ndarray) -> tuple[np.ndarray, ...]:
        shoulder = neck + side * h * p.shoulder * across
        upper = angles["torso"] + side * shoulder_a
        elbow = shoulder + h * p.upper_arm * _dir(upper)
        fore = upper + side * elbow_a
        wrist = elbow + h * p.forearm * _dir(fore)
        return shoulder, elbow, wrist, fore

    def leg(side: float, hip_a: np.ndarray, knee_a: np.ndarray) -> tuple[np.ndarray, ...]:
        hip = pelvis + side * h * p.hip * across
        thigh = side * hip_a
        knee = hip + h * p.thigh * _dir(thigh)
        shin = thigh - side * knee_a
        ankle = knee + h * p.shin * _dir(shin)
        toe_dir = _dir(shin + side * np.pi / 2 * 0.9)  # feet point outward, slightly down
        heel = ankle - 0.25 * h * p.foot * toe_dir
        big = ankle + h * p.foot * toe_dir
        small = ankle + 0.8 * h * p.foot * _dir(shin + side * np.pi / 2 * 0.75)
        return hip, knee, ankle, big, small, heel

    r_sh, r_el, r_wr, r_fore = arm(-1.0, angles["r_shoulder"], angles["r_elbow"])
    l_sh, l_el, l_wr, l_fore = arm(1.0, angles["l_shoulder"], angles["l_elbow"])
    r_hip, r_kn, r_an, r_big, r_small, r_heel = leg(-1.0, angles["r_hip"], angles["r_knee"])
    l_hip, l_kn, l_an, l_big, l_small, l_heel = leg(1.0, angles["l_hip"], angles["l_knee"])
    r = h * p.head
    nose = head - 0.15 * r * up
    eye_y = head + 0.25 * r * up
    r_eye, l_eye = eye_y - 0.35 * r * head_across, eye_y + 0.35 * r * head_across
    r_ear, l_ear = head - 0.85 * r * head_across, head + 0.85 * r * head_across
    body = np.stack(
        [
            nose,
            neck,
            r_sh,
            r_el,
            r_wr,
            l_sh,
            l_el,
            l_wr,
            r_hip,
            r_kn,
            r_an,
            l_hip,
            l_kn,
            l_an,
            r_eye,
            l_eye,
            r_ear,
            l_ear,
        ],
        axis=1,
    )  # (F, 18, 2)
    feet = np.stack([l_big, l_small, l_heel, r_big, r_small, r_heel], axis=1)  # (F, 6, 2)
    hands = np.stack([_hand(l_wr, l_fore, h * p.hand, 1.0), _hand(r_wr, r_fore, h * p.hand, -1.0)], axis=1)
    return Skeleton(body, feet, hands, head, up, pelvis, heights, p)
