"""A folder of PNG frames as an edit's output (``-o NAME`` without a suffix): lossless frames for
compositing tools and node graphs (ComfyUI), where an H.264 file would lose detail a second time.

The folder appears complete or not at all: frames are written into a hidden staging folder next
to it, which replaces the output when the last frame is written. An existing output folder is
replaced only when it holds nothing but frames named as this writer names them (a previous
output); anything else in it is refused by :func:`check_frame_folder` before any work.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from mfollow.io.atomic import CommitOnExit, partial_path
from mfollow.runtime.errors import MediaError, UsageError

FRAME_NAME = "{:05d}.png"  # 00000.png, 00001.png, ...
_FRAME_RE = re.compile(r"\d{5,}\.png")


def is_frame_folder(path: Path) -> bool:
    """An output named without a suffix is a folder of PNG frames (``out.mp4`` is a video)."""
    return path.suffix == ""


def check_frame_folder(path: Path, label: str = "--output") -> None:
    """``path`` may become a frame folder: missing, empty, or a previous output (frames only).

    Raises:
        MediaError: a file is there (exit 4).
        UsageError: a folder with other files, which the output would replace (exit 2).
    """
    if path.exists() and not path.is_dir():
        raise MediaError(f"{label} {path}: is a file; a frame-folder output needs a folder name")
    if path.is_dir():
        others = sorted(p.name for p in path.iterdir() if not (_FRAME_RE.fullmatch(p.name) and p.is_file()))
        if others:
            raise UsageError(
                f"{label} {path}: the folder holds {others[0]!r} and is not a previous output; "
                "choose a new or empty folder",
            )


class FrameFolderWriter(CommitOnExit):
    """Write (H, W, 3) uint8 RGB frames as ``00000.png`` ... into ``path``, atomically (see the
    module docstring); the same interface as :class:`mfollow.io.video.VideoWriter` (timestamps
    and audio have no place in a folder of frames and are not kept)."""

    def __init__(self, path: Path | str, width: int, height: int, **_: Any) -> None:
        self.path = Path(path)
        self.size = (width, height)
        self.frames_written = 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._staging = partial_path(self.path)
            self._staging.mkdir()
        except OSError as exc:
            raise MediaError(f"{self.path}: cannot write here ({exc.strerror or exc})") from exc

    def write(self, frame: np.ndarray, pts: int = 0) -> None:
        """Write the next (H, W, 3) uint8 RGB frame (``pts`` is not kept)."""
        from PIL import Image

        if frame.shape != (self.size[1], self.size[0], 3) or frame.dtype != np.uint8:
            raise MediaError(
                f"{self.path}: frame of shape {frame.shape} {frame.dtype}, expected "
                f"({self.size[1]}, {self.size[0]}, 3) uint8"
            )
        try:
            Image.fromarray(frame).save(self._staging / FRAME_NAME.format(self.frames_written), compress_level=4)
        except OSError as exc:
            self.abort()
            raise MediaError(f"{self.path}: writing a frame failed ({exc.strerror or exc})") from exc
        self.frames_written += 1

    def close(self) -> None:
        """Move the finished folder into place (a previous output there is replaced)."""
        if self.frames_written == 0:
            self.abort()
            raise MediaError(f"{self.path}: no frames to write")
        old = self.path.parent / f".{self.path.name}.old-{secrets.token_hex(4)}"
        try:
            check_frame_folder(self.path)  # nothing but a previous output is ever replaced
        except (MediaError, UsageError):
            self.abort()
            raise
        try:
            if self.path.exists():
                self.path.rename(old)
            self._staging.rename(self.path)
        except OSError as exc:
            self.abort()
            raise MediaError(f"{self.path}: cannot move the finished frames into place ({exc})") from exc
        shutil.rmtree(old, ignore_errors=True)

    def abort(self) -> None:
        """Discard the frames written so far; ``path`` keeps its previous content."""
        with contextlib.suppress(OSError):
            shutil.rmtree(self._staging)
