"""One-Euro smoothing of keypoints."""

from __future__ import annotations

import numpy as np

from mfollow.preprocess.pose.smooth import one_euro


def test_constant_and_steady_motion_pass_through() -> None:
    still = np.full((20, 3, 2), 0.4)
    np.testing.assert_allclose(one_euro(still, np.ones((20, 3)), 25.0), still)
    ramp = np.linspace(0, 1, 30)[:, None, None] * np.ones((30, 1, 2))
    out = one_euro(ramp, np.ones((30, 1)), 30.0, beta=50.0)  # high beta: fast motion is followed
    assert np.abs(out[-1] - ramp[-1]).max() < 0.02


def test_jitter_is_reduced_and_invisible_points_are_untouched() -> None:
    rng = np.random.default_rng(0)
    noisy = 0.5 + rng.normal(0, 0.01, (200, 1, 2))
    score = np.ones((200, 1))
    out = one_euro(noisy, score, 30.0, min_cutoff=0.5, beta=0.0)
    assert out[50:].std() < noisy[50:].std() / 2
    score[100] = 0.0
    out2 = one_euro(noisy, score, 30.0)
    np.testing.assert_array_equal(out2[100], noisy[100])
