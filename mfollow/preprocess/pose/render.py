"""OpenPose-style skeleton images, the pose conditioning PoCtr sees (docs/method.md, §10).

Black canvas; body limbs as filled ellipse polygons (half-width 4, sampled every degree like
OpenCV's ``ellipse2Poly``) in the 18-colour table; the canvas is then dimmed to 60% (truncated);
joints as filled disks of radius 4 in full colour; hands: 20 edges (thickness 2) coloured by
HSV(e / 20) and red-blue-swapped-aware dots of radius 4; optional white face dots of radius 3. No
anti-aliasing. Visibility: body points need score > 0.3, hand and face points score >= 0.3.

Colour order: ``official`` is the released MotionFollower poses' order (red and blue swapped with
respect to the ControlNet/DWPose table; the default for the official weights); ``standard`` is the
ControlNet/DWPose order. They differ exactly by reversing the channels.
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Iterator

import numpy as np

from mfollow.preprocess.pose import ColorOrder
from mfollow.preprocess.pose.keypoints import SEEN, PoseSequence

BODY_COLORS = np.array(
    [
        [255, 0, 0], [255, 85, 0], [255, 170, 0], [255, 255, 0], [170, 255, 0], [85, 255, 0],
        [0, 255, 0], [0, 255, 85], [0, 255, 170], [0, 255, 255], [0, 170, 255], [0, 85, 255],
        [0, 0, 255], [85, 0, 255], [170, 0, 255], [255, 0, 255], [255, 0, 170], [255, 0, 85],
    ],
    dtype=np.uint8,
)  # fmt: skip
#: Limbs as (first, second) OpenPose-18 indices; limb j takes colour j (the 17 drawn ones).
LIMBS = (
    (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10),
    (1, 11), (11, 12), (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17),
)  # fmt: skip
HAND_EDGES = tuple((0 if k % 4 == 0 else k, k + 1) for k in range(20))  # wrist->1, 1->2, ..., wrist->5, ...
STICK, JOINT_RADIUS, HAND_RADIUS, FACE_RADIUS, HAND_THICKNESS = 4, 4, 4, 3, 2
BODY_THRESHOLD = PART_THRESHOLD = SEEN


def hand_edge_colors() -> np.ndarray:
    """(20, 3) uint8: edge e gets HSV(e / 20, 1, 1) as RGB."""
    return np.array([[round(c * 255) for c in colorsys.hsv_to_rgb(e / 20, 1.0, 1.0)] for e in range(20)], np.uint8)


def ellipse_polygon(cx: int, cy: int, half_length: int, half_width: int, angle_deg: int) -> np.ndarray:
    """Outline points of a rotated ellipse sampled every degree (``ellipse2Poly`` semantics)."""
    a = math.radians(angle_deg)
    t = np.radians(np.arange(0, 361))
    x = half_length * np.cos(t)
    y = half_width * np.sin(t)
    px = np.rint(cx + x * math.cos(a) - y * math.sin(a))
    py = np.rint(cy + x * math.sin(a) + y * math.cos(a))
    return np.stack([px, py], axis=1)


def _fill_convex(canvas: np.ndarray, poly: np.ndarray, color: np.ndarray) -> None:
    """Fill a convex polygon (boundary included) on integer pixel coordinates."""
    h, w = canvas.shape[:2]
    x0, y0 = max(0, int(poly[:, 0].min())), max(0, int(poly[:, 1].min()))
    x1, y1 = min(w - 1, int(poly[:, 0].max())), min(h - 1, int(poly[:, 1].max()))
    if x0 > x1 or y0 > y1:
        return
    pts = np.unique(poly, axis=0) if len(poly) > 2 else poly
    if len(pts) < 3:  # degenerate (zero-length limb): a line of pixels
        for px, py in pts.astype(int):
            if 0 <= px < w and 0 <= py < h:
                canvas[py, px] = color
        return
    pts = _convex_hull(pts)  # rounding can leave tiny concavities; the fill assumes convexity
    yy, xx = np.mgrid[y0 : y1 + 1, x0 : x1 + 1]
    inside = np.ones(xx.shape, dtype=bool)
    for k in range(len(pts)):
        a, b = pts[k], pts[(k + 1) % len(pts)]
        inside &= (b[0] - a[0]) * (yy - a[1]) - (b[1] - a[1]) * (xx - a[0]) >= -1e-9
    canvas[y0 : y1 + 1, x0 : x1 + 1][inside] = color


def _convex_hull(points: np.ndarray) -> np.ndarray:
    """Counter-clockwise convex hull of (N, 2) points (Andrew's monotone chain)."""
    pts = sorted(map(tuple, points.tolist()))

    def half(seq: list[tuple[float, float]]) -> list[tuple[float, float]]:
        out: list[tuple[float, float]] = []
        for p in seq:
            while (
                len(out) >= 2
                and (out[-1][0] - out[-2][0]) * (p[1] - out[-2][1]) - (out[-1][1] - out[-2][1]) * (p[0] - out[-2][0])
                <= 0
            ):
                out.pop()
            out.append(p)
        return out

    lower, upper = half(pts), half(pts[::-1])
    return np.array(lower[:-1] + upper[:-1])


def _disk(canvas: np.ndarray, x: int, y: int, radius: int, color: np.ndarray) -> None:
    h, w = canvas.shape[:2]
    yy, xx = np.ogrid[-radius : radius + 1, -radius : radius + 1]
    disk = xx * xx + yy * yy <= radius * radius  # 49 pixels at radius 4
    ys, xs = np.nonzero(disk)
    ys, xs = ys + y - radius, xs + x - radius
    ok = (ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)
    canvas[ys[ok], xs[ok]] = color


def _line(canvas: np.ndarray, a: tuple[float, float], b: tuple[float, float], color: np.ndarray) -> None:
    """A straight line of thickness 2 (a capsule of radius 1)."""
    h, w = canvas.shape[:2]
    (ax, ay), (bx, by) = a, b
    x0, x1 = max(0, int(min(ax, bx)) - 1), min(w - 1, int(max(ax, bx)) + 1)
    y0, y1 = max(0, int(min(ay, by)) - 1), min(h - 1, int(max(ay, by)) + 1)
    if x0 > x1 or y0 > y1:
        return
    yy, xx = np.mgrid[y0 : y1 + 1, x0 : x1 + 1].astype(np.float64)
    dx, dy = bx - ax, by - ay
    dd = dx * dx + dy * dy
    t = np.zeros_like(xx) if dd == 0 else np.clip(((xx - ax) * dx + (yy - ay) * dy) / dd, 0, 1)
    near = (xx - ax - t * dx) ** 2 + (yy - ay - t * dy) ** 2 <= (HAND_THICKNESS / 2) ** 2
    canvas[y0 : y1 + 1, x0 : x1 + 1][near] = color


def render_frame(
    body: np.ndarray,
    width: int,
    height: int,
    hands: np.ndarray | None = None,
    face: np.ndarray | None = None,
    colors: ColorOrder = "official",
) -> np.ndarray:
    """One pose image (height, width, 3) uint8 from normalised keypoints with scores:
    ``body`` (18, 3), ``hands`` (2, 21, 3) or None (not drawn), ``face`` (68, 3) or None."""
    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    px = body[:, 0] * width
    py = body[:, 1] * height
    visible = body[:, 2] > BODY_THRESHOLD
    for j, (p, q) in enumerate(LIMBS):
        if not (visible[p] and visible[q]):
            continue
        mx, my = int((px[p] + px[q]) / 2), int((py[p] + py[q]) / 2)  # truncated, as upstream
        length = math.hypot(px[p] - px[q], py[p] - py[q])
        angle = int(math.degrees(math.atan2(py[p] - py[q], px[p] - px[q])))
        _fill_convex(canvas, ellipse_polygon(mx, my, int(length / 2), STICK, angle), BODY_COLORS[j])
    canvas = (canvas.astype(np.float64) * 0.6).astype(np.uint8)  # dim the limbs
    for i in np.flatnonzero(visible):
        _disk(canvas, int(px[i]), int(py[i]), JOINT_RADIUS, BODY_COLORS[i])
    if hands is not None:
        edge_colors = hand_edge_colors()
        for hand in hands:
            hx, hy = hand[:, 0] * width, hand[:, 1] * height
            ok = (hand[:, 2] >= PART_THRESHOLD) & (hx.astype(int) > 0) & (hy.astype(int) > 0)
            for e, (p, q) in enumerate(HAND_EDGES):
                if ok[p] and ok[q]:
                    _line(canvas, (hx[p], hy[p]), (hx[q], hy[q]), edge_colors[e])
            for i in np.flatnonzero(ok):
                _disk(canvas, int(hx[i]), int(hy[i]), HAND_RADIUS, np.array([0, 0, 255], np.uint8))
    if face is not None:
        fx, fy = face[:, 0] * width, face[:, 1] * height
        for i in np.flatnonzero((face[:, 2] >= PART_THRESHOLD) & (fx.astype(int) > 0) & (fy.astype(int) > 0)):
            _disk(canvas, int(fx[i]), int(fy[i]), FACE_RADIUS, np.array([255, 255, 255], np.uint8))
    return np.ascontiguousarray(canvas[..., ::-1]) if colors == "official" else canvas


def render_sequence(
    poses: PoseSequence,
    width: int,
    height: int,
    *,
    hands: bool = True,
    face: bool = False,
    colors: ColorOrder = "official",
) -> Iterator[np.ndarray]:
    """Pose images for every frame of ``poses`` (drawn at width x height)."""
    for f in range(len(poses)):
        yield render_frame(
            poses.body[f],
            width,
            height,
            poses.hands[f] if hands else None,
            poses.face[f] if face and poses.face is not None else None,
            colors,
        )
