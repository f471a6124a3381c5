"""Mask folders: one 8-bit PNG per frame, 0 outside the person and 255 inside (the official
MotionFollower format), named ``frame_00000.png`` ... so that name order is frame order."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from mfollow.io.folders import frame_files
from mfollow.runtime.errors import MediaError


def mask_name(index: int) -> str:
    return f"frame_{index:05d}.png"


def write_mask(path: Path, mask: np.ndarray) -> None:
    """Save an (H, W) bool mask as an 8-bit 0/255 PNG."""
    Image.fromarray(mask.astype(np.uint8) * 255).save(path)


def read_masks(folder: Path, frames: int | None = None) -> np.ndarray:
    """Load a folder of mask images (in frame order, :func:`mfollow.io.folders.frame_files`) as an
    (F, H, W) bool array (>= 128 is in).

    Raises:
        MediaError: the folder is missing or empty, a file is not an image, sizes differ, or the
            count differs from ``frames``.
    """
    if not folder.is_dir():
        raise MediaError(f"{folder}: no such mask folder")
    files = frame_files(folder, what="mask images")
    if frames is not None and len(files) != frames:
        raise MediaError(f"{folder}: {len(files)} masks for {frames} frames")
    out = []
    for p in files:
        try:
            with Image.open(p) as im:
                out.append(np.asarray(im.convert("L")) >= 128)
        except OSError as exc:
            raise MediaError(f"{p}: not a readable mask image") from exc
        if out[-1].shape != out[0].shape:
            raise MediaError(f"{p}: size {out[-1].shape[::-1]} differs from {out[0].shape[::-1]}")
    return np.stack(out)
