"""The source camera's motion, measured on its background, so that the edit poses move with it.

A target's motion is usually filmed by a still camera; the source's camera may pan, zoom or shake.
The edited person must stand on the source's ground, so their poses must follow the source's
camera the way the source person's ground does (in the synthetic world, the ground-truth edit is
exactly that). Alignment (:mod:`mfollow.preprocess.pose.align`) therefore works in the coordinates of one
reference frame (frame 0): the source poses are moved there, the target's motion is aligned there,
and the result is moved back into every frame with that frame's camera.

The camera of frame f is a similarity without rotation from its pixels to frame 0's,
``p_0 = scale[f] * p + shift[f]``, chained from frame-to-frame registrations (consecutive frames
always overlap, however far a long pan travels). Each registration fits scale and shift by
Gauss-Newton on grey levels, coarse to fine, on the pixels outside both frames' person boxes
(the pose boxes, widened), with Huber weights so that anything else moving counts little. A
registration that does not explain the background better than no motion at all is replaced by no
motion (a flat wall or sky has nothing to measure).

Pixel coordinates are continuous: pixel (row i, column j) covers [j, j + 1) x [i, i + 1).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from PIL import Image

from mfollow.preprocess.raster import bilinear

#: Longest side (pixels) at which frames are registered.
WORK_SIDE = 160
#: Person boxes are widened by this fraction of their size on every side before being excluded.
BOX_MARGIN = 0.15
LEVELS = 3  # pyramid levels (each halves the size)
ITERATIONS = 20  # Gauss-Newton iterations per level at most
HUBER = 0.05  # grey-level residual (0-1) above which a pixel's weight falls off


@dataclass(frozen=True)
class CameraTrack:
    """Per frame f: ``p_0 = scale[f] * p_f + shift[f]`` maps frame f's pixels to frame 0's."""

    scale: np.ndarray  # (F,)
    shift: np.ndarray  # (F, 2): x, y

    def __len__(self) -> int:
        return len(self.scale)

    @classmethod
    def still(cls, frames: int) -> CameraTrack:
        """No camera motion over ``frames`` frames."""
        return cls(np.ones(frames), np.zeros((frames, 2)))

    def _per_frame(self, frames: int) -> tuple[np.ndarray, np.ndarray]:
        """(F, 1) scales and (F, 2) shifts for ``frames`` frames; past the track's end the last
        frame's camera holds (a target longer than the source)."""
        k = np.minimum(np.arange(frames), len(self) - 1)
        return self.scale[k][:, None], self.shift[k]

    def frame_to_reference(self, points: np.ndarray, f: int) -> np.ndarray:
        """(..., 2) pixel points of frame ``f`` -> frame 0's pixels (past the end: the last frame's)."""
        k = min(f, len(self) - 1)
        return self.scale[k] * points + self.shift[k]

    def to_reference(self, points: np.ndarray) -> np.ndarray:
        """(F, ..., 2) pixel points of each frame -> frame 0's pixels."""
        a, b = self._per_frame(len(points))
        shape = (len(points),) + (1,) * (points.ndim - 2)
        return a.reshape(*shape, 1) * points + b.reshape(*shape, 2)

    def from_reference(self, points: np.ndarray) -> np.ndarray:
        """(F, ..., 2) points in frame 0's pixels -> each frame f's pixels."""
        a, b = self._per_frame(len(points))
        shape = (len(points),) + (1,) * (points.ndim - 2)
        return (points - b.reshape(*shape, 2)) / a.reshape(*shape, 1)

    def to_json(self) -> dict[str, object]:
        return {"scale": [round(float(v), 6) for v in self.scale], "shift": np.round(self.shift, 4).tolist()}

    @classmethod
    def from_json(cls, data: dict[str, object]) -> CameraTrack:
        scale = np.asarray(data["scale"], dtype=np.float64)
        return cls(scale, np.asarray(data["shift"], dtype=np.float64).reshape(len(scale), 2))


def estimate_track(frames: Iterable[np.ndarray], boxes: np.ndarray) -> CameraTrack:
    """The camera of every frame of ``frames`` ((H, W, 3) uint8 each) relative to frame 0.

    ``boxes`` (F, 4) are the person's boxes (x0, y0, x1, y1, normalised), excluded from the
    measurement; NaN boxes exclude nothing. Fewer frames than boxes stops the track early."""
    scales, shifts = [1.0], [np.zeros(2)]
    prev: tuple[np.ndarray, np.ndarray] | None = None
    step = (1.0, np.zeros(2))  # the last frame-to-frame motion: the next one's starting guess
    for f, frame in enumerate(frames):
        if f >= len(boxes):
            break
        grey, k = _grey(frame)
        keep = _outside(boxes[f], grey.shape)
        if prev is not None:
            a, t = _register(grey, keep, *prev, *step)  # frame f -> frame f-1, working pixels
            step = (a, t)
            # p_{f-1} = a p_f + k t (frame pixels); p_0 = scale_{f-1} p_{f-1} + shift_{f-1}
            scales.append(scales[-1] * a)
            shifts.append(scales[-2] * k * t + shifts[-1])
        prev = (grey, keep)
    n = len(scales) if prev is not None else 0
    return CameraTrack(np.array(scales[:n]), np.array(shifts[:n]).reshape(n, 2))


def _grey(frame: np.ndarray) -> tuple[np.ndarray, float]:
    """(h, w) float32 grey levels in [0, 1] at most :data:`WORK_SIDE` on the long side, and the
    frame pixels per working pixel."""
    h, w = frame.shape[:2]
    k = max(1.0, max(h, w) / WORK_SIDE)
    img = Image.fromarray(frame).convert("L")
    if k > 1.0:
        img = img.resize((round(w / k), round(h / k)), Image.Resampling.BOX)
        k = w / img.width  # the exact factor of the rounded size
    return np.asarray(img, dtype=np.float32) / 255.0, k


def _outside(box: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """(h, w) bool: the pixels outside the widened person ``box`` (normalised x0, y0, x1, y1)."""
    h, w = shape
    keep = np.ones((h, w), bool)
    if not np.isfinite(box).all() or box[2] <= box[0] or box[3] <= box[1]:
        return keep
    mx, my = BOX_MARGIN * (box[2] - box[0]), BOX_MARGIN * (box[3] - box[1])
    x0, x1 = int(np.floor((box[0] - mx) * w)), int(np.ceil((box[2] + mx) * w))
    y0, y1 = int(np.floor((box[1] - my) * h)), int(np.ceil((box[3] + my) * h))
    keep[max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0)] = False
    return keep


def _half(img: np.ndarray) -> np.ndarray:
    """2x2 box average (odd edges cropped): one pyramid level down."""
    h, w = img.shape[0] // 2 * 2, img.shape[1] // 2 * 2
    return img[:h, :w].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))  # (h, w) -> (h/2, 2, w/2, 2) -> (h/2, w/2)


def _register(
    img: np.ndarray, keep: np.ndarray, ref: np.ndarray, ref_keep: np.ndarray, a0: float, t0: np.ndarray
) -> tuple[float, np.ndarray]:
    """(a, t) such that ``ref(a p + t) ≈ img(p)`` on the kept pixels of both (working pixels,
    continuous coordinates), starting from (a0, t0); no motion when that explains them better."""
    pyramid = [(img, keep.astype(np.float32), ref, ref_keep.astype(np.float32))]
    for _ in range(LEVELS - 1):
        i, m, r, rm = pyramid[-1]
        if min(i.shape) < 16:
            break
        pyramid.append((_half(i), _half(m), _half(r), _half(rm)))
    a, t = float(a0), np.asarray(t0, dtype=np.float64).copy()
    for level in range(len(pyramid) - 1, -1, -1):
        i, m, r, rm = pyramid[level]
        s = 2.0**level
        a, t_l = _gauss_newton(i, m > 0.99, r, rm, a, t / s)
        t = t_l * s
    if _cost(img, keep, ref, ref_keep, a, t) > _cost(img, keep, ref, ref_keep, 1.0, np.zeros(2)):
        return 1.0, np.zeros(2)
    return a, t


def _warped(ref: np.ndarray, ref_keep: np.ndarray, a: float, t: np.ndarray) -> tuple[np.ndarray, ...]:
    """``ref`` and its gradients sampled at ``a p + t`` for every pixel centre p of a same-size
    image, with the mask of samples that land inside and on ``ref``'s kept pixels."""
    h, w = ref.shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64) + 0.5  # pixel centres
    px, py = a * xs + t[0], a * ys + t[1]
    inside = (px >= 0.5) & (px <= w - 0.5) & (py >= 0.5) & (py <= h - 0.5)
    gy, gx = np.gradient(ref)
    stack = np.stack([ref, gx, gy, ref_keep.astype(np.float32)], axis=-1)  # (h, w, 4)
    r, rx, ry, rk = np.moveaxis(bilinear(stack, py - 0.5, px - 0.5), -1, 0)  # array indices are centres - 0.5
    return r, rx, ry, inside & (rk > 0.99), xs, ys


def _gauss_newton(
    img: np.ndarray, keep: np.ndarray, ref: np.ndarray, ref_keep: np.ndarray, a: float, t: np.ndarray
) -> tuple[float, np.ndarray]:
    for _ in range(ITERATIONS):
        r, rx, ry, valid, xs, ys = _warped(ref, ref_keep, a, t)
        valid &= keep
        if valid.sum() < 32:
            break
        res = (r - img)[valid]
        w = np.minimum(1.0, HUBER / np.maximum(np.abs(res), 1e-12))  # Huber weights
        J = np.stack([rx * xs + ry * ys, rx, ry])[:, valid]  # d residual / d (a, t_x, t_y)
        H = (J * w) @ J.T
        H += 1e-6 * np.trace(H) * np.eye(3)  # damped: a textureless background moves nothing
        delta = -np.linalg.solve(H, (J * w) @ res)
        a, t = a + float(delta[0]), t + delta[1:]
        if abs(delta[0]) * max(img.shape) < 1e-3 and np.abs(delta[1:]).max() < 1e-3:
            break
    return a, t


def _cost(img: np.ndarray, keep: np.ndarray, ref: np.ndarray, ref_keep: np.ndarray, a: float, t: np.ndarray) -> float:
    """Mean Huber cost of the residual on the pixels kept in both (inf when too few overlap)."""
    r, _, _, valid, _, _ = _warped(ref, ref_keep, a, t)
    valid &= keep
    if valid.sum() < 32:
        return float("inf")
    e = np.abs(r - img)[valid]
    return float(np.where(e < HUBER, 0.5 * e**2, HUBER * (e - 0.5 * HUBER)).mean())
