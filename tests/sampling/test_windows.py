"""Long-video window layout and blending weights."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from mfollow.sampling.windows import Window, blend_weights, layout, window_profile


@pytest.mark.parametrize("frames", [1, 5, 24, 25, 40, 48, 100, 600])
@pytest.mark.parametrize(("window", "overlap"), [(24, 8), (16, 4), (8, 0), (5, 4)])
@pytest.mark.parametrize("scheme", ["tent", "mean", "ramp"])
def test_windows_cover_every_frame_and_weights_sum_to_one(frames: int, window: int, overlap: int, scheme: str) -> None:
    wins = layout(frames, window, overlap)
    assert wins[0].start == 0 and wins[-1].stop == frames  # the last window is snapped to the end
    assert all(len(w) == min(window, frames) for w in wins)  # nothing is padded
    assert all(b.start - a.start <= window - overlap for a, b in itertools.pairwise(wins))
    weights = blend_weights(wins, frames, scheme, overlap)  # type: ignore[arg-type]
    total = np.zeros(frames)
    for w, wt in zip(wins, weights, strict=True):
        assert wt.shape == (len(w),) and (wt > 0).all()
        total[w.start : w.stop] += wt
    np.testing.assert_allclose(total, 1.0, rtol=0, atol=1e-12)


def test_known_layouts() -> None:
    assert layout(600)[:3] == [Window(0, 24), Window(16, 40), Window(32, 56)]
    assert layout(600)[-1] == Window(576, 600) and len(layout(600)) == 37
    assert layout(40) == [Window(0, 24), Window(16, 40)]
    assert layout(30) == [Window(0, 24), Window(6, 30)]
    assert layout(10) == [Window(0, 10)]


def test_profiles() -> None:
    np.testing.assert_array_equal(window_profile(5, "tent"), [1, 2, 3, 2, 1])
    np.testing.assert_array_equal(window_profile(4, "mean"), [1, 1, 1, 1])
    np.testing.assert_allclose(window_profile(8, "ramp", overlap=2), [1 / 3, 2 / 3, 1, 1, 1, 1, 2 / 3, 1 / 3])


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        layout(0)
    with pytest.raises(ValueError):
        layout(10, 8, 8)
    with pytest.raises(ValueError, match="unknown blend scheme"):
        window_profile(4, "cosine")  # type: ignore[arg-type]
