"""Image-quality metrics between a result and a reference video: L1, PSNR, SSIM, and the same
restricted to a mask (foreground) or its complement (background). Pure numpy, offline.

Conventions (frames are (H, W, 3) uint8 RGB, converted to float64 in [0, 1]):

- **L1**: mean absolute difference over the region's pixels and the 3 channels.
- **PSNR**: 10 log10(1 / MSE), MSE over the region's pixels and channels; ``inf`` when equal.
- **SSIM**: Wang et al. (2004) with an 11x11 Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03,
  data range 1, computed per RGB channel over the *valid* window positions (no padding: the map is
  (H - 10, W - 10)) and averaged over channels and positions (equal to scikit-image's
  ``structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False)``).
  The masked variant computes each window's means, variances and covariance from the mask's pixels
  only (Gaussian weights renormalised over the mask) and averages over the window centres inside
  the mask, so pixels outside the mask have no influence at all.

A region with no pixels gives NaN for that frame, and summaries average only the frames where the
region exists (``frames_fg`` / ``frames_bg`` count them).

The learned metrics (LPIPS, FID, FVD) live in :mod:`mfollow.metrics.learned` and join a report through
:func:`evaluate`'s ``learned`` scorer.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np

SSIM_VARIANT = "gaussian-11x11-sigma1.5, K1=0.01, K2=0.03, RGB in [0,1], valid window, mean over channels"
WINDOW, SIGMA, K1, K2 = 11, 1.5, 0.01, 0.03
REGIONS = ("", "_fg", "_bg")
NAMES = ("l1", "psnr", "ssim")


def _gaussian() -> np.ndarray:
    x = np.arange(WINDOW) - (WINDOW - 1) / 2
    g = np.exp(-(x**2) / (2 * SIGMA**2))
    return g / g.sum()


_G = _gaussian()


def _blur(img: np.ndarray) -> np.ndarray:
    """Separable Gaussian filtering with valid positions only: (H, W, C) -> (H-10, W-10, C)."""
    h, w = img.shape[:2]
    rows = sum(_G[k] * img[k : h - WINDOW + 1 + k] for k in range(WINDOW))
    return sum(_G[k] * rows[:, k : w - WINDOW + 1 + k] for k in range(WINDOW))


def ssim_map(x: np.ndarray, y: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Per-position SSIM (H-10, W-10), averaged over channels, of float images in [0, 1].

    With a (H, W) bool ``mask`` the local statistics use only the mask's pixels; positions whose
    window holds none of them are NaN.
    """
    c1, c2 = K1**2, K2**2
    if mask is None:
        mx, my = _blur(x), _blur(y)
        exx, eyy, exy = _blur(x * x), _blur(y * y), _blur(x * y)
    else:
        m = mask.astype(np.float64)[..., None]  # (H, W, 1): weights broadcast over channels
        with np.errstate(invalid="ignore", divide="ignore"):
            norm = 1.0 / _blur(m)  # (H-10, W-10, 1); inf where the window misses the mask
            mx, my = _blur(m * x) * norm, _blur(m * y) * norm
            exx, eyy, exy = _blur(m * x * x) * norm, _blur(m * y * y) * norm, _blur(m * x * y) * norm
    sxx, syy, sxy = exx - mx * mx, eyy - my * my, exy - mx * my
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return s.mean(axis=-1)


def psnr_from_mse(mse: float) -> float:
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def _to_float(frame: np.ndarray) -> np.ndarray:
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) uint8 frame, got {frame.shape} {frame.dtype}")
    return frame.astype(np.float64) / 255.0


def frame_metrics(result: np.ndarray, reference: np.ndarray, mask: np.ndarray | None = None) -> dict[str, float]:
    """Metrics of one frame pair; with a (H, W) bool ``mask`` also ``*_fg`` (inside) and
    ``*_bg`` (outside). Frames smaller than the 11x11 SSIM window get SSIM NaN."""
    if result.shape != reference.shape:
        raise ValueError(f"frame shapes differ: {result.shape} vs {reference.shape}")
    x, y = _to_float(result), _to_float(reference)
    diff = x - y
    small = min(x.shape[:2]) < WINDOW
    smap = None if small else ssim_map(x, y)
    regions: dict[str, np.ndarray | None] = {"": None}
    if mask is not None:
        if mask.shape != x.shape[:2]:
            raise ValueError(f"mask shape {mask.shape} differs from frame {x.shape[:2]}")
        regions.update({"_fg": mask.astype(bool), "_bg": ~mask.astype(bool)})
    out: dict[str, float] = {}
    half = WINDOW // 2
    for suffix, region in regions.items():
        d = diff if region is None else diff[region]
        if d.size == 0:
            out.update({f"{n}{suffix}": math.nan for n in NAMES})
            continue
        out[f"l1{suffix}"] = float(np.abs(d).mean())
        out[f"psnr{suffix}"] = psnr_from_mse(float((d * d).mean()))
        if smap is None:
            out[f"ssim{suffix}"] = math.nan
        elif region is None:
            out[f"ssim{suffix}"] = float(smap.mean())
        else:
            inner = ssim_map(x, y, region)[region[half:-half, half:-half]]  # window centres in the region
            out[f"ssim{suffix}"] = float(inner.mean()) if inner.size else math.nan
    return out


@dataclass(frozen=True)
class Report:
    """Per-frame rows (each a dict of metrics plus ``frame``) and their summary."""

    rows: list[dict[str, float]]
    summary: dict[str, float]


def summarise(rows: list[dict[str, float]]) -> dict[str, float]:
    """Mean of each metric over the frames where it is defined (NaN-free); PSNR means are of the
    per-frame PSNRs (``inf`` if any frame is identical in that region). ``frames_fg`` /
    ``frames_bg`` count the frames where the region exists."""
    summary: dict[str, float] = {"frames": float(len(rows))}
    keys = [k for k in (rows[0] if rows else {}) if k != "frame"]
    for key in keys:
        values = [r[key] for r in rows if not math.isnan(r[key])]
        summary[key] = float(np.mean(values)) if values else math.nan
    for suffix in REGIONS[1:]:
        if f"l1{suffix}" in keys:
            summary[f"frames{suffix}"] = float(sum(not math.isnan(r[f"l1{suffix}"]) for r in rows))
    return summary


def evaluate(
    results: Iterable[np.ndarray],
    references: Iterable[np.ndarray],
    masks: Iterable[np.ndarray] | None = None,
    *,
    callback: Callable[[int], None] | None = None,
    learned: FrameScorer | None = None,
) -> Report:
    """Stream frame pairs (and optional masks) through :func:`frame_metrics` (and ``learned``'s
    per-frame metrics; its video-level ones join the summary); the iterables must have equal
    lengths."""
    mask_iter: Iterator[np.ndarray | None] = iter(masks) if masks is not None else _nones()
    rows = []
    for i, (res, ref) in enumerate(zip(results, references, strict=True)):
        row = {"frame": float(i), **frame_metrics(res, ref, next(mask_iter))}
        if learned is not None:
            row.update(learned.add(res, ref))
        rows.append(row)
        if callback is not None:
            callback(i + 1)
    summary = summarise(rows)
    if learned is not None:
        summary.update(learned.finish())
    return Report(rows, summary)


class FrameScorer(Protocol):
    """Extra metrics fed frame pair by frame pair (:class:`mfollow.metrics.learned.scorer.LearnedScorer`)."""

    def add(self, result: np.ndarray, reference: np.ndarray) -> dict[str, float]: ...

    def finish(self) -> dict[str, float]: ...


def _nones() -> Iterator[None]:
    while True:
        yield None
