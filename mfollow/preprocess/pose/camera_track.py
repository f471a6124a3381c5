"""The source camera's motion, measured on its background, so that the edit poses move with it.

A target's motion is usually filmed by a still camera; the source's camera may pan, zoom or shake.
The edited person must stand on the source's ground, so their poses must follow the source's
camera the way the source person's ground does (in the synthetic world, the ground-truth edit is
exactly that). Alignment (:mod:`mfollow.preprocess.pose.align`) therefore works in the coordinates of one
reference frame (frame 0): the source poses are moved there, the target's motion is aligned there,
and the result is moved back into every frame with that frame's camera.

The camera of frame f is a similarity without rotation from its pixels to frame 0's,
``p_0 = scale[f] * p + shift[f]``, registered against a key frame (frame 0, then the first frame
that overlaps the key frame too little: a long pan still travels, and registration errors add up
once per key frame, not once per frame). Each registration fits scale and shift by Gauss-Newton
on grey levels, coarse to fine, on the pixels outside both frames' person boxes (the pose boxes,
widened), with Huber weights so that anything else moving counts little, starting from the motion
so far. A motion is kept only where it is clearly measured: the background must have texture
(:data:`MIN_TEXTURE`), and the motion must explain it better than no motion by :data:`MIN_GAIN`
and move the frame by :data:`MIN_MOTION`; otherwise the frame has its key frame's camera exactly
(a still camera's noise, a plain wall or sky).

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
#: A measured motion counts only if it lowers the background's cost by this fraction of no
#: motion's cost ...
MIN_GAIN = 0.05
#: ... and moves some corner of the frame by this many working pixels (0.16 px of a 512² frame).
MIN_MOTION = 0.05
#: A background whose mean grey-level gradient (0-1 per working pixel) is below this has nothing
#: to measure: 1.3 grey levels of 8 bits per working pixel, 0.4 per pixel of a 512² frame, where a
#: pixel's move changes its grey level by less than the quantisation and the codec's noise (a plain
#: wall: 0.001-0.004 on the authors' case 3, where shading, shadows and hair swinging past the
#: person's box made up a 20 % zoom; their textured backgrounds 0.02-0.035, a photograph 0.05,
#: the synthetic world's 0.004-0.02, noise-free). Below it: no motion.
MIN_TEXTURE = 0.005
#: A frame overlapping its key frame on less than this fraction of its background is the next key.
KEY_OVERLAP = 0.6


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

    Each frame is registered against a key frame (frame 0 first), starting from the motion so far;
    a frame that overlaps the key frame on less than :data:`KEY_OVERLAP` of its background becomes
    the next key frame. Errors add up only from key frame to key frame (once per part of a long
    pan), not frame by frame. ``boxes`` (F, 4) are the person's boxes (x0, y0, x1, y1,
    normalised), excluded from the measurement; NaN boxes exclude nothing. Fewer frames than boxes
    stops the track early."""
    scales: list[float] = []
    shifts: list[np.ndarray] = []
    key: tuple[np.ndarray, np.ndarray, float, np.ndarray, bool] | None = None  # grey, kept, its camera, textured
    step = (1.0, np.zeros(2))  # the last frame-to-frame motion (frame pixels): the next guess
    for f, frame in enumerate(frames):
        if f >= len(boxes):
            break
        grey, k = _grey(frame)
        keep = _outside(boxes[f], grey.shape)
        if key is None:
            key = (grey, keep, 1.0, np.zeros(2), _textured(grey, keep))
            scales.append(1.0)
            shifts.append(np.zeros(2))
            continue
        key_grey, key_keep, key_scale, key_shift, key_textured = key
        # the guess: the previous frame's camera and the last motion, p_0 = scale p + shift
        guess_scale = scales[-1] * step[0]
        guess_shift = scales[-1] * step[1] + shifts[-1]
        # relative to the key frame, in working pixels: p_key = a p + t  (p_0 = key_scale k p_key + key_shift)
        a0, t0 = guess_scale / key_scale, (guess_shift - key_shift) / (key_scale * k)
        a, t, overlap = _register(grey, keep, key_grey, key_keep, a0, t0, key_textured)
        scale, shift = key_scale * a, key_scale * k * t + key_shift
        step = (scale / scales[-1], (shift - shifts[-1]) / scales[-1])  # frame f -> frame f-1
        scales.append(scale)
        shifts.append(shift)
        if overlap < KEY_OVERLAP:
            key = (grey, keep, scale, shift, _textured(grey, keep))
    return CameraTrack(np.array(scales), np.array(shifts).reshape(len(scales), 2))


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


def _textured(img: np.ndarray, keep: np.ndarray) -> bool:
    """Whether the kept background has enough texture to measure a motion (:data:`MIN_TEXTURE`)."""
    gy, gx = np.gradient(img)
    return bool(keep.any()) and float(np.hypot(gx, gy)[keep].mean()) >= MIN_TEXTURE


def _register(
    img: np.ndarray,
    keep: np.ndarray,
    ref: np.ndarray,
    ref_keep: np.ndarray,
    a0: float,
    t0: np.ndarray,
    textured: bool,
) -> tuple[float, np.ndarray, float]:
    """(a, t) such that ``ref(a p + t) ≈ img(p)`` on the kept pixels of both (working pixels,
    continuous coordinates), starting from (a0, t0), and the fraction of ``img``'s kept pixels
    that land on ``ref``'s kept pixels there. No motion unless the motion is clearly measured: the
    background must have texture (``textured``: :func:`_textured` of ``ref``, found once per key
    frame), and the motion must lower its cost by
    :data:`MIN_GAIN` of no motion's and move some pixel by :data:`MIN_MOTION` (a still camera's
    noise and compression measure exactly no motion)."""
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
    still = _cost(img, keep, ref, ref_keep, 1.0, np.zeros(2))
    h, w = img.shape  # ref has the same shape
    corners = np.array([[0.0, 0.0], [w, 0.0], [0.0, h], [w, h]])
    travel = float(np.abs((a - 1.0) * corners + t).max())  # the largest move of the frame's corners
    if not (textured and _cost(img, keep, ref, ref_keep, a, t) < (1.0 - MIN_GAIN) * still and travel >= MIN_MOTION):
        a, t = 1.0, np.zeros(2)
    ys, xs = np.nonzero(keep)
    px, py = a * (xs + 0.5) + t[0], a * (ys + 0.5) + t[1]  # the kept pixels' centres in ref (continuous)
    inside = (px >= 0) & (px < w) & (py >= 0) & (py < h)
    landed = np.zeros_like(inside)
    landed[inside] = ref_keep[py[inside].astype(np.int64), px[inside].astype(np.int64)]
    return a, t, float(landed.sum() / max(1, len(xs)))


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
