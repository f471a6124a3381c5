"""Carrying a source file's audio into an output: copy AAC/MP3/Opus, transcode anything else."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import av

from mfollow.io.video.probe import _open_input

#: Audio codecs copied into mp4 unchanged; anything else is transcoded to AAC.
COPY_AUDIO_CODECS = frozenset({"aac", "mp3", "opus"})
AudioMode = Literal["copy", "aac", "none"]


@dataclass
class _AudioPlan:
    """The output audio stream, created before the first video packet (the mp4 header is written
    then and streams cannot be added later), and how to fill it when the video is done."""

    source: Path
    copy: bool
    stream: Any
    window: tuple[float, float] | None


def _plan_audio(out: Any, source: Path, mode: AudioMode, window: tuple[float, float] | None) -> _AudioPlan | None:
    with _open_input(source) as src:
        if not src.streams.audio:
            return None
        a_in = src.streams.audio[0]
        if mode == "copy" and a_in.codec_context.name in COPY_AUDIO_CODECS:
            return _AudioPlan(source, True, out.add_stream_from_template(a_in), window)
        rate = a_in.codec_context.sample_rate or 48000
        rate = rate if rate in _AAC_RATES else 48000
        layout = "mono" if (a_in.codec_context.channels or 2) == 1 else "stereo"
        return _AudioPlan(source, False, out.add_stream("aac", rate=rate, layout=layout), window)


def _fill_audio(out: Any, plan: _AudioPlan) -> None:
    """Carry the first audio stream of ``plan.source`` into ``plan.stream`` of ``out``, keeping
    the part in ``plan.window`` (seconds from the source's first video frame)."""
    with _open_input(plan.source) as src:
        a_in = src.streams.audio[0]
        video_start = 0.0
        if src.streams.video and src.streams.video[0].start_time is not None:
            v = src.streams.video[0]
            video_start = float(v.start_time * v.time_base)
        lo = video_start + (plan.window[0] if plan.window else 0.0)
        hi = video_start + plan.window[1] if plan.window else math.inf
        if plan.copy:
            _copy_audio(out, src, a_in, plan.stream, lo, hi)
        else:
            _transcode_audio(out, src, a_in, plan.stream, lo, hi)


def _copy_audio(out: Any, src: Any, a_in: Any, a_out: Any, lo: float, hi: float) -> None:
    """Remux the packets that sound in [lo, hi) seconds, shifted so ``lo`` becomes 0, with the
    packet before them as pre-roll.

    AAC decodes each frame by overlap-adding it with the previous one, so the first frame the
    listener hears needs the frame before it: the source's own priming packet (negative pts) at
    the start of a file, the previous packet inside it. Kept with a negative pts, the pre-roll
    makes the mp4 muxer write an edit list, and decoders drop those samples: the output decodes to
    the source's samples from ``lo`` on, sample for sample.
    """
    tb = a_in.time_base
    offset = round(lo / tb)
    previous = None
    started = False
    for packet in src.demux(a_in):
        if packet.size == 0 or packet.pts is None:
            continue
        start = float(packet.pts * tb)
        end = float((packet.pts + (packet.duration or 0)) * tb)
        if start >= hi:
            break
        if not started:
            if end <= lo + 1e-9:  # before the window: the last one of these is the pre-roll
                previous = packet
                continue
            started = True
            if previous is not None:
                _mux_shifted(out, previous, a_out, offset)
        _mux_shifted(out, packet, a_out, offset)


def _mux_shifted(out: Any, packet: Any, a_out: Any, offset: int) -> None:
    packet.pts -= offset
    if packet.dts is not None:
        packet.dts -= offset
    packet.stream = a_out
    out.mux(packet)


def _transcode_audio(out: Any, src: Any, a_in: Any, a_out: Any, lo: float, hi: float) -> None:
    """Decode, trim to [lo, hi) seconds, resample and encode as AAC."""
    layout = a_out.codec_context.layout.name
    resampler = av.AudioResampler(format="fltp", layout=layout, rate=a_out.codec_context.sample_rate)
    next_pts = 0

    def encode(frames: list[Any]) -> None:
        nonlocal next_pts
        for rf in frames:
            rf.pts = next_pts  # count samples from 0 in the output
            next_pts += rf.samples
            for packet in a_out.encode(rf):
                out.mux(packet)

    for frame in src.decode(a_in):
        if frame.pts is None:
            continue
        t = float(frame.pts * frame.time_base)
        if t < lo - 1e-9 or t >= hi:
            continue
        frame.pts = None
        encode(resampler.resample(frame))
    encode(resampler.resample(None))
    for packet in a_out.encode(None):
        out.mux(packet)


_AAC_RATES = frozenset({8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000})
