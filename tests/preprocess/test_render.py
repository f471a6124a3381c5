"""OpenPose-style rendering: joints, limb colours, thresholds, colour orders."""

from __future__ import annotations

import numpy as np

from mfollow.preprocess.pose.render import BODY_COLORS, hand_edge_colors, render_frame


def body(points: dict[int, tuple[float, float]]) -> np.ndarray:
    b = np.zeros((18, 3))
    for i, (x, y) in points.items():
        b[i] = (x, y, 1.0)
    return b


def test_single_joint_is_a_49_pixel_disk_in_full_colour() -> None:
    img = render_frame(body({3: (0.505, 0.505)}), 100, 100, colors="standard")
    lit = img.any(-1)
    assert lit.sum() == 49 and lit[50, 50] and (img[lit] == BODY_COLORS[3]).all()
    assert lit[46, 50] and not lit[45, 50]  # radius 4 around pixel (50, 50)


def test_limb_is_dimmed_table_colour_and_joints_full() -> None:
    img = render_frame(body({1: (0.5, 0.2), 8: (0.5, 0.8)}), 100, 100, colors="standard")  # limb 6: neck-R hip
    assert (img[50, 50] == (BODY_COLORS[6] * 0.6).astype(np.uint8)).all()  # (0, 153, 0)
    assert (img[20, 50] == BODY_COLORS[1]).all() and (img[80, 50] == BODY_COLORS[8]).all()
    assert img[50, 54].any() and not img[50, 56].any()  # half-width 4


def test_invisible_points_and_their_limbs_are_skipped() -> None:
    b = body({1: (0.5, 0.2), 8: (0.5, 0.8)})
    b[8, 2] = 0.3  # not above the 0.3 threshold
    img = render_frame(b, 100, 100, colors="standard")
    assert img.any(-1).sum() == 49  # only the neck joint


def test_official_order_is_the_channel_reversed_standard_order() -> None:
    rng = np.random.default_rng(0)
    b = np.concatenate([rng.uniform(0.2, 0.8, (18, 2)), np.ones((18, 1))], axis=1)
    hands = np.concatenate([rng.uniform(0.2, 0.8, (2, 21, 2)), np.ones((2, 21, 1))], axis=2)
    std = render_frame(b, 64, 64, hands=hands, colors="standard")
    np.testing.assert_array_equal(render_frame(b, 64, 64, hands=hands, colors="official"), std[..., ::-1])


def test_hand_colours_and_dots() -> None:
    colors = hand_edge_colors()
    assert colors.shape == (20, 3) and tuple(colors[0]) == (255, 0, 0) and tuple(colors[10]) == (0, 255, 255)
    hands = np.zeros((2, 21, 3))
    hands[0, 0] = (0.3, 0.5, 1.0)
    img = render_frame(np.zeros((18, 3)), 100, 100, hands=hands, colors="standard")
    assert img.any(-1).sum() == 49 and (img[50, 30] == (0, 0, 255)).all()
