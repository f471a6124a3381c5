"""Rasterising simple shapes with no anti-aliasing: pixel (row i, column j) is covered when its
centre (j + 0.5, i + 0.5) lies inside the shape. Used by the synthetic world and the mask
fallbacks, so their masks follow one convention."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Part:
    """A shape in pixels: ``capsule`` (a, b, radius), ``disc`` (a = centre, radius) or ``poly``
    (convex polygon ``points``); ``angle`` orients its texture, ``group`` picks its colours."""

    kind: str
    group: str
    a: np.ndarray
    b: np.ndarray | None = None
    radius: float = 0.0
    points: np.ndarray | None = None
    angle: float = 0.0


def bbox(part: Part, height: int, width: int) -> tuple[int, int, int, int] | None:
    if part.kind == "poly":
        assert part.points is not None
        lo, hi = part.points.min(0), part.points.max(0)
    else:
        ends = np.stack([part.a, part.b if part.b is not None else part.a])
        lo, hi = ends.min(0) - part.radius, ends.max(0) + part.radius
    x0, y0 = max(0, int(np.floor(lo[0] - 0.5))), max(0, int(np.floor(lo[1] - 0.5)))
    x1, y1 = min(width, int(np.ceil(hi[0] + 0.5)) + 1), min(height, int(np.ceil(hi[1] + 0.5)) + 1)
    return None if x0 >= x1 or y0 >= y1 else (x0, y0, x1, y1)


def coverage(part: Part, px: np.ndarray, py: np.ndarray) -> np.ndarray:
    """Boolean coverage of pixel centres (px, py) by a part."""
    if part.kind == "capsule":
        assert part.b is not None
        d = part.b - part.a
        dd = float(d @ d)
        t = np.zeros_like(px) if dd == 0 else np.clip(((px - part.a[0]) * d[0] + (py - part.a[1]) * d[1]) / dd, 0, 1)
        return (px - part.a[0] - t * d[0]) ** 2 + (py - part.a[1] - t * d[1]) ** 2 <= part.radius**2
    if part.kind == "disc":
        return (px - part.a[0]) ** 2 + (py - part.a[1]) ** 2 <= part.radius**2
    assert part.points is not None
    pts = part.points
    e1, e2 = pts[1] - pts[0], pts[2] - pts[1]
    sign = np.sign(e1[0] * e2[1] - e1[1] * e2[0])  # orientation of the polygon
    inside = np.ones(px.shape, dtype=bool)
    for k in range(len(pts)):
        a, b = pts[k], pts[(k + 1) % len(pts)]
        inside &= sign * ((b[0] - a[0]) * (py - a[1]) - (b[1] - a[1]) * (px - a[0])) >= 0
    return inside


def draw(mask: np.ndarray, part: Part) -> None:
    """OR the part's coverage into a (H, W) bool mask."""
    h, w = mask.shape
    box = bbox(part, h, w)
    if box is None:
        return
    x0, y0, x1, y1 = box
    py, px = np.mgrid[y0:y1, x0:x1].astype(np.float64) + 0.5
    mask[y0:y1, x0:x1] |= coverage(part, px, py)


def bilinear(img: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Sample ``img`` (h, w, C) at float array-index coordinates (y, x) (pixel (i, j) is at
    (i, j)) with bilinear weights, clamped to the image: (..., C) for coordinates of shape (...)."""
    h, w = img.shape[:2]
    x = np.clip(x, 0, w - 1)
    y = np.clip(y, 0, h - 1)
    x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]
    top = img[y0, x0] * (1 - fx) + img[y0, x1] * fx
    bottom = img[y1, x0] * (1 - fx) + img[y1, x1] * fx
    return top * (1 - fy) + bottom * fy
