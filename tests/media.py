"""Synthetic media for tests, made with PyAV in temporary folders (no binary fixtures in git)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def smooth_frame(i: int, width: int, height: int) -> np.ndarray:
    """A frame that survives H.264 well: gradients plus a moving bright square. (H, W, 3) uint8."""
    y, x = np.mgrid[0:height, 0:width]
    frame = np.stack(
        [(x * 255 // max(width - 1, 1)), (y * 255 // max(height - 1, 1)), np.full_like(x, (i * 37) % 256)], axis=-1
    ).astype(np.uint8)
    s = max(2, min(width, height) // 4)
    x0 = (i * 3) % max(1, width - s)
    frame[:s, x0 : x0 + s] = 255
    return frame


def make_video(
    path: Path,
    *,
    n: int = 12,
    width: int = 64,
    height: int = 48,
    timestamps: list[int] | None = None,
    time_base: Fraction = Fraction(1, 25),
    audio: str | None = None,
    sample_rate: int = 44100,
    rotation: int = 0,
    gop: int | None = None,
    frames: list[np.ndarray] | None = None,
) -> Path:
    """Encode a small H.264 video (container chosen by ``path``'s suffix), with optional audio
    (``aac``, ``pcm_s16le``, ``libopus``, ...) as long as the video, and optional rotation."""
    ts = timestamps if timestamps is not None else list(range(n))
    frames = frames if frames is not None else [smooth_frame(i, width, height) for i in range(len(ts))]
    # keep our time base in mp4 (the muxer would otherwise pick a timescale >= 10000)
    options = {"video_track_timescale": str(time_base.denominator)} if path.suffix == ".mp4" else {}
    out = av.open(str(path), "w", container_options=options)
    rate = Fraction(len(ts) - 1, 1) / ((ts[-1] - ts[0]) * time_base) if len(ts) > 1 else Fraction(25)
    vs = out.add_stream("libx264", rate=rate.limit_denominator(1000))
    vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
    vs.time_base = time_base
    vs.codec_context.time_base = time_base
    if gop:
        vs.options = {"g": str(gop), "keyint_min": str(gop), "sc_threshold": "0"}
    if rotation:
        vs.set_display_rotation(rotation)
    astream = out.add_stream(audio, rate=sample_rate, layout="stereo") if audio else None
    for frame, pts in zip(frames, ts, strict=True):
        vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
        vf.pts, vf.time_base = pts, time_base
        for packet in vs.encode(vf):
            out.mux(packet)
    for packet in vs.encode():
        out.mux(packet)
    if astream is not None:
        duration = float((ts[-1] - ts[0]) * time_base) + float(time_base * (ts[1] - ts[0] if len(ts) > 1 else 1))
        _encode_tone(out, astream, duration, sample_rate)
    out.close()
    return path


def _encode_tone(
    out: av.container.OutputContainer, stream: av.audio.stream.AudioStream, seconds: float, rate: int
) -> None:
    total = round(seconds * rate)
    t = np.arange(total) / rate
    tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    fmt = stream.codec_context.format.name
    step = stream.codec_context.frame_size or 1024
    for k in range(0, total, step):
        chunk = tone[k : k + step]
        # planar formats are (channels, samples); packed ones are (1, samples * channels)
        arr = np.stack([chunk, chunk]) if fmt.endswith("p") else np.repeat(chunk, 2)[None]
        if fmt.startswith("s16"):
            arr = (arr * 32767).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(arr), format=fmt, layout="stereo")
        frame.sample_rate, frame.pts = rate, k
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode():
        out.mux(packet)


def make_audio_only(path: Path, seconds: float = 0.5) -> Path:
    out = av.open(str(path), "w")
    stream = out.add_stream("aac", rate=44100, layout="stereo")
    _encode_tone(out, stream, seconds, 44100)
    out.close()
    return path


def make_empty_video(path: Path) -> Path:
    """An mp4 with a video stream and no frames."""
    out = av.open(str(path), "w")
    vs = out.add_stream("libx264", rate=25)
    vs.width, vs.height, vs.pix_fmt = 64, 48, "yuv420p"
    out.start_encoding()  # write the header although no frame follows
    out.close()
    return path
