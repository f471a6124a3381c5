"""Folders of per-frame files (frames, masks, pose images, OpenPose JSON): the one place that
lists them, in frame order.

Frame order is *natural* order: runs of digits compare as numbers, so ``frame_2`` comes before
``frame_10`` whether or not the names are zero-padded (the official release names its frames
``frame_0 ... frame_23``), and ``cam2_frame_1`` after ``cam1_frame_10``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from mfollow.runtime.errors import MediaError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
_RUNS = re.compile(r"(\d+)")


def natural_key(name: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key of a file name: digit runs as numbers, the rest as lower-case text."""
    parts = _RUNS.split(name)
    return tuple((1, int(p)) if i % 2 else (0, p.lower()) for i, p in enumerate(parts))


def frame_files(folder: Path, suffixes: Iterable[str] = IMAGE_SUFFIXES, what: str = "images") -> list[Path]:
    """The files of ``folder`` whose suffix is one of ``suffixes``, in frame (natural) order.

    Raises:
        MediaError: the folder does not exist, cannot be listed, or holds no such file.
    """
    wanted = tuple(s.lower() for s in suffixes)
    if not folder.is_dir():
        raise MediaError(f"{folder}: no such folder")
    try:
        files = [p for p in folder.iterdir() if p.suffix.lower() in wanted and p.is_file()]
    except OSError as exc:
        raise MediaError(f"{folder}: cannot list the folder ({exc.strerror or exc})") from exc
    if not files:
        raise MediaError(f"{folder}: holds no {what}")
    return sorted(files, key=lambda p: (natural_key(p.stem), p.name))
