"""The inputs of an edit, at the working size, read lazily by frame range (docs/method.md, §5: streamed).

A :class:`ClipSource` holds one lazily read sequence per input: source frames (video ranges by
seek, or image files), source and edit pose images (rendered from keypoint JSON, or read from
image folders) and masks (8-bit PNG folders); each already mapped to the output's N frames
(``--start`` offset, ``--fit`` policy). Memory therefore depends on the range asked for, not on
the video's length.

Length policy (``fit``): the output has the source's frames and timestamps; the edit poses and
masks are ``trim``-med to the shorter of the two, ``loop``-ed, or the last one ``hold``-ed. A still
image stands for every source frame over the target's length and timing; a folder of frames is
timed at ``image_fps``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
from PIL import Image

from mfollow.edit.settings import EditSettings, Fit
from mfollow.io.folders import frame_files
from mfollow.io.media import image_files, is_images, is_still, open_image
from mfollow.preprocess.pose.keypoints import PoseSequence
from mfollow.preprocess.pose.render import ColorOrder, render_sequence
from mfollow.runtime.errors import MediaError, UsageError

if TYPE_CHECKING:
    from mfollow.io.video import Geometry


@dataclass(frozen=True)
class EditInputs:
    source: Path
    source_poses: Path
    edit_poses: Path
    source_masks: Path
    edit_masks: Path
    target: Path | None = None  # the motion video: timing for a still-image source


def case_inputs(case: Path, target: Path | None = None) -> EditInputs:
    """The official case-folder layout as :class:`EditInputs`."""
    names = ("source_images", "source_poses", "target_aligned_poses", "source_masks", "predicted_masks")
    missing = [n for n in names if not (case / n).is_dir()]
    if missing:
        raise MediaError(f"{case}: not an official case folder (missing {', '.join(missing)})")
    return EditInputs(*(case / n for n in names), target=target)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ sequences
class Seq(Protocol):
    def __len__(self) -> int: ...

    def get(self, a: int, b: int) -> np.ndarray:
        """Items a..b-1 stacked along a new first axis."""
        ...


@dataclass
class VideoSeq:
    """Frames start..start+n-1 of a video at the working size, decoded on demand (seeking)."""

    path: Path
    start: int
    n: int
    policy: object
    info: object

    def __len__(self) -> int:
        return self.n

    def get(self, a: int, b: int) -> np.ndarray:
        from mfollow.io.video import read_frames

        return read_frames(self.path, self.start + a, self.start + b, self.policy, info=self.info)  # type: ignore[arg-type]


@dataclass
class FileSeq:
    """One item per file, loaded on demand."""

    files: list[Path]
    load: Callable[[Path], np.ndarray]

    def __len__(self) -> int:
        return len(self.files)

    def get(self, a: int, b: int) -> np.ndarray:
        return np.stack([self.load(p) for p in self.files[a:b]])


@dataclass
class PoseSeq:
    """Pose images rendered on demand from keypoints (already in working coordinates)."""

    poses: PoseSequence
    colors: ColorOrder

    def __len__(self) -> int:
        return len(self.poses)

    def get(self, a: int, b: int) -> np.ndarray:
        part = self.poses[a:b]
        return np.stack(list(render_sequence(part, part.width, part.height, colors=self.colors)))


@dataclass
class Mapped:
    """Another sequence seen through an index map (offsets, loops, held last frames)."""

    seq: Seq
    index: np.ndarray

    def __len__(self) -> int:
        return len(self.index)

    def get(self, a: int, b: int) -> np.ndarray:
        idx = self.index[a:b]
        lo, hi = int(idx.min()), int(idx.max()) + 1
        return self.seq.get(lo, hi)[idx - lo]


# --------------------------------------------------------------------------------- loaders
def _cover_crop(image: Image.Image, size: tuple[int, int]) -> np.ndarray:
    """Scale to cover ``size`` (w, h), crop the centre: the video frames' policy."""
    from mfollow.io.video import FramePolicy, place, working_geometry
    from mfollow.io.video.read import scale_rgb

    geo = working_geometry(image.width, image.height, FramePolicy(size=size, multiple=1))
    return place(scale_rgb(np.asarray(image), geo.scaled_w, geo.scaled_h), geo)


def pose_seq(path: Path, size: tuple[int, int], src_size: tuple[int, int], colors: ColorOrder) -> Seq:
    """Pose images at working size: keypoint JSON (mapped through the source's scale-and-crop and
    rendered on demand) or a folder of pose images (resized on demand)."""
    if path.is_dir():
        return FileSeq(
            frame_files(path), lambda p: np.asarray(open_image(p, "RGB").resize(size, Image.Resampling.BILINEAR))
        )
    if not path.is_file():
        raise MediaError(f"{path}: no such pose file or folder")
    from mfollow.io.video import FramePolicy, working_geometry

    poses = PoseSequence.load(path)
    geo = working_geometry(src_size[0], src_size[1], FramePolicy(size=size, multiple=1))
    sx, sy = geo.scaled_w / size[0], geo.scaled_h / size[1]  # normalised source -> normalised working
    ox, oy = geo.crop_x / size[0], geo.crop_y / size[1]

    def remap(a: np.ndarray) -> np.ndarray:
        out = a.copy()
        out[..., 0] = a[..., 0] * sx - ox
        out[..., 1] = a[..., 1] * sy - oy
        return out

    box = poses.box * np.array([sx, sy, sx, sy]) - np.array([ox, oy, ox, oy])  # (x0, y0, x1, y1) alike
    return PoseSeq(poses.map_points(remap, size[0], size[1], box), colors)


def pose_points(seq: Seq, a: int, b: int) -> PoseSequence | None:
    """The keypoints behind items ``a`` .. ``b`` of a pose sequence built by :func:`pose_seq`
    (seen through :class:`Mapped` index maps), in working coordinates; ``None`` where the poses
    are images (a folder of renders carries no keypoints)."""
    index = np.arange(a, b)
    while isinstance(seq, Mapped):
        index, seq = seq.index[index], seq.seq
    if not isinstance(seq, PoseSeq):
        return None
    poses = seq.poses
    return poses.map_points(lambda arr: arr[index], box=poses.box[index])


def mask_seq(path: Path, size: tuple[int, int]) -> Seq:
    if not path.is_dir():
        raise MediaError(f"{path}: no such mask folder")
    return FileSeq(
        frame_files(path), lambda p: np.asarray(open_image(p, "L").resize(size, Image.Resampling.NEAREST)) >= 128
    )


def fit_index(available: int, n: int, fit: Fit, what: str, path: Path, offset: int = 0) -> np.ndarray:
    """Indices into a sequence of ``available`` items for n output frames (after ``offset``)."""
    usable = available - offset
    if usable >= n:
        return offset + np.arange(n)
    if usable <= 0:
        raise MediaError(f"{path}: no {what} left after frame {offset}")
    if fit == "loop":
        return offset + np.arange(n) % usable
    if fit == "hold":
        return offset + np.minimum(np.arange(n), usable - 1)
    raise MediaError(f"{path}: {usable} {what} for {n} frames", hint="use --fit loop or --fit hold")


# ---------------------------------------------------------------------------------- clips
@dataclass
class ClipSource:
    n: int
    size: tuple[int, int]  # (width, height) of the working frames
    frames: Seq
    source_poses: Seq
    edit_poses: Seq
    source_masks: Seq
    edit_masks: Seq
    timestamps: list[int]
    time_base: Fraction
    original: Seq  # source frames at their own size (for writing at the source's size)
    geometry: Geometry  # from source to working frames
    audio_from: Path | None = None
    audio_window: tuple[float, float] | None = None
    source_frames: int = 0  # the source's frames in range, before ``fit`` trimmed them to ``n``


def open_clip(inputs: EditInputs, s: EditSettings) -> ClipSource:
    """Plan every input at the working size without reading more than their first items."""
    from mfollow.io.video import FramePolicy, probe, working_geometry

    src = inputs.source
    if not src.exists():
        raise MediaError(f"{src}: no such file or folder")
    policy = FramePolicy(short_side=s.short_side)
    offset, audio_from, audio_window = 0, None, None
    still = is_still(src)
    if is_images(src):
        files = image_files(src)
        first = open_image(files[0], "RGB")
        w0, h0 = first.width, first.height
        geo = working_geometry(w0, h0, policy)
        size = (geo.width, geo.height)
        frames: Seq = FileSeq(files, lambda p: _cover_crop(open_image(p, "RGB"), size))
        original: Seq = FileSeq(files, lambda p: np.asarray(open_image(p, "RGB")))
        timing = probe(inputs.target) if inputs.target is not None else None
        n_src = len(files)
        if still:  # the image stands for every frame of the target's length
            edit_poses = pose_seq(inputs.edit_poses, size, (w0, h0), s.colors)
            n_src = timing.frame_count if timing is not None else len(edit_poses)
            frames = Mapped(frames, np.zeros(n_src, dtype=np.int64))
            original = Mapped(original, np.zeros(n_src, dtype=np.int64))
        if timing is not None:
            if timing.frame_count < n_src:
                raise MediaError(f"{inputs.target}: {timing.frame_count} frames, fewer than the source's {n_src}")
            timestamps, time_base = list(timing.timestamps[:n_src]), timing.time_base
        else:
            timestamps, time_base = list(range(n_src)), 1 / s.image_fps
    else:
        info = probe(src)
        if s.start >= info.frame_count:
            raise UsageError(f"--start {s.start} is past the end of {src} ({info.frame_count} frames)")
        stop = info.frame_count if s.frames is None else min(info.frame_count, s.start + s.frames)
        n_src = stop - s.start
        w0, h0 = info.display_width, info.display_height
        geo = working_geometry(w0, h0, policy)
        size = (geo.width, geo.height)
        frames = VideoSeq(src, s.start, n_src, policy, info)
        original = VideoSeq(src, s.start, n_src, None, info)
        ts = info.timestamps[s.start : stop]
        timestamps, time_base = [t - ts[0] for t in ts], info.time_base
        audio_from = src
        end = float(info.timestamps[stop] * info.time_base) if stop < info.frame_count else info.duration
        audio_window = (float(ts[0] * info.time_base), end)
        offset = s.start  # source poses and masks describe the whole source video
    src_poses = pose_seq(inputs.source_poses, size, (w0, h0), s.colors)
    src_masks = mask_seq(inputs.source_masks, size)
    if not still:
        edit_poses = pose_seq(inputs.edit_poses, size, (w0, h0), s.colors)
    edit_masks = mask_seq(inputs.edit_masks, size)
    n = min(n_src, len(edit_poses), len(edit_masks)) if s.fit == "trim" else n_src
    if s.max_frames is not None and n > s.max_frames:
        raise UsageError(
            f"{src}: {n} frames is more than one window ({s.max_frames})",
            hint="use 'mfollow long', or pick a range with --start/--frames",
        )
    single = len(src_poses) == 1 and len(src_masks) == 1  # a still image's one pose and mask
    src_fit: Fit = "hold" if single else "trim"
    src_off = 0 if single else offset
    clip = ClipSource(
        n=n,
        size=size,
        frames=Mapped(frames, np.arange(n)),
        source_poses=Mapped(
            src_poses, fit_index(len(src_poses), n, src_fit, "source poses", inputs.source_poses, src_off)
        ),
        edit_poses=Mapped(edit_poses, fit_index(len(edit_poses), n, s.fit, "edit poses", inputs.edit_poses)),
        source_masks=Mapped(
            src_masks, fit_index(len(src_masks), n, src_fit, "source masks", inputs.source_masks, src_off)
        ),
        edit_masks=Mapped(edit_masks, fit_index(len(edit_masks), n, s.fit, "edit masks", inputs.edit_masks)),
        timestamps=timestamps[:n],
        time_base=time_base,
        audio_from=audio_from,
        audio_window=audio_window,
        original=Mapped(original, np.arange(n)),
        geometry=geo,
        source_frames=n_src,
    )
    expect = (size[1], size[0])
    for name in ("source_poses", "edit_poses", "source_masks", "edit_masks"):
        got = getattr(clip, name).get(0, 1).shape[1:3]
        if got != expect:
            raise MediaError(f"{name.replace('_', ' ')}: size {got[::-1]} differs from the frames' {expect[::-1]}")
    return clip
