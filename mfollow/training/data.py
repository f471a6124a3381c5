"""Training data: videos with per-frame pose renders and person masks as uint8 arrays (in
memory, or memory-mapped from a synthetic data cache), and batch sampling keyed by (seed, step,
rank) so that a run resumed from a checkpoint draws exactly the batches an uninterrupted run draws.

Two sources give the same :class:`Item` arrays:

- :func:`synth_items` renders puppet pairs of the synthetic world (:class:`mfollow.synth.PuppetPairs`):
  each item holds the source clip *and* the ground-truth edit of the same puppet, scene and camera
  (the target's motion), so an item is one clip of one puppet seen under two motions;
- :func:`folder_items` reads a folder of prepared videos (layout in ``docs/training.md``):
  ``DATA/NAME/video.mp4``, ``DATA/NAME/poses.json`` (our keypoint JSON, e.g. from ``mfollow pose``)
  and, for ``--stage mask``, ``DATA/NAME/masks/`` (8-bit PNGs, one per frame).

Frames are square: the centre square of the short side, resized to ``size``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mfollow.io.atomic import atomic_write_json
from mfollow.preprocess.lock import ProjectLock
from mfollow.preprocess.pose.keypoints import PoseSequence
from mfollow.runtime.errors import MediaError, ProjectError, UsageError

#: Probability that a video-stage batch is a batch of image pairs (paper §2.2, stage 2).
IMAGE_PAIR_RATE = 0.4
#: Default probability that an image/clip pair of a synthetic item takes its target from the
#: ground-truth edit (same frame index as the reference, so the same camera position) rather than
#: from another frame/clip of the source video (``--edit-rate``).
EDIT_TARGET_RATE = 0.5


@dataclass
class Item:
    """One video. Arrays are (F, S, S, 3) uint8 for frames and pose renders, (F, S, S) bool for
    masks; the ``edit_*`` arrays are the synthetic ground-truth edit (None for real videos)."""

    frames: np.ndarray
    poses: np.ndarray
    masks: np.ndarray | None = None
    edit_frames: np.ndarray | None = None
    edit_poses: np.ndarray | None = None
    edit_masks: np.ndarray | None = None

    @property
    def length(self) -> int:
        return len(self.frames)


# ----------------------------------------------------------------------------- sources
#: The arrays of an :class:`Item`, in the order a cache stores them (one ``.npy`` file each).
FIELDS = ("frames", "poses", "masks", "edit_frames", "edit_poses", "edit_masks")
_PROGRESS = "rendered.json"  # in a cache's partial folder: how many pairs are written


def synth_items(
    seed: int, count: int, frames: int, size: int, cache: Path | None = None, *, workers: int = 1
) -> list[Item]:
    """Render ``count`` puppet pairs of ``PuppetPairs(seed, count)`` at ``size``; with ``cache``,
    the arrays are kept there (:func:`synth_cache`) and memory-mapped, so later runs read them
    from disk as batches need them rather than holding them in memory.
    ``workers`` > 1 renders in that many processes (same arrays: each pair is seeded alone)."""
    if cache is not None:
        return open_cache(synth_cache(seed, count, frames, size, cache, workers=workers))
    return [item for _, item in _render(seed, count, frames, size, range(count), workers)]


def synth_cache(
    seed: int, count: int, frames: int, size: int, cache: Path, *, workers: int = 1, every: int = 64
) -> Path:
    """The folder ``cache/synth-KEY/`` (KEY hashes the arguments) holding the pairs of
    :func:`synth_items` as one ``.npy`` per :data:`FIELDS` entry, each (count, F, S, S[, 3]).

    Rendering writes into ``synth-KEY.partial/`` in pair order and records there, every ``every``
    pairs, how many are complete, so an interrupted render resumes where it stopped; the folder is
    renamed into place when complete. One process renders into a cache folder at a time (its
    ``.lock``; another live renderer raises :class:`ProjectLockedError`)."""
    key = hashlib.sha256(json.dumps(["synth", 1, seed, count, frames, size]).encode()).hexdigest()[:16]
    final = cache / f"synth-{key}"
    if final.is_dir():
        return final
    if cache.exists() and not cache.is_dir():
        raise UsageError(f"{cache}: exists and is not a folder; --data-cache needs a folder")
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ProjectError(f"{cache}: cannot create the data cache ({exc.strerror or exc})") from exc
    lock = ProjectLock(cache)
    lock.acquire()
    try:
        if final.is_dir():  # completed by another process while this one waited for the lock
            return final
        partial = cache / f"synth-{key}.partial"
        partial.mkdir(exist_ok=True)
        progress = partial / _PROGRESS
        done = json.loads(progress.read_text())["pairs"] if progress.is_file() else 0
        _render_into(partial, seed, count, frames, size, done, workers, every)
        progress.unlink(missing_ok=True)
        os.replace(partial, final)
    finally:
        lock.release()
    return final


def _render_into(
    partial: Path, seed: int, count: int, frames: int, size: int, done: int, workers: int, every: int
) -> None:
    """Write pairs ``done`` .. ``count - 1`` into the ``.npy`` files of ``partial``."""
    from numpy.lib.format import open_memmap

    progress = partial / _PROGRESS
    files = {f: partial / f"{f}.npy" for f in FIELDS}
    arrays = {f: open_memmap(p, mode="r+") for f, p in files.items()} if done else None
    for index, item in _render(seed, count, frames, size, range(done, count), workers):
        if arrays is None:  # the first pair gives every field's shape and dtype
            arrays = {}
            for f, p in files.items():
                a = getattr(item, f)
                arrays[f] = open_memmap(p, mode="w+", dtype=a.dtype, shape=(count, *a.shape))
        for f in FIELDS:
            arrays[f][index] = getattr(item, f)
        if (index + 1) % every == 0 or index + 1 == count:
            for a in arrays.values():
                a.flush()
            atomic_write_json(progress, {"pairs": index + 1})


def open_cache(folder: Path) -> list[Item]:
    """The items of a :func:`synth_cache` folder, each a view into memory-mapped arrays."""
    try:
        arrays = {f: np.load(folder / f"{f}.npy", mmap_mode="r") for f in FIELDS}
    except (OSError, ValueError) as exc:
        raise MediaError(f"{folder}: unreadable data cache ({exc}); delete the folder to render it again") from exc
    count = len(arrays["frames"])
    if any(len(a) != count for a in arrays.values()):
        raise MediaError(f"{folder}: its arrays hold different numbers of pairs; delete the folder to render it again")
    return [Item(**{f: a[n] for f, a in arrays.items()}) for n in range(count)]


def _render(seed: int, count: int, frames: int, size: int, indices: range, workers: int) -> Iterator[tuple[int, Item]]:
    """(index, item) for each pair index of ``PuppetPairs(seed, count)`` in ``indices``, in order."""
    jobs = [(seed, count, frames, size, index) for index in indices]
    if workers > 1 and len(jobs) > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
        try:
            yield from zip(indices, pool.map(_synth_item, *zip(*jobs, strict=True), chunksize=4), strict=True)
        finally:  # stopped early (Ctrl-C, an error): drop the pairs not yet started rather than render them all
            pool.shutdown(wait=True, cancel_futures=True)
    else:
        for job in jobs:
            yield job[-1], _synth_item(*job)


def _synth_item(seed: int, count: int, frames: int, size: int, index: int) -> Item:
    """Pair ``index`` of ``PuppetPairs(seed, count)``: both clips, their pose renders and masks."""
    from mfollow.preprocess.pose.render import render_sequence
    from mfollow.synth import PuppetPairs

    pairs = PuppetPairs(seed, count, frames=frames, size=size)
    pair = pairs.pair(index)
    clips = {role: pairs.clip(pair, role, 0, frames) for role in ("source", "edit")}
    renders = {role: np.stack(list(render_sequence(c["poses"], size, size))) for role, c in clips.items()}  # type: ignore[arg-type]
    return Item(
        frames=clips["source"]["frames"],  # type: ignore[arg-type]
        poses=renders["source"],
        masks=clips["source"]["masks"],  # type: ignore[arg-type]
        edit_frames=clips["edit"]["frames"],  # type: ignore[arg-type]
        edit_poses=renders["edit"],
        edit_masks=clips["edit"]["masks"],  # type: ignore[arg-type]
    )


def folder_items(folder: Path, size: int, *, need_masks: bool = False) -> list[Item]:
    """Read ``folder/NAME/{video.mp4, poses.json[, masks/]}`` for every NAME (sorted)."""
    from PIL import Image

    from mfollow.io.video import iter_frames, probe
    from mfollow.preprocess.masks.files import read_masks
    from mfollow.preprocess.pose.render import render_sequence

    if not folder.is_dir():
        raise UsageError(f"{folder}: training data folder not found")
    names = sorted(p for p in folder.iterdir() if (p / "video.mp4").is_file())
    if not names:
        raise UsageError(f"{folder}: no NAME/video.mp4 inside (see docs/training.md for the layout)")
    items = []
    for d in names:
        if not (d / "poses.json").is_file():
            raise UsageError(f"{d}: poses.json missing (run mfollow pose on the video)")
        info = probe(d / "video.mp4")
        w, h = info.display_width, info.display_height
        s = min(w, h)
        box = ((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s)  # centre square

        def square(img: np.ndarray, resample: Image.Resampling, box: tuple[int, ...] = box) -> np.ndarray:
            return np.asarray(Image.fromarray(img).crop(box).resize((size, size), resample))

        frames = np.stack([square(f, Image.Resampling.BILINEAR) for f in iter_frames(d / "video.mp4", info=info)])
        poses = PoseSequence.load(d / "poses.json")
        if len(poses) != len(frames):
            raise MediaError(f"{d}: {len(poses)} poses for {len(frames)} frames")
        renders = list(render_sequence(poses, w, h))
        renders = np.stack([square(r, Image.Resampling.BILINEAR) for r in renders])
        masks = None
        if need_masks:
            if not (d / "masks").is_dir():
                raise UsageError(f"{d}: masks/ missing (needed by --stage mask and --region-weight)")
            m = read_masks(d / "masks")
            if len(m) != len(frames):
                raise MediaError(f"{d}: {len(m)} masks for {len(frames)} frames")
            masks = np.stack([square(x.astype(np.uint8) * 255, Image.Resampling.NEAREST) > 127 for x in m])
        items.append(Item(frames=frames, poses=renders, masks=masks))
    return items


# ----------------------------------------------------------------------------- sampling
def batch_rng(seed: int, step: int, rank: int, purpose: int) -> np.random.Generator:
    """The generator of one batch: a pure function of its key (resume-safe, rank-distinct)."""
    return np.random.default_rng([seed, step, rank, purpose])


def clip_batch(
    items: list[Item], rng: np.random.Generator, batch: int, length: int, edit_rate: float = EDIT_TARGET_RATE
) -> dict[str, np.ndarray]:
    """Clip pairs (B, L, S, S, 3): ``reference`` frames, and ``target`` frames and ``target_pose``
    renders of the same video — a distinct frame/clip of it, or (for a synthetic item, with
    probability ``edit_rate``) its ground-truth edit at the reference's frame indices. ``length`` 1
    gives stage 1's image pairs. Where the item has masks, ``region`` (B, L, S, S) bool is the union of
    the person's masks in the reference and the target (M_r ∪ M_e of the pair)."""
    return _stack([_pair(items, rng, length, edit_rate) for _ in range(batch)])


def video_stage_batch(
    items: list[Item], rng: np.random.Generator, batch: int, length: int, edit_rate: float = EDIT_TARGET_RATE
) -> tuple[bool, dict[str, np.ndarray]]:
    """(is_image_batch, batch): with probability ``IMAGE_PAIR_RATE`` a batch of image pairs as in
    stage 1 (clips of one frame), otherwise clip pairs of ``length`` frames."""
    if rng.random() < IMAGE_PAIR_RATE:
        return True, _stack([_pair(items, rng, 1, edit_rate) for _ in range(batch)])
    return False, _stack([_pair(items, rng, length, edit_rate) for _ in range(batch)])


def _pair(items: list[Item], rng: np.random.Generator, length: int, edit_rate: float) -> dict[str, np.ndarray]:
    item = items[int(rng.integers(len(items)))]
    n = item.length
    if n < length + (0 if item.edit_frames is not None else 1):
        raise UsageError(f"a training video has {n} frames, fewer than the clip length {length} needs")
    a = int(rng.integers(0, n - length + 1))
    ref = slice(a, a + length)
    out: dict[str, np.ndarray]
    if item.edit_frames is not None and item.edit_poses is not None and rng.random() < edit_rate:
        out = {"reference": item.frames[ref], "target": item.edit_frames[ref], "target_pose": item.edit_poses[ref]}
        target_masks = item.edit_masks
        tgt = ref
    else:  # another start (a distinct frame or clip) of the same video
        starts = [s for s in range(0, n - length + 1) if s != a]
        if not starts:
            starts = [a]
        b = starts[int(rng.integers(len(starts)))]
        tgt = slice(b, b + length)
        out = {"reference": item.frames[ref], "target": item.frames[tgt], "target_pose": item.poses[tgt]}
        target_masks = item.masks
    if item.masks is not None and target_masks is not None:
        out["region"] = item.masks[ref] | target_masks[tgt]
    return out


def mask_batch(items: list[Item], rng: np.random.Generator, batch: int) -> dict[str, np.ndarray]:
    """SegDiT examples: ``frame`` (B, S, S, 3), ``pose`` render and ``mask`` (B, S, S) of the
    person in that pose — the frame's own pose (M_r), or, for synthetic items, the edit pose of
    another frame with the ground-truth edit mask (M_e)."""
    out = []
    for _ in range(batch):
        item = items[int(rng.integers(len(items)))]
        if item.masks is None:
            raise UsageError("--stage mask needs masks (folder data: NAME/masks/)")
        i, j = (int(v) for v in rng.integers(0, item.length, size=2))
        if item.edit_masks is not None and item.edit_poses is not None and rng.random() < 0.5:
            out.append({"frame": item.frames[i], "pose": item.edit_poses[j], "mask": item.edit_masks[j]})
        else:
            out.append({"frame": item.frames[i], "pose": item.poses[i], "mask": item.masks[i]})
    return _stack(out)


def frame_batch(
    items: list[Item], rng: np.random.Generator, batch: int, *, masks: bool = False
) -> dict[str, np.ndarray]:
    """VAE examples: ``frame`` (B, S, S, 3) drawn from every video (and synthetic edits); with
    ``masks``, also each frame's person ``mask`` (B, S, S) bool. The draws do not depend on
    ``masks``, so the same seed gives the same frames either way."""
    out = []
    for _ in range(batch):
        item = items[int(rng.integers(len(items)))]
        edit = item.edit_frames is not None and rng.random() >= 0.5
        pool, pool_masks = (item.edit_frames, item.edit_masks) if edit else (item.frames, item.masks)
        f = int(rng.integers(item.length))
        row = {"frame": pool[f]}  # type: ignore[index]
        if masks:
            if pool_masks is None:
                raise UsageError("--region-weight needs person masks (folder data: NAME/masks/)")
            row["mask"] = pool_masks[f]
        out.append(row)
    return _stack(out)


def _stack(rows: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.stack([r[k] for r in rows]) for k in rows[0]}
