"""Motion accuracy in the synthetic world: where an edit drew a person, against where the
ground-truth edit has one.

The world renders each frame's clean background plate (:meth:`PuppetVideo.plate`), so the person
an edited video shows is exactly the set of pixels that differ from the plate: its *silhouette*.
Its IoU with the true M_e (the ground-truth edit's mask) measures whether the person is in the
target's pose and place, whatever their colours: a blurred but well-placed person scores high,
a crisp person in the source's pose scores low.

A pixel differs when its largest channel difference from the plate exceeds
:data:`SILHOUETTE_THRESHOLD` (0-255); the videos are H.264 files, so the background is never
bit-exact, and the difference mask is then opened and closed with the 3x3 cross (isolated coding
noise out, one-pixel holes where a colour matches the background filled). Threshold and clean-up
were chosen on the ground-truth edit videos (docs/benchmarks.md), whose silhouette IoU (about
0.9) is the ceiling the measure can reach.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from mfollow.preprocess.masks.fallbacks import iou
from mfollow.preprocess.masks.morphology import dilate, erode
from mfollow.synth.world import Pair

#: Largest per-channel difference (0-255) from the plate still counted as background.
SILHOUETTE_THRESHOLD = 24


def silhouette(frame: np.ndarray, plate: np.ndarray, threshold: int = SILHOUETTE_THRESHOLD) -> np.ndarray:
    """(H, W) bool: the pixels of ``frame`` (H, W, 3) uint8 that differ from ``plate`` by more than
    ``threshold`` in some channel, opened then closed with the 3x3 cross."""
    diff = np.abs(frame.astype(np.int16) - plate.astype(np.int16)).max(axis=-1)  # (H, W, 3) -> (H, W)
    return _close(_open(diff > threshold))


def _open(m: np.ndarray) -> np.ndarray:
    return dilate(erode(m))


def _close(m: np.ndarray) -> np.ndarray:
    return erode(dilate(m))


def silhouette_iou(frames: Iterable[np.ndarray], pair: Pair, threshold: int = SILHOUETTE_THRESHOLD) -> float:
    """IoU, over the whole stack of frames, of the silhouettes of ``frames`` (the edited video's,
    frame f of the pair's edit at index f) against the ground-truth edit's masks (the true M_e)."""
    found, truth = [], []
    for f, frame in enumerate(frames):
        if f >= pair.frames:
            break
        found.append(silhouette(frame, pair.edit.plate(f), threshold))
        truth.append(pair.edit.render(f).mask)
    if not found:
        raise ValueError("no frames to measure")
    return iou(np.stack(found), np.stack(truth))


def video_silhouette_iou(video: Path, pair: Pair, threshold: int = SILHOUETTE_THRESHOLD) -> float:
    """:func:`silhouette_iou` of a video file's frames."""
    from mfollow.io.video import iter_frames

    return silhouette_iou(iter_frames(video), pair, threshold)
