"""Rasterising puppets and backgrounds with numpy (no anti-aliasing, so masks are exact).

Pixel (row i, column j) is covered by a shape when its centre (j + 0.5, i + 0.5) is inside it.
A puppet is a list of parts (capsules, discs, convex polygons) drawn in order; each part carries
a texture in its own coordinates, so the pattern moves with the body. Drawing returns the person
mask (the exact set of pixels the puppet painted) and a part-id map.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mfollow.preprocess.raster import Part, bbox, bilinear, coverage
from mfollow.synth.skeleton import Skeleton

PATTERNS = ("plain", "stripes", "checks", "dots", "noise")
GROUPS = ("skin", "shirt", "trousers", "shoes", "hair")


@dataclass(frozen=True)
class Appearance:
    """Per-puppet colours (RGB uint8, in [40, 230]) and patterns for each body-part group."""

    colors: dict[str, tuple[tuple[int, int, int], tuple[int, int, int]]]  # group → (main, second)
    patterns: dict[str, str]  # group → one of PATTERNS
    period: float  # pattern period as a fraction of the puppet's height
    noise: np.ndarray  # (8, 8) bool tile for the "noise" pattern

    @classmethod
    def sample(cls, rng: np.random.Generator) -> Appearance:
        def color() -> tuple[int, int, int]:
            return tuple(int(c) for c in rng.integers(40, 231, size=3))  # type: ignore[return-value]

        colors = {g: (color(), color()) for g in GROUPS}
        patterns = {g: str(rng.choice(PATTERNS)) for g in GROUPS}
        patterns["skin"] = "plain"
        return cls(colors, patterns, float(rng.uniform(0.03, 0.06)), rng.random((8, 8)) > 0.5)

    def texture(self, group: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """RGB (..., 3) uint8 of ``group`` at part coordinates (u, v), in periods."""
        kind = self.patterns[group]
        if kind == "stripes":
            on = np.floor(u).astype(np.int64) % 2 == 1
        elif kind == "checks":
            on = (np.floor(u).astype(np.int64) + np.floor(v).astype(np.int64)) % 2 == 1
        elif kind == "dots":
            on = (u - np.floor(u) - 0.5) ** 2 + (v - np.floor(v) - 0.5) ** 2 < 0.09
        elif kind == "noise":
            on = self.noise[np.floor(2 * u).astype(np.int64) % 8, np.floor(2 * v).astype(np.int64) % 8]
        else:
            on = np.zeros(u.shape, dtype=bool)
        main, second = (np.array(c, dtype=np.uint8) for c in self.colors[group])
        return np.where(on[..., None], second, main)


def puppet_parts(sk: Skeleton, f: int) -> list[Part]:
    """The parts of frame ``f`` of a skeleton in draw order (back to front)."""
    h, p = float(sk.height_px[f]), sk.props
    b, ft, hd = sk.body[f], sk.feet[f], sk.hands[f]
    arm, leg = h * p.arm_width, h * p.leg_width
    finger = max(0.75, 0.011 * h)
    parts: list[Part] = []

    def cap(group: str, i: np.ndarray, j: np.ndarray, r: float) -> None:
        d = j - i
        parts.append(Part("capsule", group, i, j, r, angle=float(np.arctan2(d[1], d[0]))))

    # legs (hip → knee → ankle) and feet (heel → big toe)
    for hip, knee, ankle, heel, toe, small in ((8, 9, 10, 5, 3, 4), (11, 12, 13, 2, 0, 1)):
        cap("trousers", b[hip], b[knee], leg)
        cap("trousers", b[knee], b[ankle], leg * 0.9)
        cap("shoes", ft[heel], ft[toe], leg * 0.55)
        cap("shoes", ft[heel], ft[small], leg * 0.5)
    # torso: a convex quadrilateral from the shoulders to the hips, plus the neck
    across = b[5] - b[2]
    across = across / max(np.linalg.norm(across), 1e-9)
    quad = np.stack([b[2] - across * arm, b[5] + across * arm, b[11] + across * leg, b[8] - across * leg])
    torso_angle = float(np.arctan2(across[1], across[0]))
    parts.append(Part("poly", "shirt", quad.mean(0), points=quad, angle=torso_angle))
    cap("skin", b[1], sk.head[f], arm * 0.9)
    # head: a disc with hair on top drawn as the head's own texture group
    up = sk.up[f]
    parts.append(Part("disc", "skin", sk.head[f], radius=h * p.head, angle=float(np.arctan2(up[1], up[0]))))
    # arms (shoulder → elbow → wrist) and hands (palm + fingers), right then left
    for sh, el, wr, hand in ((2, 3, 4, 1), (5, 6, 7, 0)):
        cap("shirt", b[sh], b[el], arm)
        cap("skin", b[el], b[wr], arm * 0.85)
        pts = hd[hand]
        parts.append(
            Part("disc", "skin", (pts[0] + pts[9]) / 2, radius=max(finger * 1.8, 0.3 * np.linalg.norm(pts[9] - pts[0])))
        )
        for k in range(5):
            for s in range(4):
                i = 0 if s == 0 else 1 + 4 * k + s - 1
                cap("skin", pts[i], pts[1 + 4 * k + s], finger)
    return parts


def draw_puppet(
    canvas: np.ndarray, parts: list[Part], look: Appearance, height_px: float, part_ids: np.ndarray | None = None
) -> np.ndarray:
    """Paint ``parts`` onto ``canvas`` (H, W, 3) uint8 in place; return the (H, W) bool mask.

    ``part_ids`` (H, W) int, when given, receives 1 + the index of the part that painted each
    pixel last (0 elsewhere).
    """
    height, width = canvas.shape[:2]
    mask = np.zeros((height, width), dtype=bool)
    period = look.period * height_px
    for index, part in enumerate(parts):
        box = bbox(part, height, width)
        if box is None:
            continue
        x0, y0, x1, y1 = box
        py, px = np.mgrid[y0:y1, x0:x1].astype(np.float64) + 0.5
        cover = coverage(part, px, py)
        if not cover.any():
            continue
        # texture coordinates: along (u) and across (v) the part, in pattern periods
        c, s = np.cos(part.angle), np.sin(part.angle)
        dx, dy = px - part.a[0], py - part.a[1]
        u, v = (dx * c + dy * s) / period, (-dx * s + dy * c) / period
        colour = look.texture(part.group, u, v)
        region = canvas[y0:y1, x0:x1]
        region[cover] = colour[cover]
        mask[y0:y1, x0:x1] |= cover
        if part_ids is not None:
            part_ids[y0:y1, x0:x1][cover] = index + 1
    return mask


# ------------------------------------------------------------------------------ backgrounds
def make_background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A procedural world texture (height, width, 3) uint8: smooth colour fields, a tiled floor,
    and scattered shapes, so camera motion is visible everywhere."""
    grid = rng.integers(30, 226, size=(5, 5, 3)).astype(np.float64)
    ys, xs = np.linspace(0, 4, height), np.linspace(0, 4, width)
    base = bilinear(grid, ys[:, None] * np.ones((1, width)), np.ones((height, 1)) * xs[None, :])
    yy, xx = np.mgrid[0:height, 0:width]
    floor = yy > height * rng.uniform(0.55, 0.7)
    tile = max(4, int(width * rng.uniform(0.02, 0.05)))
    checker = ((xx // tile + yy // tile) % 2 == 0) & floor
    base[checker] *= 0.7
    for _ in range(int(rng.integers(12, 24))):
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        rx, ry = rng.uniform(0.01, 0.06) * width, rng.uniform(0.01, 0.06) * height
        col = rng.integers(20, 236, size=3)
        if rng.random() < 0.5:
            shape = (np.abs(xx - cx) < rx) & (np.abs(yy - cy) < ry)
        else:
            shape = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 < 1
        base[shape] = col
    return np.clip(base, 0, 255).astype(np.uint8)


def view_background(world: np.ndarray, cam: np.ndarray, height: int, width: int) -> np.ndarray:
    """The (height, width, 3) uint8 view of ``world`` through camera ``cam`` = (cx, cy, zoom):
    image pixel centre (j + 0.5, i + 0.5) shows world point ((j + 0.5 - W/2) / zoom + cx, ...)."""
    cx, cy, zoom = cam
    xs = (np.arange(width) + 0.5 - width / 2) / zoom + cx - 0.5
    ys = (np.arange(height) + 0.5 - height / 2) / zoom + cy - 0.5
    if zoom == 1.0 and float(xs[0]).is_integer() and float(ys[0]).is_integer():
        x0, y0 = int(xs[0]), int(ys[0])  # whole-pixel view: an exact crop
        if x0 >= 0 and y0 >= 0 and x0 + width <= world.shape[1] and y0 + height <= world.shape[0]:
            return world[y0 : y0 + height, x0 : x0 + width].copy()
    out = bilinear(world.astype(np.float32), ys[:, None] + np.zeros((1, width)), np.zeros((height, 1)) + xs[None, :])
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
