"""Video I/O through PyAV: probe, read, write. The only package that imports ``av`` (docs/video.md).

- :func:`probe` reports what a file holds without decoding every frame: frame count and
  per-frame presentation timestamps (from the demuxed packets), time base, average fps, duration,
  size, rotation (display matrix) and the audio streams.
- :func:`iter_frames` / :func:`read_frames` decode frames as upright RGB ``uint8`` arrays of shape
  (H, W, 3), optionally by index range and mapped to a working size (:class:`FramePolicy`).
- :class:`VideoWriter` / :func:`write_video` encode H.264 yuv420p mp4 with the given per-frame
  timestamps (constant and variable frame rate preserved exactly), copy or transcode the audio of a
  source file, and write under a temporary name that is renamed only when the file is complete.

Timestamps are integers in units of ``time_base`` and are normalised so that the first frame is 0.
"""

from mfollow.io.video.probe import AudioStreamInfo, VideoInfo, probe
from mfollow.io.video.read import FitMode, FramePolicy, Geometry, iter_frames, place, read_frames, working_geometry
from mfollow.io.video.write import AudioMode, VideoWriter, even_size, rgb_to_yuv420p, write_video

__all__ = [
    "AudioMode", "AudioStreamInfo", "FitMode", "FramePolicy", "Geometry", "VideoInfo", "VideoWriter",
    "even_size", "iter_frames", "place", "probe", "read_frames", "rgb_to_yuv420p", "working_geometry", "write_video",
]  # fmt: skip
