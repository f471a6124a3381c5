"""Temporal smoothing of keypoints with the One-Euro filter (Casiez, Roussel and Vogel, CHI 2012).

An exponential low-pass filter whose cut-off rises with the signal's speed: slow jitter is smoothed
strongly, fast motion follows with little lag. Per coordinate of every keypoint, over frames:

    alpha(fc) = 1 / (1 + fps / (2 pi fc))
    dx_hat_t  = alpha(d_cutoff) * fps * (x_t - x_hat_{t-1}) + (1 - alpha(d_cutoff)) * dx_hat_{t-1}
    fc_t      = min_cutoff + beta * |dx_hat_t|
    x_hat_t   = alpha(fc_t) * x_t + (1 - alpha(fc_t)) * x_hat_{t-1}

Coordinates are normalised, so ``beta`` is in units of 1 / (frame widths per second). Points below
the score threshold in a frame are left as they are and do not update the filter.
"""

from __future__ import annotations

import math

import numpy as np

from mfollow.preprocess.pose.keypoints import PoseSequence


def one_euro(
    x: np.ndarray,
    score: np.ndarray,
    fps: float,
    *,
    min_cutoff: float = 1.0,
    beta: float = 0.3,
    d_cutoff: float = 1.0,
    threshold: float = 0.3,
) -> np.ndarray:
    """Smooth (F, ..., 2) coordinates over the first axis; ``score`` is (F, ...)."""

    def alpha(cutoff: np.ndarray | float) -> np.ndarray | float:
        return 1.0 / (1.0 + fps / (2 * math.pi * cutoff))

    out = x.astype(np.float64).copy()
    x_hat = out[0].copy()
    dx_hat = np.zeros_like(x_hat)
    seen = score[0] > threshold
    for t in range(1, len(out)):
        ok = (score[t] > threshold) & seen  # update only where both frames see the point
        dx = (out[t] - x_hat) * fps
        dx_new = alpha(d_cutoff) * dx + (1 - alpha(d_cutoff)) * dx_hat
        cutoff = min_cutoff + beta * np.linalg.norm(dx_new, axis=-1, keepdims=True)
        a = alpha(cutoff)
        smoothed = a * out[t] + (1 - a) * x_hat
        m = ok[..., None]
        out[t] = np.where(m, smoothed, out[t])
        dx_hat = np.where(m, dx_new, 0.0)
        x_hat = out[t].copy()
        seen = score[t] > threshold
    return out


def smooth_poses(poses: PoseSequence, fps: float, **kwargs: float) -> PoseSequence:
    """Every keypoint group of ``poses`` through :func:`one_euro` (scores unchanged)."""

    def part(arr: np.ndarray) -> np.ndarray:
        out = arr.copy()
        out[..., :2] = one_euro(arr[..., :2], arr[..., 2], fps, **kwargs)
        return out

    return poses.map_points(part)
