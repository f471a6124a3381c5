"""The Fréchet distance between two Gaussians fitted to feature sets (Heusel et al. 2017, Eq. 6;
Unterthiner et al. 2018 for videos):

    d^2 = ||mu_1 - mu_2||^2 + Tr(S_1 + S_2 - 2 (S_1 S_2)^(1/2))

computed as pytorch-fid does (``scipy.linalg.sqrtm`` of the product; on a singular product the
covariances are offset by eps * I; a numerically complex root must be real to 1e-3).
"""

from __future__ import annotations

import warnings
from types import ModuleType

import numpy as np

from mfollow.runtime.errors import UsageError


def _scipy_linalg() -> ModuleType:
    try:
        import scipy.linalg
    except ImportError as exc:
        raise UsageError("FID/FVD need scipy", hint="pip install 'mfollow[metrics]'") from exc
    return scipy.linalg


def gaussian(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, D) features -> (mean (D,), unbiased covariance (D, D)) in float64; N >= 2."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise UsageError(f"a Fréchet distance needs at least 2 feature vectors per set, got {f.shape[0]}")
    return f.mean(axis=0), np.cov(f, rowvar=False)


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6
) -> float:
    linalg = _scipy_linalg()
    mu1, mu2 = np.atleast_1d(mu1), np.atleast_1d(mu2)
    sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
    diff = mu1 - mu2
    with warnings.catch_warnings():  # a singular product is handled below, not reported
        warnings.simplefilter("ignore")
        covmean = linalg.sqrtm(sigma1 @ sigma2)
        if not np.isfinite(covmean).all():
            offset = np.eye(sigma1.shape[0]) * eps
            covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"imaginary component {np.max(np.abs(covmean.imag))} in the covariance root")
        covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def feature_distance(a: np.ndarray, b: np.ndarray) -> float:
    """The Fréchet distance between two (N, D) feature sets."""
    return frechet_distance(*gaussian(a), *gaussian(b))
