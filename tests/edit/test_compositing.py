"""Background compositing (mfollow.edit.compositing): the alpha ramp and the blend, in closed form."""

from __future__ import annotations

import numpy as np
import pytest

from mfollow.edit.compositing import composite, default_margin, person_alpha


def test_alpha_is_one_on_either_person_and_ramps_linearly_outside() -> None:
    M_e = np.zeros((2, 9, 9), bool)
    M_r = np.zeros((2, 9, 9), bool)
    M_e[0, 4, 4] = True  # frame 0: one edit pixel in the middle
    M_r[1, 0, 0] = True  # frame 1: one source pixel in a corner
    a = person_alpha(M_e, M_r, 2)
    assert a.shape == (2, 9, 9) and a.dtype == np.float32
    # chessboard distance d from the person: (margin + 1 - d) / (margin + 1)
    assert a[0, 4, 4] == 1 and a[0, 3, 5] == pytest.approx(2 / 3) and a[0, 2, 6] == pytest.approx(1 / 3)
    assert a[0, 1, 4] == 0 and a[0, 4, 8] == 0
    assert a[1, 0, 0] == 1 and a[1, 1, 1] == pytest.approx(2 / 3) and a[1, 2, 0] == pytest.approx(1 / 3)
    assert a[1, 3, 3] == 0 and a[1, 4, 4] == 0
    assert np.array_equal(person_alpha(M_e, M_r, 0), (M_e | M_r).astype(np.float32))  # no band


def test_composite_blends_and_rounds() -> None:
    edit = np.full((1, 2, 2, 3), 200, np.uint8)
    source = np.full((1, 2, 2, 3), 100, np.uint8)
    alpha = np.array([[[1.0, 0.0], [0.5, 0.25]]], np.float32)
    out = composite(edit, source, alpha)
    assert out.dtype == np.uint8 and out[0, :, :, 0].tolist() == [[200, 100], [150, 125]]
    assert np.array_equal(composite(edit, source, np.rint(alpha * 255).astype(np.uint8)), out)  # 8-bit alpha


def test_bad_shapes_and_margin_are_refused() -> None:
    m = np.zeros((1, 4, 4), bool)
    with pytest.raises(ValueError):
        person_alpha(m, np.zeros((1, 4, 5), bool), 1)
    with pytest.raises(ValueError):
        person_alpha(m, m, -1)
    with pytest.raises(ValueError):
        composite(np.zeros((1, 4, 4, 3), np.uint8), np.zeros((1, 4, 4, 3), np.uint8), np.zeros((1, 4, 5)))
    assert default_margin(128) == 2 and default_margin(512) == 8 and default_margin(32) == 1


def test_feathered_alpha_is_half_on_the_cut_outs_edge_and_the_frame_is_no_edge() -> None:
    from mfollow.edit.compositing import feathered_alpha
    from mfollow.preprocess.masks.morphology import dilate, edge, erode

    m = np.zeros((2, 6, 7), bool)
    m[0, 1:5, 2:6] = True  # a 4x4 square inside the frame
    m[1, :3, :] = True  # a band cut by the frame's top, left and right edges
    a = feathered_alpha(m)
    assert a.dtype == np.float32 and a.shape == m.shape
    inner = np.zeros((6, 7), bool)
    inner[2:4, 3:5] = True
    np.testing.assert_array_equal(a[0], np.where(inner, 1.0, np.where(m[0], 0.5, 0.0)))
    # the band's only edge is its bottom row: the frame's edges are not the person's
    np.testing.assert_array_equal(a[1, :2], 1.0)
    np.testing.assert_array_equal(a[1, 2], 0.5)
    np.testing.assert_array_equal(a[1, 3:], 0.0)
    np.testing.assert_array_equal(edge(m), m & ~erode(m))
    assert dilate(m[0]).sum() == 16 + 4 * 4 and erode(m[0]).sum() == 4  # the cross grows a square's sides only
