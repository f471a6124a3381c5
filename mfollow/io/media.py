"""The frames of a source, in whichever form the user gives it: a video file, a folder of frames
(``frame_0 … frame_23``, in natural order: :func:`mfollow.io.folders.frame_files`) or one still image.

Every stage that reads a source's pixels — the poses, M_r, SegDiT's M_e, the camera track, the
mask preview, the report — reads them through :func:`media_info` and :func:`media_frames`, and the
edit reads a folder's images through :func:`open_image` too (:func:`mfollow.edit.inputs.open_clip`),
so a folder is read one way everywhere. A folder or an image is timed at ``fps`` (frame ``i`` at
``i / fps`` seconds); the edit times it by the target video when there is one.

Nothing here imports torch; a video is probed and decoded by :mod:`mfollow.io.video` (PyAV).
"""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps

from mfollow.io.folders import IMAGE_SUFFIXES, frame_files
from mfollow.runtime.errors import MediaError

if TYPE_CHECKING:
    from mfollow.io.video import VideoInfo

IMAGE_FPS = Fraction(8)  # the timing of a folder of frames (the official release's cases: 8 fps)
_TRANSPOSED = (5, 6, 7, 8)  # EXIF orientations that swap width and height


def is_still(path: Path) -> bool:
    """``path`` is one image file (by its suffix)."""
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def is_images(path: Path) -> bool:
    """``path`` is a folder of frames or one still image, not a video."""
    return path.is_dir() or is_still(path)


def image_files(path: Path) -> list[Path]:
    """The frames of a folder in frame order, or ``[path]`` for a still image."""
    return [path] if is_still(path) else frame_files(path)


def open_image(path: Path, mode: str = "RGB") -> Image.Image:
    """One image, upright by its EXIF orientation (as a photo viewer shows it), in ``mode``.

    Raises:
        MediaError: not a readable image.
    """
    try:
        with Image.open(path) as im:
            return ImageOps.exif_transpose(im).convert(mode)
    except OSError as exc:
        raise MediaError(f"{path}: not a readable image") from exc


def _upright_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image as :func:`open_image` returns it, from its header alone."""
    try:
        with Image.open(path) as im:
            w, h = im.size
            return (h, w) if im.getexif().get(0x0112) in _TRANSPOSED else (w, h)
    except OSError as exc:
        raise MediaError(f"{path}: not a readable image") from exc


def media_info(path: Path, fps: Fraction = IMAGE_FPS) -> VideoInfo:
    """What :func:`mfollow.io.video.probe` reports, for a video, a folder of frames or an image.

    A folder's frames must share one size (a video has one); it reads only the images' headers.

    Raises:
        MediaError: missing, unreadable, not a video, an empty folder, or frames of two sizes.
    """
    from mfollow.io.video import VideoInfo, probe

    path = Path(path)
    if not is_images(path):
        return probe(path)
    files = image_files(path)
    w, h = _upright_size(files[0])
    for f in files[1:]:
        if (size := _upright_size(f)) != (w, h):
            raise MediaError(
                f"{f}: {size[0]}x{size[1]}, but {files[0].name} is {w}x{h}; the frames of a folder share one size"
            )
    n = len(files)
    return VideoInfo(
        path=path, codec="image", pix_fmt=None, width=w, height=h, rotation=0, frame_count=n,
        time_base=1 / fps, timestamps=tuple(range(n)), start_pts=0, average_fps=fps, duration=float(n / fps),
    )  # fmt: skip


def media_frames(path: Path, info: VideoInfo | None = None) -> Iterator[np.ndarray]:
    """Every frame of a video, a folder of frames or an image: upright (H, W, 3) uint8 RGB.

    ``info``: :func:`media_info` of ``path`` when the caller has it.
    """
    from mfollow.io.video import iter_frames

    path = Path(path)
    if not is_images(path):
        yield from iter_frames(path, info=info)
        return
    for f in image_files(path):
        yield np.asarray(open_image(f))
