"""The ``hull`` M_e's measurements on M_r, against exact constructions: a limb's own width beside
the torso, the cap by bone length, the head from the face, and no part the source never shows."""

from __future__ import annotations

import numpy as np
import pytest

from mfollow.preprocess.masks.fallbacks import (
    HEAD_PER_EARS,
    WIDTH_PER_LENGTH,
    _half_width,
    hull_masks,
    limb_widths,
)
from mfollow.preprocess.pose.keypoints import PoseSequence
from mfollow.preprocess.raster import Part, draw


def torso_and_arm(arm_x: float) -> np.ndarray:
    """(200, 200) M_r: a torso (x 60-140, y 40-160) and an arm of half-width 8 hanging at ``arm_x``."""
    mask = np.zeros((200, 200), bool)
    mask[40:160, 60:140] = True
    draw(mask, Part("capsule", "", np.array([arm_x, 50.0]), np.array([arm_x, 150.0]), 8.0))
    return mask


def test_a_limb_against_the_torso_is_measured_on_its_own_side() -> None:
    a, b = np.array([146.0, 50.0]), np.array([146.0, 150.0])  # the bone, 6 px inside the torso's edge
    # outwards the arm's edge is 8 px away; inwards the torso runs on for 86 px: the arm's own side
    assert _half_width(torso_and_arm(146.0), a, b) == pytest.approx(8.0, abs=1.0)
    # a free arm: both sides' mean
    free = np.array([34.0, 0.0])
    assert _half_width(torso_and_arm(180.0), a + free, b + free) == pytest.approx(8.0, abs=1.0)


def test_a_limb_inside_the_body_is_capped_by_its_length() -> None:
    mask = np.zeros((200, 200), bool)
    mask[20:180, 20:180] = True  # the bone lies wholly inside a wide region (an arm across the chest)
    a, b = np.array([70.0, 100.0]), np.array([130.0, 100.0])
    assert _half_width(mask, a, b) == pytest.approx(WIDTH_PER_LENGTH * 60.0)


def person(seen_legs: bool, ears: float = 20.0) -> PoseSequence:
    """One frame of a standing person in a 200 x 200 frame (OpenPose-18, pixels / 200)."""
    pts = {0: (100, 30), 14: (96, 26), 15: (104, 26), 16: (100 - ears / 2, 28), 17: (100 + ears / 2, 28),
           1: (100, 50), 2: (80, 52), 3: (76, 80), 4: (74, 105), 5: (120, 52), 6: (124, 80), 7: (126, 105),
           8: (88, 110), 9: (88, 150), 10: (88, 190), 11: (112, 110), 12: (112, 150), 13: (112, 190)}  # fmt: skip
    body = np.zeros((1, 18, 3))
    for k, (x, y) in pts.items():
        body[0, k] = (x / 200, y / 200, 1.0 if seen_legs or k not in (9, 10, 12, 13) else 0.0)
    return PoseSequence(200, 200, body, np.zeros((1, 6, 3)), np.zeros((1, 2, 21, 3)), np.full((1, 4), np.nan))


def test_the_head_is_sized_from_the_face_and_unseen_parts_are_not_drawn() -> None:
    m_r = np.zeros((1, 200, 200), bool)
    m_r[0, 0:200, 50:150] = True  # a silhouette far wider than any limb (long hair, a coat)
    full = limb_widths(person(True), m_r)
    assert full["head"] == pytest.approx(HEAD_PER_EARS * 20.0)  # not the hair's
    half = limb_widths(person(False), m_r)  # a half-body source: its legs never seen
    assert {"8-9", "9-10", "11-12", "12-13"}.isdisjoint(half) and "2-3" in half
    hull = hull_masks(person(True), half)[0]  # a full-body edit pose
    rows = np.flatnonzero(hull.any(axis=1))
    assert rows.max() < 110 + half["2-3"] + 1  # nothing below the hips' line and the torso's margin
    assert hull_masks(person(True), full)[0][185].any()  # with the legs measured, they are drawn
