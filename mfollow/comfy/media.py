"""ComfyUI's tensors and mfollow's files: IMAGE (B, H, W, 3) floats in [0, 1] and MASK (B, H, W)
or (H, W) floats, as ComfyUI defines them, to and from frame and mask folders that the library's
one edit path reads. Folders are named by their content's hash, so the same frames are written
once and every stage and edit that reads them is a cache hit on a rerun."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from mfollow.runtime.errors import UsageError


def frames_of(images: Any, what: str = "images") -> np.ndarray:
    """A ComfyUI IMAGE (B, H, W, C) float tensor in [0, 1] (C = 3, or 4 with alpha, dropped) ->
    (B, H, W, 3) uint8 frames (rounded: IMAGEs decoded from 8-bit media come back exactly)."""
    x = np.asarray(images.detach().cpu().float() if hasattr(images, "detach") else images, dtype=np.float32)
    if x.ndim == 3 and x.shape[-1] in (3, 4):  # one (H, W, C) image -> (1, H, W, C)
        x = x[None]
    if x.ndim != 4 or x.shape[-1] not in (3, 4) or 0 in x.shape:
        raise UsageError(f"{what}: an IMAGE (B, H, W, 3) is needed, got shape {tuple(x.shape)}")
    return np.rint(np.clip(x[..., :3], 0.0, 1.0) * 255).astype(np.uint8)


def masks_of(mask: Any, frames: int, what: str) -> np.ndarray:
    """A ComfyUI MASK (B, H, W) or (H, W), >= 0.5 inside -> (frames, H, W) bool. One mask stands
    for every frame; otherwise B must be ``frames``."""
    x = np.asarray(mask.detach().cpu().float() if hasattr(mask, "detach") else mask, dtype=np.float32)
    if x.ndim == 2:  # (H, W) -> (1, H, W)
        x = x[None]
    if x.ndim != 3 or 0 in x.shape:
        raise UsageError(f"{what}: a MASK (B, H, W) or (H, W) is needed, got shape {tuple(x.shape)}")
    if len(x) == 1 and frames > 1:  # one mask for every frame: (1, H, W) -> (frames, H, W)
        x = np.repeat(x, frames, axis=0)
    if len(x) != frames:
        raise UsageError(f"{what}: {len(x)} masks for {frames} frames")
    return x >= 0.5


def image_tensor(frames: np.ndarray) -> Any:
    """(B, H, W, 3) uint8 -> a ComfyUI IMAGE: float32 torch tensor in [0, 1]."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(frames)).float() / 255.0


def mask_tensor(masks: np.ndarray) -> Any:
    """(B, H, W) bool -> a ComfyUI MASK: float32 torch tensor of 0 and 1."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(masks)).float()


def content_key(*parts: Any) -> str:
    """A short hash of arrays (shape, dtype and bytes), files (their bytes) and other values (repr)."""
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, np.ndarray):
            h.update(f"{p.shape}{p.dtype}".encode())
            h.update(np.ascontiguousarray(p).tobytes())
        elif isinstance(p, Path) and p.is_file():
            h.update(p.read_bytes())
        else:
            h.update(repr(p).encode())
        h.update(b"|")
    return h.hexdigest()[:20]


def store_frames(frames: np.ndarray, root: Path) -> Path:
    """(F, H, W, 3) uint8 frames as a folder of PNGs under ``root/frames`` (written once, atomically)."""
    from mfollow.io.frame_folder import FrameFolderWriter

    folder = root / "frames" / content_key(frames)
    if not folder.is_dir():
        with FrameFolderWriter(folder, frames.shape[2], frames.shape[1]) as writer:
            for frame in frames:
                writer.write(frame)
    return folder


def store_masks(masks: np.ndarray, root: Path) -> Path:
    """(F, H, W) bool masks as a folder of 8-bit PNGs under ``root/masks`` (written once, atomically)."""
    from mfollow.io.atomic import atomic_dir
    from mfollow.preprocess.masks.files import mask_name, write_mask

    folder = root / "masks" / content_key(masks)
    if not folder.is_dir():
        with atomic_dir(folder) as staging:
            for i, m in enumerate(masks):
                write_mask(staging / mask_name(i), m)
    return folder
