"""Decoding frames: upright RGB arrays by index range, optionally mapped to a working size."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import av
import numpy as np

from mfollow.io.video.probe import VideoInfo, _ffmpeg_reason, _open_input, _video_stream, probe
from mfollow.runtime.errors import MediaError

FitMode = Literal["crop", "pad", "stretch"]


# ------------------------------------------------------------------------------ working size
@dataclass(frozen=True)
class FramePolicy:
    """How decoded frames map to the model's working size.

    The working size is a multiple of ``multiple`` on both sides. With ``size`` unset, the short
    side becomes ``short_side`` and the long side keeps the aspect ratio, rounded to the nearest
    multiple. ``fit`` says how the frame reaches that size: ``crop`` scales it to cover the size and
    crops the centre, ``pad`` scales it to fit inside and pads with black, ``stretch`` resizes both
    sides independently (at most half a multiple of aspect change).
    """

    short_side: int = 512
    multiple: int = 64
    fit: FitMode = "crop"
    size: tuple[int, int] | None = None  # explicit (width, height); overrides short_side

    def __post_init__(self) -> None:
        if self.multiple < 1:
            raise ValueError("multiple must be >= 1")
        if self.size is None and self.short_side < self.multiple:
            raise ValueError(f"short_side must be >= multiple ({self.multiple})")
        if self.size is not None and any(s <= 0 or s % self.multiple for s in self.size):
            raise ValueError(f"size {self.size} must be positive multiples of {self.multiple}")
        if self.fit not in ("crop", "pad", "stretch"):
            raise ValueError(f"unknown fit {self.fit!r}")


@dataclass(frozen=True)
class Geometry:
    """Where a source frame of (src_w, src_h) lands in the working frame of (width, height).

    The frame is resized to (scaled_w, scaled_h), then the window starting at (crop_x, crop_y) of
    size (width, height) is taken; negative crop offsets mean padding on that side.
    """

    src_w: int
    src_h: int
    scaled_w: int
    scaled_h: int
    crop_x: int
    crop_y: int
    width: int
    height: int


def working_geometry(src_w: int, src_h: int, policy: FramePolicy) -> Geometry:
    """Compute the :class:`Geometry` that ``policy`` gives for an upright (src_w, src_h) frame."""
    m = policy.multiple
    if policy.size is not None:
        width, height = policy.size
    else:
        scale = policy.short_side / min(src_w, src_h)
        # Round the long side to the nearest multiple (at least one multiple).
        width = max(m, round(src_w * scale / m) * m)
        height = max(m, round(src_h * scale / m) * m)
    if policy.fit == "stretch":
        return Geometry(src_w, src_h, width, height, 0, 0, width, height)
    pick = max if policy.fit == "crop" else min
    scale = pick(width / src_w, height / src_h)
    scaled_w = max(1, round(src_w * scale))
    scaled_h = max(1, round(src_h * scale))
    if policy.fit == "crop":  # never leave a gap from rounding
        scaled_w, scaled_h = max(scaled_w, width), max(scaled_h, height)
    else:
        scaled_w, scaled_h = min(scaled_w, width), min(scaled_h, height)
    return Geometry(src_w, src_h, scaled_w, scaled_h, (scaled_w - width) // 2, (scaled_h - height) // 2, width, height)


def scale_rgb(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (height, width, 3) with swscale's area filter: the one resize of source
    frames to the working size, whether they come from a video, a folder of frames or a still
    (so the same pixels give the same edit whatever file held them)."""
    if rgb.shape[:2] == (height, width):
        return rgb
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
    return np.array(frame.reformat(width=width, height=height, interpolation="AREA").to_ndarray(), copy=True)


def place(scaled: np.ndarray, geo: Geometry) -> np.ndarray:
    """Crop or pad a (scaled_h, scaled_w, 3) array to the working (height, width, 3)."""
    if geo.crop_x >= 0 and geo.crop_y >= 0:
        return np.ascontiguousarray(scaled[geo.crop_y : geo.crop_y + geo.height, geo.crop_x : geo.crop_x + geo.width])
    out = np.zeros((geo.height, geo.width, 3), dtype=np.uint8)
    y0, x0 = -geo.crop_y, -geo.crop_x
    out[y0 : y0 + geo.scaled_h, x0 : x0 + geo.scaled_w] = scaled
    return out


# --------------------------------------------------------------------------------------- read
def iter_frames(
    path: Path | str,
    start: int = 0,
    stop: int | None = None,
    policy: FramePolicy | None = None,
    info: VideoInfo | None = None,
) -> Iterator[np.ndarray]:
    """Decode frames ``start`` (inclusive) to ``stop`` (exclusive) in presentation order.

    Args:
        path: the video file.
        start, stop: frame indices; ``stop=None`` reads to the end.
        policy: map frames to a working size; ``None`` keeps the (upright) native size.
        info: ``probe(path)`` when the caller already has it (saves reading the file twice).

    Yields:
        (H, W, 3) uint8 RGB arrays, rotated upright according to the display matrix.

    Raises:
        MediaError: unreadable file, or a range outside the video.
    """
    path = Path(path)
    info = info or probe(path)
    stop = info.frame_count if stop is None else stop
    if not 0 <= start <= stop <= info.frame_count:
        raise MediaError(f"{path}: frame range {start}..{stop} is outside the video's {info.frame_count} frames")
    if start == stop:
        return
    wanted = [info.start_pts + t for t in info.timestamps[start:stop]]
    k = info.rotation // 90  # quarter turns counter-clockwise (np.rot90's convention)
    geo = None
    if policy is not None:
        geo = working_geometry(info.display_width, info.display_height, policy)
    with _open_input(path) as container:
        stream = _video_stream(container, path)
        stream.thread_type = "AUTO"
        try:
            yield from _decode_range(container, stream, wanted, start > 0, k, geo)
        except av.error.FFmpegError as exc:
            raise MediaError(f"{path}: cannot decode video ({_ffmpeg_reason(exc)})") from exc


def _decode_range(
    container: Any, stream: Any, wanted: list[int], seek: bool, k: int, geo: Geometry | None
) -> Iterator[np.ndarray]:
    """Decode the frames whose pts are ``wanted`` (sorted), seeking to the keyframe before the
    first when ``seek`` is set; fall back to decoding from the start if the seek overshoots."""
    first, last = wanted[0], wanted[-1]
    if seek:
        container.seek(first, stream=stream, backward=True, any_frame=False)
    frames = container.decode(stream)
    if seek:
        head = next(frames, None)
        if head is None or head.pts is None or head.pts > first:
            container.seek(0, stream=stream, backward=True, any_frame=False)
            frames = container.decode(stream)
        else:
            frames = itertools.chain([head], frames)
    remaining = len(wanted)
    for frame in frames:
        pts = frame.pts
        if pts is None or pts < first:
            continue
        if pts > last:
            break
        yield _convert(frame, k, geo)
        remaining -= 1
        if remaining == 0:
            break
    if remaining:
        raise MediaError(f"{container.name}: decoded {len(wanted) - remaining} of {len(wanted)} frames")


def _convert(frame: Any, k: int, geo: Geometry | None) -> np.ndarray:
    """Decoded frame → upright (H, W, 3) uint8, resized and cropped/padded per ``geo``."""
    # to_ndarray returns a view of a buffer that PyAV's reformatter reuses for the next frame:
    # copy, or earlier frames change under the caller's feet (seen as flaky decodes).
    rgb = np.array(frame.to_ndarray(format="rgb24"), copy=True)
    if k:
        rgb = np.ascontiguousarray(np.rot90(rgb, k))  # upright
    if geo is None:
        return rgb
    # RGB first, then the resize every source frame gets (a folder of frames or a still as well)
    return place(scale_rgb(rgb, geo.scaled_w, geo.scaled_h), geo)


def read_frames(
    path: Path | str,
    start: int = 0,
    stop: int | None = None,
    policy: FramePolicy | None = None,
    info: VideoInfo | None = None,
) -> np.ndarray:
    """All frames of :func:`iter_frames` stacked into one (F, H, W, 3) uint8 array."""
    frames = list(iter_frames(path, start, stop, policy, info))
    if not frames:
        raise MediaError(f"{path}: the frame range {start}..{stop} is empty")
    return np.stack(frames)


def restore_frame(edited: np.ndarray, original: np.ndarray, geo: Geometry) -> np.ndarray:
    """Put a working-size frame back at the source's size: the inverse of the working geometry.

    ``edited`` (height, width, 3) is resized onto the window of ``original`` (src_h, src_w, 3) that the
    working frame shows; pixels outside that window (the parts ``crop`` cut away) stay exactly the
    original's. For ``pad`` the padding is dropped; for ``stretch`` the window is the whole frame.
    """
    from PIL import Image

    scale_x, scale_y = geo.scaled_w / geo.src_w, geo.scaled_h / geo.src_h
    if geo.crop_x < 0 or geo.crop_y < 0:  # padded: the scaled picture sits inside the working frame
        y0, x0 = max(0, -geo.crop_y), max(0, -geo.crop_x)
        region = edited[y0 : y0 + geo.scaled_h, x0 : x0 + geo.scaled_w]
        return np.asarray(Image.fromarray(region).resize((geo.src_w, geo.src_h), Image.Resampling.BICUBIC))
    # the working window in source pixels
    x0, y0 = round(geo.crop_x / scale_x), round(geo.crop_y / scale_y)
    x1, y1 = round((geo.crop_x + geo.width) / scale_x), round((geo.crop_y + geo.height) / scale_y)
    x1, y1 = min(geo.src_w, max(x1, x0 + 1)), min(geo.src_h, max(y1, y0 + 1))
    out = original.copy()
    out[y0:y1, x0:x1] = np.asarray(Image.fromarray(edited).resize((x1 - x0, y1 - y0), Image.Resampling.BICUBIC))
    return out
