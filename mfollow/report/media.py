"""The report's media: browser-playable H.264 videos (and PNG stills) of what a project holds.

Every video is written at a display size whose long side is at most ``max_side`` pixels (even
sides, H.264 yuv420p), at the source's timestamps, so it plays in any browser from disk.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

from mfollow.preprocess.pose.keypoints import PoseSequence
from mfollow.preprocess.pose.render import render_sequence
from mfollow.runtime.errors import MediaError

M_R_TINT = np.array([255, 64, 64], np.float32)  # M_r: red
M_E_TINT = np.array([64, 255, 64], np.float32)  # M_e: green


def display_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """(w, h) with the long side at most ``max_side``, aspect kept, both even."""
    scale = min(1.0, max_side / max(width, height))
    return max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)


def _resized(frames: Iterable[np.ndarray], size: tuple[int, int], resample: Image.Resampling) -> Iterator[np.ndarray]:
    for f in frames:
        yield np.asarray(Image.fromarray(f).resize(size, resample))


def video_frames(video: Path, size: tuple[int, int]) -> Iterator[np.ndarray]:
    """The frames of a video, a folder of frames or an image (:mod:`mfollow.io.media`) at ``size``."""
    from mfollow.io.media import media_frames

    return _resized(media_frames(video), size, Image.Resampling.BILINEAR)


def pose_frames(poses: PoseSequence, size: tuple[int, int]) -> Iterator[np.ndarray]:
    """Rendered OpenPose skeletons (standard colours) at ``size``."""
    return render_sequence(poses, size[0], size[1], colors="standard")


def over(frames: Iterable[np.ndarray], drawings: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    """Skeleton drawings (black background) over frames, the frames dimmed to half."""
    for f, d in zip(frames, drawings, strict=False):
        drawn = d.max(axis=2, keepdims=True) > 0
        yield np.where(drawn, d, f // 2).astype(np.uint8)


def masks_over(frames: Iterable[np.ndarray], m_r: Path, m_e: Path, size: tuple[int, int]) -> Iterator[np.ndarray]:
    """M_r filled with red and M_e outlined in green over the frames, so that each stays visible
    where they overlap; the mask folders are read a frame at a time, in frame order."""
    from mfollow.edit.inputs import mask_seq
    from mfollow.preprocess.masks.morphology import dilate, edge

    r_seq, e_seq = mask_seq(m_r, size), mask_seq(m_e, size)
    for i, f in enumerate(frames):
        if i >= min(len(r_seq), len(e_seq)):
            return
        r_, e_ = r_seq.get(i, i + 1)[0], e_seq.get(i, i + 1)[0]
        out = f.astype(np.float32)
        out[r_] = 0.5 * out[r_] + 0.5 * M_R_TINT
        out[dilate(edge(e_))] = M_E_TINT  # a 3-pixel outline
        yield out.astype(np.uint8)


def side_by_side(left: Iterable[np.ndarray], right: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    for a, b in zip(left, right, strict=False):
        yield np.concatenate([a, b], axis=1)


def write_clip(path: Path, frames: Iterable[np.ndarray], timestamps: list[int], time_base: Fraction) -> Path:
    """Frames as an H.264 mp4 at the given timing (as many frames as both have), streamed: memory
    does not grow with the video's length."""
    from mfollow.io.video import VideoWriter

    writer = None
    try:
        for frame, pts in zip(frames, timestamps, strict=False):
            if writer is None:
                writer = VideoWriter(path, frame.shape[1], frame.shape[0], time_base, audio="none")
            writer.write(frame, pts)
        if writer is None:
            raise MediaError(f"{path}: no frames to write")
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    writer.close()
    return path
