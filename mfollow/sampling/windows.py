"""Sliding windows for long videos (docs/method.md, §5): layout and per-frame blending weights.

Windows of ``window`` frames overlap by ``overlap`` frames; the last window is snapped to the end
of the video (so it may overlap its neighbour more), and a video no longer than one window is one
window of its own length: nothing is ever padded. Each window's predictions are blended with
per-frame weights that sum to one at every frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mfollow.sampling import BlendScheme


@dataclass(frozen=True)
class Window:
    start: int
    stop: int  # exclusive

    def __len__(self) -> int:
        return self.stop - self.start


def layout(frames: int, window: int = 24, overlap: int = 8) -> list[Window]:
    """Windows covering ``frames`` frames (see the module docstring)."""
    if frames < 1:
        raise ValueError("a video needs at least one frame")
    if window < 1 or not 0 <= overlap < window:
        raise ValueError(f"need window >= 1 and 0 <= overlap < window (got {window}, {overlap})")
    if frames <= window:
        return [Window(0, frames)]
    stride = window - overlap
    starts = list(range(0, frames - window + 1, stride))
    if starts[-1] + window < frames:
        starts.append(frames - window)  # snap the last window to the end
    return [Window(s, s + window) for s in starts]


def window_profile(length: int, scheme: BlendScheme = "tent", overlap: int = 8) -> np.ndarray:
    """Unnormalised weights (length,) inside one window: ``tent`` rises linearly to the centre and
    falls again, ``ramp`` rises over the first ``overlap`` frames and falls over the last, flat in
    between, ``mean`` is flat. All are strictly positive."""
    i = np.arange(length, dtype=np.float64)
    if scheme == "mean":
        return np.ones(length)
    if scheme == "tent":
        return np.minimum(i + 1, length - i)
    if scheme == "ramp":
        ramp = max(1, overlap)
        return np.minimum(np.minimum(i + 1, length - i) / (ramp + 1), 1.0)
    raise ValueError(f"unknown blend scheme {scheme!r}; choose tent, mean or ramp")


def blend_weights(
    windows: list[Window], frames: int, scheme: BlendScheme = "tent", overlap: int = 8
) -> list[np.ndarray]:
    """Per-window weights (len(window),), normalised so that at every frame the weights of the
    windows covering it sum to one."""
    raw = [window_profile(len(w), scheme, overlap) for w in windows]
    total = np.zeros(frames)
    for w, r in zip(windows, raw, strict=True):
        total[w.start : w.stop] += r
    if (total <= 0).any():
        missing = np.flatnonzero(total <= 0)
        raise ValueError(f"frames {missing.tolist()[:5]} are covered by no window")
    return [r / total[w.start : w.stop] for w, r in zip(windows, raw, strict=True)]
