"""Probing a video file: frames, per-frame timestamps, rate, size, rotation, audio streams."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from mfollow.runtime.errors import MediaError


# --------------------------------------------------------------------------------------- probe
@dataclass(frozen=True)
class AudioStreamInfo:
    """One audio stream of a media file."""

    index: int  # stream index inside the container
    codec: str
    sample_rate: int
    channels: int
    duration: float | None  # seconds, when the container says


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe` reports about a video file.

    ``width``/``height`` are the stored (coded) size; ``display_width``/``display_height`` are the
    size after the rotation metadata is applied, which is the size of the frames mfollow decodes.
    """

    path: Path
    codec: str
    pix_fmt: str | None
    width: int
    height: int
    rotation: int  # degrees counter-clockwise to display upright: 0, 90, 180 or 270
    frame_count: int
    time_base: Fraction  # seconds per timestamp unit
    timestamps: tuple[int, ...]  # per-frame pts in presentation order, first frame = 0
    start_pts: int  # the first frame's pts before normalisation
    average_fps: Fraction  # frame_count / duration, as a fraction
    duration: float  # seconds, from the first frame to the end of the last
    audio: tuple[AudioStreamInfo, ...] = field(default=())

    @property
    def display_width(self) -> int:
        return self.height if self.rotation in (90, 270) else self.width

    @property
    def display_height(self) -> int:
        return self.width if self.rotation in (90, 270) else self.height

    @property
    def constant_rate(self) -> bool:
        """True when every frame-to-frame timestamp step is the same (within one tick)."""
        steps = np.diff(np.asarray(self.timestamps, dtype=np.int64))
        return len(steps) == 0 or int(steps.max() - steps.min()) <= 1

    @property
    def times(self) -> list[float]:
        """Per-frame presentation times in seconds."""
        return [float(t * self.time_base) for t in self.timestamps]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (fractions as ``"num/den"`` strings plus float companions)."""
        return {
            "path": str(self.path),
            "codec": self.codec,
            "pix_fmt": self.pix_fmt,
            "width": self.width,
            "height": self.height,
            "display_width": self.display_width,
            "display_height": self.display_height,
            "rotation": self.rotation,
            "frame_count": self.frame_count,
            "time_base": str(self.time_base),
            "average_fps": str(self.average_fps),
            "average_fps_float": float(self.average_fps),
            "constant_rate": self.constant_rate,
            "duration": self.duration,
            "start_pts": self.start_pts,
            "timestamps": list(self.timestamps),
            "audio": [asdict(a) for a in self.audio],
        }


def _open_input(path: Path | str) -> av.container.InputContainer:
    """Open ``path`` for reading, turning every failure into a one-line :class:`MediaError`."""
    path = Path(path)
    if not path.exists():
        raise MediaError(f"{path}: no such file")
    if path.is_dir():
        raise MediaError(f"{path}: is a directory, expected a video file")
    if not os.access(path, os.R_OK):
        raise MediaError(f"{path}: permission denied")
    if path.stat().st_size == 0:
        raise MediaError(f"{path}: is empty (0 bytes)")
    try:
        return av.open(str(path), mode="r")
    except av.error.FFmpegError as exc:
        raise MediaError(f"{path}: not a video file ({_ffmpeg_reason(exc)})") from exc
    except OSError as exc:
        raise MediaError(f"{path}: cannot open ({exc.strerror or exc})") from exc


def _ffmpeg_reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return text.splitlines()[0] if text else type(exc).__name__


def _video_stream(container: av.container.InputContainer, path: Path) -> av.video.stream.VideoStream:
    if not container.streams.video:
        if not container.streams:
            raise MediaError(f"{path}: holds no streams (a zero-length video?)")
        if container.streams.audio:
            raise MediaError(f"{path}: has no video stream (audio only)")
        raise MediaError(f"{path}: not a video file (no video stream; FFmpeg reads it as {container.format.name!r})")
    return container.streams.video[0]


def _normalise_rotation(degrees: float) -> int:
    """Display-matrix rotation (counter-clockwise, -180..180) → one of 0, 90, 180, 270."""
    return round(degrees / 90.0) % 4 * 90


def _packet_timestamps(container: av.container.InputContainer, stream: Any) -> list[int]:
    """Presentation timestamps of the video packets, sorted; empty if any packet lacks one."""
    pts: list[int] = []
    for packet in container.demux(stream):
        if packet.size == 0:  # the demuxer's final flush packet
            continue
        if getattr(packet, "is_discard", False):  # dropped by an edit list, never displayed
            continue
        if packet.pts is None:
            return []
        pts.append(int(packet.pts))
    return sorted(pts)


def _decoded_timestamps(container: av.container.InputContainer, stream: Any) -> list[int]:
    """Fallback for streams whose packets carry no pts: decode the rest and use the frames' own
    (a frame without one is placed one tick after its predecessor)."""
    pts: list[int] = []
    for frame in container.decode(stream):
        pts.append(int(frame.pts) if frame.pts is not None else (pts[-1] + 1 if pts else 1))
    return pts


def probe(path: Path | str) -> VideoInfo:
    """Describe the video at ``path`` (first video stream) and its audio streams.

    Raises:
        MediaError: missing file, a directory, not a media file, no video stream, no frames.
    """
    path = Path(path)
    with _open_input(path) as container:
        stream = _video_stream(container, path)
        codec = stream.codec_context.name
        time_base = Fraction(stream.time_base) if stream.time_base else Fraction(1, 90000)
        nominal_rate = stream.average_rate or stream.guessed_rate
        audio = tuple(
            AudioStreamInfo(
                index=a.index,
                codec=a.codec_context.name,
                sample_rate=int(a.codec_context.sample_rate or 0),
                channels=int(a.codec_context.channels or 0),
                duration=float(a.duration * a.time_base) if a.duration and a.time_base else None,
            )
            for a in container.streams.audio
        )
        try:
            raw = _packet_timestamps(container, stream)
        except av.error.FFmpegError as exc:
            raise MediaError(f"{path}: cannot read video packets ({_ffmpeg_reason(exc)})") from exc
    # A second pass decodes the first frame for its true size, pixel format and rotation, and
    # (rarely) decodes everything when the packets carry no timestamps.
    with _open_input(path) as container:
        stream = _video_stream(container, path)
        try:
            first = next(container.decode(stream), None)
            if first is None:
                raise MediaError(f"{path}: has no video frames")
            rotation = _normalise_rotation(first.rotation)
            width, height, pix_fmt = first.width, first.height, first.format.name
            if not raw:
                raw = [int(first.pts or 0), *_decoded_timestamps(container, stream)]
        except av.error.FFmpegError as exc:
            raise MediaError(f"{path}: cannot decode video ({_ffmpeg_reason(exc)})") from exc
    if not raw:
        raise MediaError(f"{path}: has no video frames")
    start = raw[0]
    timestamps = tuple(t - start for t in raw)
    # The last frame lasts as long as the step before it (one nominal frame for a single frame).
    last_step = timestamps[-1] - timestamps[-2] if len(timestamps) > 1 else 0
    if last_step <= 0:
        rate = nominal_rate or Fraction(25)
        last_step = max(1, round(1 / (Fraction(rate) * time_base)))
    end = timestamps[-1] + last_step
    duration_frac = end * time_base
    average_fps = Fraction(len(timestamps)) / duration_frac
    return VideoInfo(
        path=path,
        codec=codec,
        pix_fmt=pix_fmt,
        width=width,
        height=height,
        rotation=rotation,
        frame_count=len(timestamps),
        time_base=time_base,
        timestamps=timestamps,
        start_pts=start,
        average_fps=average_fps.limit_denominator(1_000_000),
        duration=float(duration_frac),
        audio=audio,
    )
