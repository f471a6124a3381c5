"""Binary morphology with the 3x3 cross (a pixel and its four neighbours), on the last two axes
of a boolean mask stack (..., H, W). Outside the frame counts as inside the mask for erosion and
outside it for dilation, so the frame's border is never an edge of its own: a person cut by the
frame edge keeps its pixels there."""

from __future__ import annotations

import numpy as np


def _neighbours(m: np.ndarray, fill: bool) -> list[np.ndarray]:
    """``m`` (..., H, W) and its four shifts by one pixel (the 3x3 cross), padded with ``fill``."""
    pad = [(0, 0)] * (m.ndim - 2) + [(1, 1), (1, 1)]
    p = np.pad(m, pad, constant_values=fill)
    return [p[..., 1:-1, 1:-1], p[..., :-2, 1:-1], p[..., 2:, 1:-1], p[..., 1:-1, :-2], p[..., 1:-1, 2:]]


def erode(m: np.ndarray) -> np.ndarray:
    """The pixels of ``m`` whose four neighbours are all in ``m`` (or outside the frame)."""
    return np.logical_and.reduce(_neighbours(m, True))


def dilate(m: np.ndarray) -> np.ndarray:
    """The pixels of ``m`` and their four neighbours."""
    return np.logical_or.reduce(_neighbours(m, False))


def edge(m: np.ndarray) -> np.ndarray:
    """The pixels of ``m`` with a neighbour outside it (inside the frame): ``m`` less its erosion."""
    return m & ~erode(m)
