"""The source camera's track on a real photograph filmed by a known camera: a still camera gives
exactly no motion; pans and zooms are followed without drift (errors do not add up frame by frame)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from mfollow.preprocess.pose.camera_track import CameraTrack, estimate_track
from mfollow.preprocess.raster import bilinear

SIZE, FRAMES = 256, 24


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    data = pytest.importorskip("skimage.data")
    return data.astronaut().astype(np.float32)  # 512 x 512 RGB, shipped inside scikit-image


def filmed(photo: np.ndarray, moves: list[tuple[float, float, float]], seed: int = 0) -> list[np.ndarray]:
    """Frames of a camera over the photograph: frame f's pixel p shows the photograph's point
    ``128 + dx + (p - c) / z + c`` (c the frame's centre), with sensor noise (2 grey levels) and
    JPEG compression of its own in every frame, as real footage has."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64) + 0.5  # pixel centres
    c = SIZE / 2
    frames = []
    for dx, dy, z in moves:
        px, py = 128 + dx + (xs - c) / z + c, 128 + dy + (ys - c) / z + c
        rgb = bilinear(photo, py - 0.5, px - 0.5) + rng.normal(0.0, 2.0, (SIZE, SIZE, 3))
        buf = io.BytesIO()
        Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=85)
        frames.append(np.asarray(Image.open(buf)))
    return frames


def true_track(moves: list[tuple[float, float, float]]) -> CameraTrack:
    """Frame f's pixel p and frame 0's pixel q show the same point when
    q = c + z_0 ((p - c) / z_f + d_f - d_0): p_0 = a p + shift with a = z_0 / z_f."""
    d = np.array([m[:2] for m in moves])
    z = np.array([m[2] for m in moves])
    a = z[0] / z
    c = SIZE / 2
    return CameraTrack(a, c * (1 - a)[:, None] + z[0] * (d - d[0]))


def worst(track: CameraTrack, truth: CameraTrack) -> np.ndarray:
    """(F,) the largest distance (px) between where the two tracks send the frame's corners."""
    pts = np.array([[0.0, 0.0], [SIZE, 0.0], [0.0, SIZE], [SIZE, SIZE]])[None].repeat(len(truth), 0)
    return np.abs(track.to_reference(pts) - truth.to_reference(pts)).max(axis=(1, 2))


def test_a_still_camera_on_real_footage_measures_exactly_no_motion(photo: np.ndarray) -> None:
    track = estimate_track(filmed(photo, [(0.0, 0.0, 1.0)] * FRAMES), np.full((FRAMES, 4), np.nan))
    assert (track.scale == 1.0).all() and (track.shift == 0.0).all()


@pytest.mark.parametrize(
    "moves",
    [
        [(1.7 * f, 0.4 * f, 1.0) for f in range(FRAMES)],  # a slow pan: 41 px in all
        [(4.0 * f, -1.0 * f, 1.0) for f in range(FRAMES)],  # a fast one: 95 px, past a key frame
        [(0.0, 0.0, 1.0 + 0.004 * f) for f in range(FRAMES)],  # a zoom in, 9 %
    ],
    ids=["slow-pan", "fast-pan", "zoom"],
)
def test_a_moving_camera_is_followed_without_drift(photo: np.ndarray, moves: list) -> None:
    track = estimate_track(filmed(photo, moves), np.full((FRAMES, 4), np.nan))
    error = worst(track, true_track(moves))
    assert error[0] == 0.0 and error.max() < 0.2, error.round(3)  # chained frame to frame: 0.5-0.8 px by frame 23
