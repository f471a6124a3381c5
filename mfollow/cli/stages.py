"""The preprocessing commands ``pose``, ``align`` and ``mask`` (registered by :mod:`mfollow.cli`).
Each runs one cached stage of :mod:`mfollow.preprocess.stages`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mfollow.cli.common import DebugOpt, JsonOpt, ProjectOpt, QuietOpt, choices, emit_json, guard, stderr_line
from mfollow.preprocess import EditMaskSource
from mfollow.preprocess import Role as RoleLiteral
from mfollow.preprocess.pose import ALIGN_DEFAULTS, PoseSource
from mfollow.preprocess.pose import AlignMethod as AlignLiteral
from mfollow.preprocess.pose import Anchor as AnchorLiteral
from mfollow.preprocess.pose import HeightFrom as HeightLiteral
from mfollow.runtime.errors import UsageError

Role = choices("Role", RoleLiteral)
AlignMethod = choices("AlignMethod", AlignLiteral)
PoseBackend = choices("PoseBackend", PoseSource)
HeightFrom = choices("HeightFrom", HeightLiteral)
Anchor = choices("Anchor", AnchorLiteral)
EditMaskBackend = choices("EditMaskBackend", EditMaskSource)
DEFAULT_METHOD = AlignMethod(ALIGN_DEFAULTS["method"])
DEFAULT_HEIGHT = HeightFrom(ALIGN_DEFAULTS["height"])
DEFAULT_ANCHOR = Anchor(ALIGN_DEFAULTS["anchor"])


ForceOpt = Annotated[bool, typer.Option("--force", help="Run the stage even if it is fresh.")]


def _stage_report(report: dict, json_out: bool, quiet: bool) -> None:
    if json_out:
        emit_json(report)
    else:
        stderr_line(f"{report['stage']}: {'cached' if report['cache'] == 'hit' else 'done'}", quiet=quiet)


def pose(
    video: Annotated[Path, typer.Argument(help="The video, folder of frames or image.", metavar="VIDEO")],
    project: ProjectOpt,
    keypoints: Annotated[
        Path | None, typer.Option("--keypoints", help="For --backend file: our JSON or an OpenPose folder.")
    ] = None,
    role: Annotated[Role, typer.Option("--role", help="Which video of the edit this is.")] = Role.source,
    backend: Annotated[
        PoseBackend | None,
        typer.Option("--backend", help="dwpose (default), mediapipe, or file (default with --keypoints)."),
    ] = None,
    weights: Annotated[
        Path | None, typer.Option("--weights", help="Folder searched first for the DWPose models.")
    ] = None,
    person: Annotated[str, typer.Option("--person", help="largest, or the index of the person to keep.")] = "largest",
    preview: Annotated[bool, typer.Option("--preview", help="Also write a rendered preview video.")] = False,
    smooth: Annotated[bool, typer.Option("--smooth", help="Smooth the keypoints over time (One-Euro filter).")] = False,
    force: ForceOpt = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Poses of a video, a folder of frames or an image, cached in the project.

    The stage pose-source (or pose-target with --role target). Example: mfollow pose src.mp4 -p proj
    """
    with guard(debug):
        from mfollow.preprocess.stages import pose_stage

        backend = backend or (PoseBackend.file if keypoints is not None else PoseBackend.dwpose)
        if backend == "file" and keypoints is None:
            raise UsageError("--backend file needs --keypoints FILE_OR_FOLDER")
        if person != "largest" and not person.isdigit():
            raise UsageError(f"--person {person!r}: use 'largest' or a number")
        who = person if person == "largest" else int(person)
        report = pose_stage(
            project, video, role.value, keypoints, backend=backend.value, weights=weights,  # type: ignore[arg-type]
            person=who, preview=preview, smooth=smooth, force=force,
        )  # fmt: skip
        if report.get("missing_frames"):
            frames = report["missing_frames"]
            stderr_line(f"warning: no person in {len(frames)} frame(s), filled: {frames[:20]}", quiet=quiet)
        _stage_report(report, json_out, quiet)


def align(
    project: ProjectOpt,
    method: Annotated[AlignMethod, typer.Option("--method", help="Alignment method.")] = DEFAULT_METHOD,
    height: Annotated[
        HeightFrom, typer.Option("--height", help="Person height from the skeleton or the box.")
    ] = DEFAULT_HEIGHT,
    anchor: Annotated[
        Anchor, typer.Option("--anchor", help="Where the edit person stands (target: where the target stands).")
    ] = DEFAULT_ANCHOR,
    follow_camera: Annotated[
        bool,
        typer.Option(
            "--follow-camera/--no-follow-camera",
            help="Move the edit poses with the source camera's pan, zoom and shake (measured on its background).",
        ),
    ] = ALIGN_DEFAULTS["follow_camera"],  # type: ignore[assignment]
    retarget: Annotated[
        bool,
        typer.Option(
            "--retarget/--no-retarget",
            help="Rebuild the aligned skeleton on the source person's bone lengths.",
        ),
    ] = ALIGN_DEFAULTS["retarget"],  # type: ignore[assignment]
    force: ForceOpt = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Align the target's poses to the source person.

    The stage align; needs both pose stages. Example: mfollow align -p proj
    """
    with guard(debug):
        from mfollow.preprocess.pose.align import AlignSettings
        from mfollow.preprocess.stages import align_stage

        settings = AlignSettings(method.value, height.value, anchor.value, follow_camera, retarget)  # type: ignore[arg-type]
        report = align_stage(project, settings, force=force)
        _stage_report(report, json_out, quiet)


def mask(
    project: ProjectOpt,
    source_masks: Annotated[
        Path | None, typer.Option("--source-masks", help="Folder of source person masks (M_r).")
    ] = None,
    source_video: Annotated[
        Path | None, typer.Option("--source-video", help="Without --source-masks: segment M_r from it (mediapipe).")
    ] = None,
    edit_backend: Annotated[
        EditMaskBackend, typer.Option("--edit-backend", help="M_e: hull, warp, segdit or file.")
    ] = EditMaskBackend.hull,
    target_masks: Annotated[Path | None, typer.Option("--target-masks", help="Target person masks (for warp).")] = None,
    edit_masks: Annotated[Path | None, typer.Option("--edit-masks", help="M_e masks (for file).")] = None,
    preview: Annotated[bool, typer.Option("--preview", help="Also write the masks over the source video.")] = False,
    weights: Annotated[Path | None, typer.Option("--weights", help="Folder searched first for SegDiT weights.")] = None,
    force: ForceOpt = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Person masks M_r and M_e.

    The stage mask; needs the pose and align stages. Example: mfollow mask -p proj
    """
    with guard(debug):
        from mfollow.preprocess.stages import mask_stage

        report = mask_stage(
            project, source_masks=source_masks, source_video=None if source_masks is not None else source_video,
            edit_backend=edit_backend.value, target_masks=target_masks, edit_masks=edit_masks, preview=preview,
            weights_dir=weights, force=force,
        )  # fmt: skip
        _stage_report(report, json_out, quiet)


def register(app: typer.Typer) -> None:
    for command in (pose, align, mask):
        app.command()(command)
