"""L1 / PSNR / SSIM and their masked variants."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mfollow.metrics import frames as M


def test_identical_frames_are_perfect() -> None:
    x = np.random.default_rng(1).integers(0, 256, (32, 40, 3), dtype=np.uint8)
    mask = np.zeros((32, 40), bool)
    mask[8:20, 5:30] = True
    out = M.frame_metrics(x, x, mask)
    for suffix in ("", "_fg", "_bg"):
        assert out[f"l1{suffix}"] == 0 and out[f"psnr{suffix}"] == math.inf
        assert out[f"ssim{suffix}"] == pytest.approx(1.0, abs=1e-12)


def test_psnr_of_known_noise_matches_the_formula() -> None:
    rng = np.random.default_rng(0)
    sigma = 8.0  # in 0..255 units; the reference sits mid-range so nothing clips
    ref = np.full((256, 256, 3), 128, np.uint8)
    noisy = np.clip(np.rint(128 + rng.normal(0, sigma, ref.shape)), 0, 255).astype(np.uint8)
    expected = 10 * math.log10(255**2 / (sigma**2 + 1 / 12))  # rounding adds 1/12 of variance
    assert M.frame_metrics(noisy, ref)["psnr"] == pytest.approx(expected, abs=0.1)


def test_ssim_matches_scikit_image_gaussian_variant() -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (48, 40, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-30, 31, a.shape), 0, 255).astype(np.uint8)
    # skimage 0.26.0: structural_similarity(a/255, b/255, gaussian_weights=True, sigma=1.5,
    # use_sample_covariance=False, data_range=1.0, channel_axis=-1)
    assert M.frame_metrics(a, b)["ssim"] == pytest.approx(0.9730144080728081, abs=1e-12)


def test_masked_metrics_ignore_pixels_outside_the_mask() -> None:
    rng = np.random.default_rng(2)
    ref = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
    res = np.clip(ref.astype(int) + rng.integers(-20, 21, ref.shape), 0, 255).astype(np.uint8)
    mask = np.zeros((40, 48), bool)
    mask[10:30, 12:40] = True
    base = M.frame_metrics(res, ref, mask)
    changed_res, changed_ref = res.copy(), ref.copy()
    changed_res[~mask] = rng.integers(0, 256, changed_res[~mask].shape)
    changed_ref[~mask] = 0
    moved = M.frame_metrics(changed_res, changed_ref, mask)
    for key in ("l1_fg", "psnr_fg", "ssim_fg"):
        assert moved[key] == pytest.approx(base[key], abs=1e-12), key
    assert moved["l1_bg"] != base["l1_bg"]
    # and the background scores ignore the foreground in the same way
    fg_changed = res.copy()
    fg_changed[mask] = 255 - fg_changed[mask]
    again = M.frame_metrics(fg_changed, ref, mask)
    for key in ("l1_bg", "psnr_bg", "ssim_bg"):
        assert again[key] == pytest.approx(base[key], abs=1e-12), key


def test_known_l1_and_psnr_values_and_empty_regions() -> None:
    ref = np.zeros((16, 16, 3), np.uint8)
    res = np.full((16, 16, 3), 51, np.uint8)  # 0.2 everywhere
    out = M.frame_metrics(res, ref, np.zeros((16, 16), bool))
    assert out["l1"] == pytest.approx(0.2) and out["psnr"] == pytest.approx(10 * math.log10(1 / 0.04))
    assert math.isnan(out["l1_fg"]) and math.isnan(out["ssim_fg"]) and out["l1_bg"] == pytest.approx(0.2)
    tiny = M.frame_metrics(res[:8, :8], ref[:8, :8])
    assert math.isnan(tiny["ssim"]) and tiny["l1"] == pytest.approx(0.2)


def test_evaluate_summarises_per_frame_rows() -> None:
    ref = [np.full((16, 16, 3), v, np.uint8) for v in (0, 10, 20)]
    res = [ref[0], ref[1] + 5, ref[2] + 10]
    masks = [np.zeros((16, 16), bool), np.ones((16, 16), bool), np.ones((16, 16), bool)]
    report = M.evaluate(res, ref, masks)
    assert [r["frame"] for r in report.rows] == [0, 1, 2]
    assert report.summary["psnr"] == math.inf  # frame 0 is identical
    assert report.summary["frames_fg"] == 2 and report.summary["l1_fg"] == pytest.approx((5 + 10) / 2 / 255)
    with pytest.raises(ValueError):
        M.evaluate(res, ref[:2])
