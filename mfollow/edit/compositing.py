"""Background compositing: the edit's people over the source's own pixels.

Everything the model outputs passes through the VAE (the bundled one reconstructs its frames at
26 dB) at the working size (a 512-px frame stands for a source that may be much larger), so even a
perfectly preserved background comes back softened. Outside the two people — the source person
M_r, whose place must be re-synthesised, and the edited person M_e — the ground truth of a motion
edit *is* the source frame. Compositing keeps the model's output on M_e ∪ M_r and in a thin band
around it, and the source's exact pixels (at the source's full resolution) everywhere else:

    alpha = 1 on M_e ∪ M_r, falling linearly to 0 at ``margin`` pixels (chessboard distance) outside;
    out   = alpha * edit + (1 - alpha) * source.

The band hides the seam where the edit's background meets the source's. What stays the source's
is everything the masks do not cover: a person's shadow or reflection outside M_r stays in place
(``--no-composite`` regenerates the whole frame, as the paper does).
"""

from __future__ import annotations

import numpy as np
import torch

from mfollow.preprocess.masks.morphology import edge


def person_alpha(M_e: np.ndarray, M_r: np.ndarray, margin: int) -> np.ndarray:
    """(N, H, W) boolean masks -> (N, H, W) float32 alpha: 1 on M_e ∪ M_r, (margin + 1 - d) /
    (margin + 1) at chessboard distance d <= margin outside it, 0 beyond.

    The ramp is the mean of the union dilated by 0, 1, ..., margin pixels (3x3 max-pools)."""
    if M_e.shape != M_r.shape or M_e.ndim != 3:
        raise ValueError(f"masks of shapes {M_e.shape} and {M_r.shape}: need equal (N, H, W)")
    if margin < 0:
        raise ValueError(f"margin {margin} < 0")
    union = torch.from_numpy(np.logical_or(M_e, M_r).astype(np.float32))[:, None]  # (N, H, W) -> (N, 1, H, W)
    total = union.clone()
    grown = union
    for _ in range(margin):
        grown = torch.nn.functional.max_pool2d(grown, 3, stride=1, padding=1)
        total += grown
    return (total / (margin + 1))[:, 0].numpy()  # (N, 1, H, W) -> (N, H, W)


def composite(edit: np.ndarray, source: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """alpha * edit + (1 - alpha) * source for (..., H, W, 3) uint8 frames and a (..., H, W) alpha
    in [0, 1] (float, or uint8 with 255 = 1); rounds to uint8."""
    if edit.shape != source.shape or alpha.shape != edit.shape[:-1]:
        raise ValueError(f"edit {edit.shape}, source {source.shape}, alpha {alpha.shape}: sizes differ")
    a = alpha.astype(np.float32)[..., None]  # (..., H, W) -> (..., H, W, 1)
    if alpha.dtype == np.uint8:
        a /= 255.0
    out = a * edit.astype(np.float32) + (1.0 - a) * source.astype(np.float32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def feathered_alpha(mask: np.ndarray) -> np.ndarray:
    """(..., H, W) bool -> float32 alpha of a cut-out pasted with a soft edge: 1 inside ``mask``,
    1/2 on its edge (its pixels with a neighbour outside it, :func:`mfollow.preprocess.masks.morphology.edge`),
    0 outside. A pixel on a cut-out's edge is partly the object and partly what lay behind it."""

    return np.where(edge(mask), np.float32(0.5), mask.astype(np.float32))


def default_margin(short_side: int) -> int:
    """The band's width at a working short side: 1/64 of it (2 px at 128, 8 px at 512)."""
    return max(1, round(short_side / 64))
