"""The preflight of an edit: every input, option and output of an :class:`EditRequest` checked
before any stage or model runs (exit 2/4/5 in about a second), the same for the CLI, batch jobs and
the Python API."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from mfollow.edit.request import PATH_FIELDS, EditRequest
from mfollow.runtime.devices import check_device
from mfollow.runtime.errors import UsageError

if TYPE_CHECKING:
    from mfollow.edit.plan import MemoryPlan
    from mfollow.io.video.probe import VideoInfo
    from mfollow.models.presets import Preset


def preflight(r: EditRequest) -> Path | None:
    """Check every input, option and output of one edit before anything loads (exit 2/4/5 in
    about a second). Returns the project folder the edit will use (None: none needed)."""
    from mfollow.io import checks
    from mfollow.preprocess.project import MANIFEST, Project, default_project_dir

    r.check()  # types, ranges, choices and combinations: the same for the CLI, jobs files and the API
    if r.output is None or (r.source is None and r.case is None):
        hint = "mfollow edit SRC TGT -o OUT.mp4, or --batch JOBS"
        raise UsageError("an edit needs SRC (or a case folder) and an output", hint=hint)
    source_info = target_info = None
    if r.case is not None:
        from mfollow.edit.inputs import case_inputs

        case = case_inputs(r.case, r.target)
        inputs = [("--case", r.case), ("SRC", case.source), *((n, getattr(case, n)) for n in PATH_FIELDS)]
    else:
        assert r.source is not None
        source_info = checks.check_source(r.source)
        inputs = [("SRC", r.source)]
    if r.target is not None:
        target_info = checks.check_video(r.target, "TGT")
        inputs.append(("TGT", r.target))
    for key in PATH_FIELDS:
        if getattr(r, key) is not None:
            checks.check_exists(getattr(r, key), f"--{key.replace('_', '-')}")
            inputs.append((f"--{key.replace('_', '-')}", getattr(r, key)))
    if r.target_masks is not None:
        checks.check_exists(r.target_masks, "--target-masks")
    if r.warp_person:  # asked for: the person moves along keypoints, which pose images do not carry
        given = [(key, getattr(r, key)) for key in ("source_poses", "edit_poses")]
        if r.case is not None:
            given += [(key, getattr(case, key)) for key in ("source_poses", "edit_poses")]
        for key, path in given:
            if path is not None and path.is_dir():
                raise UsageError(
                    f"--warp-person moves the person along keypoints; --{key.replace('_', '-')} {path} is a folder "
                    "of pose images",
                    hint="give keypoint JSON poses (mfollow pose / align), or drop --warp-person",
                )
    if r.staged and r.target is None and r.project is None:
        raise UsageError("no poses given: pass TGT to estimate them, or --source-poses/--edit-poses, or --case DIR")
    if r.staged:
        from mfollow.edit.prepare import StagePlan

        StagePlan(edit_mask_backend=r.edit_mask_backend, target_masks=r.target_masks).check()  # type: ignore[arg-type]
    checks.check_output(r.output, inputs)
    n = None if r.long or r.case is not None else _edit_length(r, source_info, target_info)
    if n is not None and n > r.max_frames:  # found here, not after the stages have run
        raise UsageError(
            f"{r.source}: {n} frames is more than one window ({r.max_frames})",
            hint="use 'mfollow long', or pick a range with --start/--frames",
        )
    needs_project = r.staged or r.long or r.preview_every is not None
    project = None
    if needs_project:
        project = r.project or default_project_dir(r.output)
        checks.check_project(project)
        if (project / MANIFEST).exists():
            Project.read(project)  # a corrupt manifest is exit 5 now, not after the stages
        if r.long and not r.restart:
            checks.check_checkpoint(project / "long" / "state.safetensors")
    check_device(r.device)
    return project


def _edit_length(r: EditRequest, source: VideoInfo | None, target: VideoInfo | None) -> int | None:
    """How many frames the edit will have (what :func:`mfollow.edit.inputs.open_clip` will find), from
    the inputs' probes (``source``: None for images) and file counts alone; None where that
    depends on what is not known yet."""
    from mfollow.io.folders import frame_files
    from mfollow.io.media import image_files, is_images, is_still
    from mfollow.preprocess.pose.keypoints import PoseSequence

    assert r.source is not None
    frames = None if target is None else target.frame_count
    if r.edit_poses is not None:  # given; staged ones are made from the target, one per frame
        edit = len(frame_files(r.edit_poses)) if r.edit_poses.is_dir() else len(PoseSequence.load(r.edit_poses))
    else:
        edit = frames if r.staged else None
    if is_still(r.source):  # the photograph stands for every frame of the target (or of the poses)
        n = frames if frames is not None else edit
    elif is_images(r.source):
        n = len(image_files(r.source))
    else:
        assert source is not None
        n = max(0, source.frame_count - r.start)
        n = n if r.frames is None else min(n, r.frames)
    if n is None or r.fit != "trim":
        return n
    if edit is None:
        return None  # trimmed to edit poses whose length is not known yet
    masks = len(frame_files(r.edit_masks)) if r.edit_masks is not None else edit  # staged M_e: one per pose
    return min(n, edit, masks)


def check_memory(r: EditRequest, spec: Preset, device: str | None = None, resident: int = 0) -> MemoryPlan:
    """How the edit runs within its memory (:func:`mfollow.edit.plan.plan_memory`), decided before
    any stage or model: the window is ``--window`` frames for ``long``, else ``--max-frames`` (at
    most the clip's), at the working size; the memory is ``--max-memory`` when given, else what
    ``device`` (default: the request's) has free, plus the ``resident`` bytes a loaded model
    already holds there. Nothing is refused where the free memory cannot be read (the fastest
    plan runs).

    Raises:
        UsageError: when not even the leanest plan fits.
    """
    from mfollow.edit.plan import Footprint, parse_size, plan_memory
    from mfollow.io.media import media_info
    from mfollow.io.video.read import FramePolicy, working_geometry
    from mfollow.runtime.devices import auto_dtype
    from mfollow.runtime.memory import available_bytes

    device = device or r.device
    source = r.source if r.case is None else r.case / "source_images"
    assert source is not None
    info = media_info(source)
    size = r.size or spec.working_size
    geo = working_geometry(info.display_width, info.display_height, FramePolicy(short_side=size))
    frames = r.window if r.long else r.max_frames
    if info.frame_count > 1:  # a video or a folder of frames (a still stands for the target's length)
        frames = max(1, min(frames, info.frame_count - r.start))
    window = Footprint(
        frames, geo.width, geo.height, auto_dtype(device) if r.dtype == "auto" else r.dtype,
        guided=r.guidance != "none", cfg=(spec.cfg if r.cfg is None else r.cfg) != 1.0,
        kind=device.split(":")[0],
    )  # fmt: skip
    free = available_bytes(device)
    budget = parse_size(r.max_memory) if r.max_memory is not None else None if free is None else free + resident
    where = "--max-memory" if r.max_memory is not None else f"free on {device}"
    return plan_memory(spec, window, budget, offload=r.offload, where=where, option=f"--size {size}")
