"""Comparing a result video with a reference video frame by frame (``mfollow eval``).

Frames are paired by index. Different sizes or lengths are refused unless the settings say how to
handle them: ``length="trim"`` evaluates the frames both videos have; ``size="resize"`` resizes the
result to the reference's size (bicubic) before comparing.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from PIL import Image

from mfollow.io.atomic import atomic_write_text
from mfollow.io.checks import check_writable_folder
from mfollow.metrics.frames import NAMES, REGIONS, SSIM_VARIANT, Report, evaluate
from mfollow.runtime.errors import MediaError

if TYPE_CHECKING:
    from mfollow.metrics.learned.settings import LearnedSettings

PER_FRAME_LEARNED = ("lpips",)


@dataclass(frozen=True)
class EvalSettings:
    length: Literal["error", "trim"] = "error"
    size: Literal["error", "resize"] = "error"


def evaluate_videos(
    result: Path,
    reference: Path,
    fg_masks: Path | None = None,
    settings: EvalSettings = EvalSettings(),
    progress: Callable[[int, int], None] | None = None,
    learned: LearnedSettings | None = None,
    weights: Path | None = None,
) -> tuple[Report, dict[str, Any]]:
    """Compute the metrics of ``result`` against ``reference`` (and inside/outside ``fg_masks``,
    a folder of one mask image per reference frame), plus the ``learned`` metrics asked for
    (networks from the weights resolver, ``weights`` searched first). Returns the report and a
    JSON-ready header.

    Raises:
        MediaError: unreadable inputs, or a size/length mismatch the settings do not allow.
        UsageError: a learned metric that the length cannot support (FID < 2 frames, FVD < 2 clips).
        WeightsError: a learned metric's network is not installed.
    """
    from mfollow.io.video import iter_frames, probe
    from mfollow.preprocess.masks.files import read_masks

    a, b = probe(result), probe(reference)
    size_a, size_b = (a.display_width, a.display_height), (b.display_width, b.display_height)
    if size_a != size_b and settings.size == "error":
        raise MediaError(
            f"{result}: size {size_a[0]}x{size_a[1]} differs from the reference's {size_b[0]}x{size_b[1]}",
            hint="pass --resize to resize the result",
        )
    n = min(a.frame_count, b.frame_count)
    if a.frame_count != b.frame_count and settings.length == "error":
        raise MediaError(
            f"{result}: {a.frame_count} frames but the reference has {b.frame_count}",
            hint="pass --trim to evaluate the first frames both have",
        )
    masks = None
    if fg_masks is not None:
        masks = read_masks(fg_masks)
        if len(masks) < n or (len(masks) != b.frame_count and settings.length == "error"):
            raise MediaError(f"{fg_masks}: {len(masks)} masks for {b.frame_count} reference frames")
        if masks.shape[1:] != (size_b[1], size_b[0]):
            raise MediaError(f"{fg_masks}: masks are {masks.shape[2]}x{masks.shape[1]}, frames {size_b[0]}x{size_b[1]}")
        masks = masks[:n]

    def results() -> Iterator[np.ndarray]:
        for frame in iter_frames(result, 0, n, info=a):
            if frame.shape[:2] != (size_b[1], size_b[0]):
                frame = np.asarray(Image.fromarray(frame).resize(size_b, Image.Resampling.BICUBIC))
            yield frame

    scorer = None
    if learned is not None and learned.any:
        from mfollow.metrics.learned.scorer import LearnedScorer, load_models

        learned.check(n, *size_b)
        scorer = LearnedScorer(learned, load_models(learned, weights))
    callback = None if progress is None else (lambda done: progress(done, n))
    report = evaluate(results(), iter_frames(reference, 0, n, info=b), masks, callback=callback, learned=scorer)
    header = {
        "result": str(result),
        "reference": str(reference),
        "fg_masks": None if fg_masks is None else str(fg_masks),
        "frames": n,
        "result_frames": a.frame_count,
        "reference_frames": b.frame_count,
        "resized": size_a != size_b,
        "ssim_variant": SSIM_VARIANT,
    }
    if scorer is not None:
        header["learned"] = learned.lineage()  # type: ignore[union-attr]
    return report, header


def json_number(v: float) -> float | str | None:
    """JSON has no inf/NaN: infinite PSNR becomes ``"inf"``, undefined values ``null``."""
    if math.isnan(v):
        return None
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return v


def check_writable(path: Path) -> None:
    """Fail before any work when a file cannot be written at ``path`` (raises :class:`MediaError`)."""

    check_writable_folder(path.parent, str(path))


def write_per_frame_csv(report: Report, path: Path) -> None:
    """One row per frame (``frame`` then each metric), written atomically."""
    keys = ["frame"] + [f"{n}{s}" for s in REGIONS for n in NAMES if f"{n}{s}" in report.rows[0]]
    keys += [k for k in PER_FRAME_LEARNED if k in report.rows[0]]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(keys)
    for row in report.rows:
        writer.writerow([int(row["frame"])] + [repr(row[k]) for k in keys[1:]])
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, buf.getvalue())
    except OSError as exc:
        raise MediaError(f"{path}: cannot write the per-frame table ({exc.strerror or exc})") from exc
