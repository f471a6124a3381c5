"""``mfollow demo``: the whole pipeline on a held-out synthetic pair with the bundled model.

Steps: synthesise a pair (:mod:`mfollow.synth`, never seen in training), poses from the world's
ground-truth keypoints (``pose --backend file``), ``align``, masks (M_r: the world's source masks;
M_e: the bundled SegDiT on the source frame and the aligned pose), ``edit`` with the bundled tiny
model, then a side-by-side video (source | target | result | ground truth) and metrics.

Layout of ``OUT_DIR``::

    pair/              the synthetic pair (see mfollow.synth.files)
    project/           the cached pose / align / mask stages
    result.mp4         the edit
    side_by_side.mp4   source | target | result | ground truth, labelled
    metrics.json       PSNR / SSIM / L1 (full frame, foreground, background) of the result and of
                       the two trivial baselines (source unchanged, target unchanged)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from mfollow.io.atomic import atomic_write_json
from mfollow.preprocess.pose.align import AlignSettings
from mfollow.preprocess.pose.keypoints import PoseSequence

#: The demo's pair seed. Training data come from ``PuppetPairs(seed + 1000, ...)`` whose pairs are
#: seeded by hashes of (seed + 1000, index); the quality benchmark's held-out seeds start at 10_000.
DEMO_SEED = 7
DEMO_SIZE = 128
LABELS = ("source", "target", "result", "ground truth")


@dataclass(frozen=True)
class DemoSettings:
    seed: int = DEMO_SEED
    frames: int = 24
    steps: int | None = None  # None: the tiny preset's
    guidance: str = "paper"
    guidance_scale: float | None = None  # None: the sampler's default
    camera: str | None = None  # the pair's camera path (None: drawn from the seed)
    device: str = "cpu"  # where the edit runs
    # the source person's own pixels moved into the edit pose over the model's drawing (``--warp-person``):
    # what makes the tiny model's edit visible (docs/benchmarks.md, the quality benchmark's session-14 section)
    warp_person: bool = True


def prepare_pair(
    seed: int,
    frames: int,
    out: Path,
    *,
    camera: str | None = None,
    weights: Path | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    align: AlignSettings | None = None,
) -> tuple[Any, Path, dict[str, Path]]:
    """Synthesise pair ``seed`` into ``out/pair`` and run the pose (ground-truth keypoints),
    align (``align``: :class:`mfollow.preprocess.pose.align.AlignSettings`, default the tiny
    preset's: the puppet world's) and mask (M_r: ground truth; M_e: SegDiT) stages in
    ``out/project``. Returns (pair, pair folder, the edit's poses and masks)."""
    from mfollow.models.presets import get_preset
    from mfollow.preprocess.stages import align_stage, mask_stage, pose_stage, project_inputs
    from mfollow.synth import make_pair
    from mfollow.synth.files import write_pair

    pair = make_pair(seed, frames=frames, size=DEMO_SIZE, camera=camera)  # type: ignore[arg-type]
    pair_dir = out / "pair"
    write_pair(pair, pair_dir, progress=None if progress is None else lambda d, n: progress("synth", d, n))
    project = out / "project"
    pose_stage(project, pair_dir / "source.mp4", "source", pair_dir / "source_poses.json", backend="file")
    pose_stage(project, pair_dir / "target.mp4", "target", pair_dir / "target_poses.json", backend="file")
    align_stage(project, align or AlignSettings(**get_preset("tiny").align))
    mask_stage(
        project,
        source_masks=pair_dir / "source_masks",
        source_video=pair_dir / "source.mp4",
        edit_backend="segdit",
        weights_dir=weights,
    )
    staged = project_inputs(project)
    assert staged is not None  # every stage above just ran
    return pair, pair_dir, staged


def edit_pair(
    bundle: Any,
    weights_id: str,
    pair_dir: Path,
    staged: dict[str, Path],
    result: Path,
    progress: Callable[[str, int, int], None] | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Edit a prepared pair with its staged poses and masks through the library's one edit path
    (:class:`mfollow.edit.pipeline.MotionFollowerPipeline`); ``options`` are
    :class:`mfollow.edit.request.EditRequest` fields (``steps``, ``guidance``, ``camera``,
    ``warp_person`` ...). Writes ``result``; returns the edit's report."""
    from mfollow.edit.pipeline import MotionFollowerPipeline

    pipe = MotionFollowerPipeline(bundle, weights_id)
    return pipe(
        pair_dir / "source.mp4", pair_dir / "target.mp4", result, **staged,
        progress=None if progress is None else lambda done, total: progress("edit", done, total), **options,
    )  # fmt: skip


def run_demo(
    out: Path,
    settings: DemoSettings = DemoSettings(),
    *,
    weights: Path | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    """Run the demo into ``out``; returns the report also written to ``out/metrics.json``."""
    from mfollow.models.loading import load_bundle

    started = time.perf_counter()
    timings: dict[str, float] = {}

    def tick(name: str, t0: float) -> float:
        now = time.perf_counter()
        timings[name] = round(now - t0, 3)
        return now

    t = started
    bundle, weights_id = load_bundle("tiny", weights)
    t = tick("load", t)
    pair, pair_dir, staged = prepare_pair(
        settings.seed, settings.frames, out, camera=settings.camera, weights=weights, progress=progress
    )
    t = tick("synth_and_preprocess", t)
    result = out / "result.mp4"
    edited = edit_pair(
        bundle, weights_id, pair_dir, staged, result, progress, device=settings.device,
        warp_person=settings.warp_person, steps=settings.steps, guidance=settings.guidance,
        guidance_scale=settings.guidance_scale, max_frames=settings.frames,
    )  # fmt: skip
    t = tick("edit", t)
    videos = [pair_dir / "source.mp4", pair_dir / "target.mp4", result, pair_dir / "edit_gt.mp4"]
    side_by_side(videos, LABELS, out / "side_by_side.mp4", pair.fps)
    metrics = {
        name: scores(path, pair_dir, out / "project" if name == "result" else None, pair)
        for name, path in (("result", result), ("source_unchanged", videos[0]), ("target_unchanged", videos[1]))
    }
    from mfollow.synth.silhouette import video_silhouette_iou

    metrics["ground_truth"] = {"silhouette_iou": round(video_silhouette_iou(videos[3], pair), 4)}  # the ceiling
    # the same against the truth registered to the aligned poses: where the world anchors its
    # puppet is not in either video (mfollow.synth.register)
    reg_pair, reg_dir, delta = registered_truth(pair, staged, pair_dir / "registered")
    metrics["registered"] = {
        "offset_px": [round(delta[0], 3), round(delta[1], 3)],
        **{
            name: scores(path, reg_dir, None, reg_pair)
            for name, path in (("result", result), ("source_unchanged", videos[0]))
        },
    }
    tick("report", t)
    report = {
        "output": str(out),
        "result": str(result),
        "side_by_side": str(out / "side_by_side.mp4"),
        "pair": pair.describe(),
        "settings": {**asdict(settings), "guidance_scale": edited["guidance_scale"]},
        "weights": weights_id,
        "metrics": metrics,
        "timings": timings | {"total": round(time.perf_counter() - started, 3)},
    }
    atomic_write_json(out / "metrics.json", report)
    from mfollow.report.records import record_result

    record_result(out / "project", {**report, "output": str(result)})  # for `mfollow report -p OUT/project`
    return report


def registered_truth(pair: Any, staged: dict[str, Path], out: Path) -> tuple[Any, Path, tuple[float, float]]:
    """The pair's ground-truth edit registered to the staged (aligned) edit poses
    (:mod:`mfollow.synth.register`), written to ``out`` (its ``edit_gt.mp4`` and ``edit_masks``,
    what :func:`scores` reads): (the registered pair, ``out``, the offset in world pixels)."""
    from mfollow.synth.files import write_pair
    from mfollow.synth.register import placement_offset, registered

    delta = placement_offset(pair, PoseSequence.load(staged["edit_poses"]))
    moved = registered(pair, delta)
    write_pair(moved, out, roles=("edit",))
    return moved, out, delta


def scores(video: Path, pair_dir: Path, project: Path | None = None, pair: Any = None) -> dict[str, float | str | None]:
    """Summary metrics of ``video`` against the ground-truth edit, foreground = the edit's mask
    (per frame into ``project`` too, for its report page); with the ``pair`` itself, also the
    motion accuracy ``silhouette_iou`` (:mod:`mfollow.synth.silhouette`)."""
    from mfollow.metrics.evaluation import evaluate_videos, json_number

    report, _ = evaluate_videos(video, pair_dir / "edit_gt.mp4", pair_dir / "edit_masks")
    keys = ("psnr", "ssim", "l1", "psnr_fg", "ssim_fg", "psnr_bg", "ssim_bg")
    summary = {k: json_number(report.summary[k]) for k in keys if k in report.summary}
    if pair is not None:
        from mfollow.synth.silhouette import video_silhouette_iou

        summary["silhouette_iou"] = round(video_silhouette_iou(video, pair), 4)
    if project is not None:
        from mfollow.report.records import record_eval

        record_eval(project, report, summary)
    return summary


def side_by_side(videos: list[Path], labels: tuple[str, ...], out: Path, fps: Fraction) -> Path:
    """Frames of ``videos`` (equal sizes) placed left to right with a label strip on top."""
    from PIL import Image, ImageDraw

    from mfollow.io.video import iter_frames, write_video

    streams = [iter_frames(v) for v in videos]

    def frames() -> Any:
        for row in zip(*streams, strict=False):
            h = row[0].shape[0]
            strip = Image.new("RGB", (sum(f.shape[1] for f in row), 16), "black")
            draw = ImageDraw.Draw(strip)
            x = 0
            for f, label in zip(row, labels, strict=True):
                draw.text((x + 4, 2), label, fill="white")
                x += f.shape[1]
            yield np.concatenate([np.asarray(strip), np.concatenate([f[:h] for f in row], axis=1)], axis=0)

    n = min(_count(v) for v in videos)
    return write_video(out, frames(), range(n), 1 / Fraction(fps))


def _count(video: Path) -> int:
    from mfollow.io.video import probe

    return probe(video).frame_count
