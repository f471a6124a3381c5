"""The report page: what a project's cache holds, to look at before (and after) spending GPU time.

``write_report(project)`` writes ``report.html`` and a media folder beside it (``NAME_media/``:
H.264 mp4 and PNG, referenced by relative paths, so the folder can be copied off a remote
machine). Sections appear for what the project holds:

- the source and target videos (from the pose stages' recorded inputs);
- the source poses, the aligned edit poses, and both drawn over the source;
- M_r (red) and M_e (green) over the source;
- the result beside the source, when an edit recorded one (``result.json``);
- the per-frame metrics, plotted as inline SVG, when ``mfollow eval -p`` recorded them;
- the latest sampling previews (``preview/``), when ``--preview-every`` wrote them;
- every stage's state (fresh, stale, missing), parameters, time taken and date.

Nothing is fetched from the network and no script runs: the page is plain HTML and CSS.
"""

from __future__ import annotations

import csv
import html
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mfollow.io.atomic import atomic_write_text
from mfollow.preprocess.pose.keypoints import PoseSequence
from mfollow.report import media as report_media
from mfollow.report.records import EVAL_DIR, RESULT
from mfollow.runtime.errors import MediaError, ProjectError
from mfollow.version import __version__

PLOTTED = ("psnr", "ssim", "psnr_fg", "psnr_bg")  # per-frame metrics drawn when present


@dataclass(frozen=True)
class ReportSettings:
    max_side: int = 384  # long side of the report's videos, pixels


def default_report_path(project: Path) -> Path:
    return project / "report" / "report.html"


def write_report(
    project: Path,
    out: Path | None = None,
    settings: ReportSettings = ReportSettings(),
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Write the page for ``project`` at ``out`` (default ``PROJECT/report/report.html``); returns
    what was written (JSON-ready).

    Raises:
        ProjectError: no such project, or a corrupt manifest.
        MediaError: the page or its media cannot be written, or a recorded input is unreadable.
    """
    from mfollow.preprocess.project import Project

    proj = Project.read(project)
    out = out or default_report_path(project)
    if out.suffix.lower() not in (".html", ".htm"):
        raise MediaError(f"{out}: the report is an HTML page; give it a .html name")
    media = out.parent / f"{out.stem}_media"
    try:
        shutil.rmtree(media, ignore_errors=True)
        media.mkdir(parents=True)
    except OSError as exc:
        raise MediaError(f"{media}: cannot write the report's media ({exc.strerror or exc})") from exc
    say = progress or (lambda _: None)
    sections: list[str] = []
    written: list[str] = []

    def rel(path: Path) -> str:
        written.append(str(path))
        return html.escape(path.relative_to(out.parent).as_posix(), quote=True)

    records = proj.manifest["stages"]
    source = _recorded_video(records, "pose-source")
    target = _recorded_video(records, "pose-target")
    timing = None
    if source is not None:
        from mfollow.io.media import media_info

        info = media_info(source)
        timing = (list(info.timestamps), info.time_base)
        size = report_media.display_size(info.display_width, info.display_height, settings.max_side)
        say("source")
        clips = [
            (
                "Source",
                rel(report_media.write_clip(media / "source.mp4", report_media.video_frames(source, size), *timing)),
            )
        ]
        if target is not None:
            t_info = media_info(target)
            t_size = report_media.display_size(t_info.display_width, t_info.display_height, settings.max_side)
            say("target")
            frames = report_media.video_frames(target, t_size)
            t_timing = (list(t_info.timestamps), t_info.time_base)
            clips.append(("Target", rel(report_media.write_clip(media / "target.mp4", frames, *t_timing))))
            if "pose-target" in records:  # the motion as estimated, before alignment
                poses = PoseSequence.load(proj.output("pose-target", "poses.json"))
                over = report_media.over(
                    report_media.video_frames(target, t_size), report_media.pose_frames(poses, t_size)
                )
                clips.append(("Target poses", rel(report_media.write_clip(media / "pose-target.mp4", over, *t_timing))))
        sections.append(_section("Source and target", _videos(clips)))
        pose_clips = _pose_clips(proj, media, source, size, timing, say, rel)
        if pose_clips:
            sections.append(_section("Poses", _videos(pose_clips)))
        if "mask" in records:
            say("masks")
            mask_dir = proj.stage_dir("mask")
            frames = report_media.masks_over(
                report_media.video_frames(source, size), mask_dir / "source_masks", mask_dir / "edit_masks", size
            )
            path = report_media.write_clip(media / "masks_over_source.mp4", frames, *timing)
            sections.append(_section("Masks", _videos([("M_r (red fill) and M_e (green outline) over the source",
                                                        rel(path))])))  # fmt: skip
        result = _result(project)
        if result is not None:
            say("result")
            frames = report_media.side_by_side(
                report_media.video_frames(source, size), report_media.video_frames(result, size)
            )
            path = report_media.write_clip(media / "source_and_result.mp4", frames, *timing)
            sections.append(_section("Result", _videos([(f"Source | result ({html.escape(str(result))})", rel(path))])))
    warnings = _warnings(project)
    if warnings:  # first on the page: what the last edit was warned of before it sampled
        items = "".join(f"<li>{html.escape(w)}</li>" for w in warnings)
        sections.insert(0, _section("Warnings (found before sampling)", f"<ul>{items}</ul>"))
    plot = _metrics_plot(project)
    if plot is not None:
        sections.append(_section("Per-frame metrics (mfollow eval)", plot))
    previews = _previews(project, media, rel)
    if previews is not None:
        sections.append(_section("Latest sampling preview", previews))
    sections.append(_section("Stages", _stage_table(proj)))
    page = _page(project, sections)
    try:
        atomic_write_text(out, page)
    except OSError as exc:
        raise MediaError(f"{out}: cannot write the report ({exc.strerror or exc})") from exc
    return {"report": str(out), "media": written, "sections": len(sections)}


def _recorded_video(records: dict[str, Any], stage: str) -> Path | None:
    rec = records.get(stage)
    if rec is None:
        return None
    path = Path(rec["document"]["inputs"]["video"]["path"])
    if not path.exists():  # a video, a folder of frames or an image
        raise MediaError(f"{path}: the project's {stage} video is gone")
    return path


def _pose_clips(proj: Any, media: Path, source: Path, size: tuple[int, int], timing: Any, say: Any, rel: Any) -> list:

    clips = []
    drawn = []
    for stage, name, label in (("pose-source", "poses.json", "Source poses"), ("align", "edit_poses.json",
                                                                                "Aligned edit poses")):  # fmt: skip
        if stage not in proj.manifest["stages"]:
            continue
        say(stage)
        poses = PoseSequence.load(proj.output(stage, name))
        path = report_media.write_clip(media / f"{stage}.mp4", report_media.pose_frames(poses, size), *timing)
        clips.append((label, rel(path)))
        drawn.append(poses)
    if drawn:
        frames = report_media.video_frames(source, size)
        for poses in drawn:  # each skeleton over the source (the second over the first)
            frames = report_media.over(frames, report_media.pose_frames(poses, size))
        path = report_media.write_clip(media / "poses_over_source.mp4", frames, *timing)
        clips.append(("Both over the source" if len(drawn) == 2 else "Over the source", rel(path)))
    return clips


def _warnings(project: Path) -> list[str]:
    """What the last edit warned of before sampling (its ``result.json``)."""
    path = project / RESULT
    if not path.is_file():
        return []
    try:
        return [str(w) for w in json.loads(path.read_text()).get("warnings", [])]
    except (OSError, ValueError, AttributeError) as exc:
        raise ProjectError(f"{path}: unreadable result record ({exc})") from exc


def _result(project: Path) -> Path | None:

    path = project / RESULT
    if not path.is_file():
        return None
    try:
        output = Path(json.loads(path.read_text())["output"])
    except (OSError, ValueError, KeyError) as exc:
        raise ProjectError(f"{path}: unreadable result record ({exc})") from exc
    return output if output.exists() else None  # a video or a folder of PNG frames


def _metrics_plot(project: Path) -> str | None:

    path = project / EVAL_DIR / "per_frame.csv"
    if not path.is_file():
        return None
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        return None
    plots = []
    for name in PLOTTED:
        if name in rows[0]:
            values = [float(r[name]) for r in rows]
            plots.append(svg_plot(values, name))
    return "".join(plots)


def svg_plot(values: list[float], title: str, width: int = 560, height: int = 180) -> str:
    """An inline SVG line chart of ``values`` by frame, with its range on the axes."""
    finite = [v for v in values if v == v and abs(v) != float("inf")]
    lo, hi = (min(finite), max(finite)) if finite else (0.0, 1.0)
    if hi == lo:
        lo, hi = lo - 0.5, hi + 0.5
    left, right, top, bottom = 48, 8, 22, 24
    w, h = width - left - right, height - top - bottom
    n = max(1, len(values) - 1)
    points = " ".join(
        f"{left + w * i / n:.1f},{top + h * (1 - (v - lo) / (hi - lo)):.1f}" for i, v in enumerate(values) if v == v
    )
    t = html.escape(title)
    return (
        f'<svg class="plot" role="img" aria-label="{t} per frame" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">'
        f'<text x="{left}" y="15" class="title">{t}</text>'
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + h}" class="axis"/>'
        f'<line x1="{left}" y1="{top + h}" x2="{left + w}" y2="{top + h}" class="axis"/>'
        f'<text x="{left - 4}" y="{top + 4}" text-anchor="end">{hi:.4g}</text>'
        f'<text x="{left - 4}" y="{top + h}" text-anchor="end">{lo:.4g}</text>'
        f'<text x="{left}" y="{height - 6}">frame 0</text>'
        f'<text x="{left + w}" y="{height - 6}" text-anchor="end">frame {len(values) - 1}</text>'
        f'<polyline points="{points}" class="line"/></svg>'
    )


def _previews(project: Path, media: Path, rel: Any) -> str | None:
    latest = project / "preview" / "latest"
    images = sorted(latest.glob("*.png")) if latest.is_dir() else []
    if not images:
        return None
    meta = {}
    if (latest / "preview.json").is_file():
        meta = json.loads((latest / "preview.json").read_text())
    (media / "preview").mkdir()
    figures = []
    for img in images:
        copy = media / "preview" / img.name
        shutil.copyfile(img, copy)
        figures.append(f'<figure><img src="{rel(copy)}" alt="preview {html.escape(img.stem)}">'
                       f"<figcaption>{html.escape(img.stem)}</figcaption></figure>")  # fmt: skip
    step = f"<p>step {meta.get('step')} of {meta.get('steps')}</p>" if meta else ""
    return step + '<div class="row">' + "".join(figures) + "</div>"


def _stage_table(proj: Any) -> str:
    rows = []
    for s in proj.status():
        rec = proj.manifest["stages"].get(s.name) or {}
        params = rec.get("document", {}).get("params", {})
        when = "" if s.updated is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(s.updated))
        seconds = rec.get("seconds")
        rows.append(
            f'<tr class="{s.state}"><td>{html.escape(s.name)}</td><td>{s.state}</td>'
            f"<td>{html.escape(s.reason)}</td><td><code>{html.escape(json.dumps(params, sort_keys=True))}</code></td>"
            f"<td>{'' if seconds is None else f'{seconds:.1f} s'}</td><td>{when}</td></tr>"
        )
    head = "<tr><th>stage</th><th>state</th><th>why</th><th>parameters</th><th>took</th><th>updated</th></tr>"
    return f"<table>{head}{''.join(rows)}</table>"


def _videos(clips: list[tuple[str, str]]) -> str:
    figures = "".join(
        f'<figure><video src="{src}" controls muted loop autoplay playsinline preload="auto"></video>'
        f"<figcaption>{html.escape(label)}</figcaption></figure>"
        for label, src in clips
    )
    return f'<div class="row">{figures}</div>'


def _section(title: str, body: str) -> str:
    return f"<section><h2>{html.escape(title)}</h2>{body}</section>"


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5rem; background: #fafafa; color: #222; }
h1 { font-size: 1.4rem; } h2 { font-size: 1.1rem; border-bottom: 1px solid #ccc; }
.row { display: flex; flex-wrap: wrap; gap: 1rem; }
figure { margin: 0; } figcaption { font-size: 0.85rem; color: #555; }
video, img { background: #000; height: 256px; max-width: 100%; object-fit: contain; }
table { border-collapse: collapse; font-size: 0.85rem; } td, th { border: 1px solid #ccc; padding: 0.2rem 0.4rem; }
tr.stale td:nth-child(2) { color: #b35c00; } tr.missing td:nth-child(2) { color: #999; }
tr.fresh td:nth-child(2) { color: #1a7f37; }
svg.plot { background: #fff; border: 1px solid #ddd; margin-right: 1rem; }
svg.plot .line { fill: none; stroke: #1f6feb; stroke-width: 1.5; } svg.plot .axis { stroke: #888; }
svg.plot text { font-size: 11px; fill: #444; } svg.plot .title { font-weight: bold; }
"""


def _page(project: Path, sections: list[str]) -> str:

    title = html.escape(f"mfollow report: {project.resolve().name}")
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        f"<style>{_STYLE}</style></head><body><h1>{title}</h1>"
        f"<p>{html.escape(str(project.resolve()))} · mfollow {html.escape(__version__)} · "
        f"{time.strftime('%Y-%m-%d %H:%M:%S')}</p>{''.join(sections)}</body></html>\n"
    )
