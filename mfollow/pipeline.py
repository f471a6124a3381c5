"""``MotionFollowerPipeline``: the one edit path that Python users and the CLI share (diffusers style).

    from mfollow import MotionFollowerPipeline

    pipe = MotionFollowerPipeline.from_pretrained()          # what `--preset auto` picks
    report = pipe("src.mp4", "tgt.mp4", output="out.mp4", steps=25)
    report = pipe("src.mp4", "tgt.mp4", output="long.mp4", long=True, window=24, overlap=8)

A call takes the CLI's defaults (:class:`EditRequest`), runs (or reuses) the pose, align and mask
stages in the project when poses and masks are not given, preflights every input and output before
any work, and returns the report that ``mfollow edit --json`` prints. It raises the typed errors of
:mod:`mfollow.errors`; it never prints or exits (messages go to ``note``, progress to ``progress``).
``mfollow edit`` and ``mfollow long`` build an :class:`EditRequest` and call :func:`preflight` and
:meth:`MotionFollowerPipeline.run`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mfollow.errors import UsageError

if TYPE_CHECKING:
    from mfollow.editing import EditInputs
    from mfollow.models.presets import Preset
    from mfollow.video.probe import VideoInfo

Note = Callable[[str], None]
Progress = Callable[[int, int], None]

EDIT_MAX_FRAMES = 24  # `edit` works in one window of at most this many frames


@dataclass(frozen=True)
class EditRequest:
    """One edit, as the CLI's options describe it (the defaults are the CLI's)."""

    source: Path | None = None  # a video, a still image or a folder of frames (None with ``case``)
    target: Path | None = None  # the motion video
    output: Path | None = None  # the .mp4 to write
    source_poses: Path | None = None
    edit_poses: Path | None = None
    source_masks: Path | None = None
    edit_masks: Path | None = None
    target_masks: Path | None = None  # for edit_mask_backend "warp"
    case: Path | None = None  # an official case folder
    project: Path | None = None  # default: OUTPUT.mfollow when one is needed
    weights: Path | None = None  # the folder searched first for DWPose and SegDiT (and, in the CLI, the model)
    pose_backend: str = "auto"
    edit_mask_backend: str = "auto"
    steps: int | None = None  # None: the preset's
    cfg: float | None = None  # None: the preset's
    guidance: str = "paper"
    guidance_scale: float | None = None  # None: the preset's
    seed: int = 0
    size: int | None = None  # working short side; None: the preset's
    start: int = 0
    frames: int | None = None
    max_frames: int = EDIT_MAX_FRAMES  # `edit` only
    fit: str = "trim"
    pose_colors: str = "official"
    camera: bool = False
    output_size: str = "source"
    composite: bool = True
    composite_margin: int | None = None
    # the source person's own pixels moved into the edit pose (mfollow.pose.warp); None: the preset's
    # default where both poses are keypoints (off with pose images, which carry none)
    warp_person: bool | None = None
    preview_every: int | None = None
    long: bool = False  # overlapping windows over any length (resumable)
    window: int = 24
    overlap: int = 8
    blend: str = "tent"
    restart: bool = False  # long: discard a checkpoint
    device: str = "cpu"
    dtype: str = "float32"

    @property
    def staged(self) -> bool:
        """Poses come from the project's stages (not given, no case folder)."""
        return self.case is None and self.source_poses is None and self.edit_poses is None


PATH_FIELDS = ("source_poses", "edit_poses", "source_masks", "edit_masks")
PATH_OPTIONS = (*PATH_FIELDS, "target_masks", "case", "project", "weights")


def preflight(r: EditRequest) -> Path | None:
    """Check every input, option and output of one edit before anything loads (exit 2/4/5 in
    about a second). Returns the project folder the edit will use (None: none needed)."""
    from mfollow import preflight as P
    from mfollow.devices import check_device
    from mfollow.project import default_project_dir

    if r.output is None or (r.source is None and r.case is None):
        raise UsageError("an edit needs SRC (or a case folder) and an output")
    if r.size is not None and r.size % 64:
        raise UsageError(f"--size {r.size} is not a multiple of 64")
    if r.long and r.overlap >= r.window:
        raise UsageError(f"--overlap {r.overlap} must be smaller than --window {r.window}")
    source_info = target_info = None
    if r.case is not None:
        from mfollow.inputs import case_inputs

        case = case_inputs(r.case, r.target)
        inputs = [("--case", r.case), ("SRC", case.source), *((n, getattr(case, n)) for n in PATH_FIELDS)]
    else:
        assert r.source is not None
        source_info = P.check_source(r.source)
        inputs = [("SRC", r.source)]
    if r.target is not None:
        target_info = P.check_video(r.target, "TGT")
        inputs.append(("TGT", r.target))
    for key in PATH_FIELDS:
        if getattr(r, key) is not None:
            P.check_exists(getattr(r, key), f"--{key.replace('_', '-')}")
            inputs.append((f"--{key.replace('_', '-')}", getattr(r, key)))
    if r.target_masks is not None:
        P.check_exists(r.target_masks, "--target-masks")
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
        from mfollow.prepare import StagePlan

        StagePlan(edit_mask_backend=r.edit_mask_backend, target_masks=r.target_masks).check()  # type: ignore[arg-type]
    P.check_output(r.output, inputs)
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
        P.check_project(project)
        if r.long and not r.restart:
            P.check_checkpoint(project / "long" / "state.safetensors")
    check_device(r.device)
    return project


def _warp_person(r: EditRequest, spec: Preset, inputs: EditInputs) -> bool:
    """``--warp-person`` as given, else the preset's default where both poses are keypoint files
    (a folder of pose images carries no keypoints to move the person along)."""
    if r.warp_person is not None:
        return r.warp_person
    return spec.warp_person and not any(Path(p).is_dir() for p in (inputs.source_poses, inputs.edit_poses))


def _edit_length(r: EditRequest, source: VideoInfo | None, target: VideoInfo | None) -> int | None:
    """How many frames the edit will have (what :func:`mfollow.inputs.open_clip` will find), from
    the inputs' probes (``source``: None for images) and file counts alone; None where that
    depends on what is not known yet."""
    from mfollow.folders import frame_files
    from mfollow.media import image_files, is_images, is_still
    from mfollow.pose.keypoints import PoseSequence

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


class MotionFollowerPipeline:
    """A loaded model bundle and how to run edits with it (see the module docstring)."""

    def __init__(
        self,
        bundle: Any,
        weights_id: str,
        *,
        weights: Path | None = None,
        bundled_default: bool = False,
        device: str = "cpu",
        dtype: str = "float32",
    ) -> None:
        self.bundle, self.weights_id, self.weights, self.bundled_default = bundle, weights_id, weights, bundled_default
        self.device, self.dtype = device, dtype

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path | None = None,
        *,
        device: str = "cpu",
        dtype: str = "float32",
    ) -> MotionFollowerPipeline:
        """Load a model: ``None`` (what ``--preset auto`` picks: sd15 when installed, else the
        bundled tiny model), a preset name (``sd15``, ``tiny``), or a folder (a model bundle, or a
        weights root holding the sd15 components). ``device``/``dtype`` are the defaults of calls.

        Raises:
            WeightsError: the weights are not installed or do not match.
        """
        from mfollow.devices import check_device
        from mfollow.loading import choose_preset, load_bundle
        from mfollow.models.presets import PRESETS

        check_device(device)
        weights = None
        if name_or_path is None:
            preset = "auto"
        elif str(name_or_path) in PRESETS:
            preset = str(name_or_path)
        else:
            weights = Path(name_or_path)
            preset = choose_preset(weights)
        bundled_default = name_or_path is None and choose_preset(None) == "tiny"
        bundle, weights_id = load_bundle(preset, weights)
        return cls(bundle, weights_id, weights=weights, bundled_default=bundled_default, device=device, dtype=dtype)

    def __call__(
        self,
        source: str | Path | None = None,
        target: str | Path | None = None,
        output: str | Path | None = None,
        *,
        note: Note | None = None,
        progress: Progress | None = None,
        **options: Any,
    ) -> dict[str, Any]:
        """Edit ``source`` to follow ``target``'s motion into ``output``; ``options`` are the
        :class:`EditRequest` fields (``steps``, ``size``, ``source_poses``, ``project``, ``long`` ...).
        Returns the report (what ``--json`` prints)."""
        known = {f.name for f in fields(EditRequest)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise UsageError(f"unknown edit option(s): {', '.join(unknown)}")
        paths = {k: Path(v) for k, v in options.items() if k in PATH_OPTIONS and isinstance(v, str)}
        request = EditRequest(
            source=None if source is None else Path(source), target=None if target is None else Path(target),
            output=None if output is None else Path(output),
            **{"device": self.device, "dtype": self.dtype, "weights": self.weights, **options, **paths},
        )  # fmt: skip
        project = preflight(request)
        return self.run(request, project, note=note, progress=progress)

    def run(
        self,
        r: EditRequest,
        project: Path | None,
        *,
        note: Note | None = None,
        progress: Progress | None = None,
        group: Any = None,
    ) -> dict[str, Any]:
        """Run a preflighted request (``project``: what :func:`preflight` returned). ``group``: the
        torchrun process group of a ``long`` over several processes (:mod:`mfollow.distributed`)."""
        return run_request(
            r, project, preset=self.bundle.preset, model=(self.bundle, self.weights_id),
            bundled_default=self.bundled_default, note=note, progress=progress, group=group,
        )  # fmt: skip


def run_request(
    r: EditRequest,
    project: Path | None,
    *,
    preset: str,
    model: tuple[Any, str] | Callable[[], tuple[Any, str]],
    bundled_default: bool = False,
    note: Note | None = None,
    progress: Progress | None = None,
    group: Any = None,
) -> dict[str, Any]:
    """The body of every edit: stages, settings, inputs, the model (``model``: the loaded bundle
    and its identity, or a loader called once the inputs are known good), lock and checkpoint,
    the run. ``preset``: the model's preset (its size, CFG and guidance defaults)."""
    from mfollow.distributed import Group, rank_device
    from mfollow.editing import EditInputs, EditSettings, StateStore, case_inputs, run_edit, run_key
    from mfollow.inputs import open_clip
    from mfollow.models.presets import get_preset
    from mfollow.preview import PREVIEW_DIR, PreviewSettings
    from mfollow.sampling.sampler import SamplerSettings

    say = note or (lambda _: None)
    distributed = group is not None and group.world > 1
    group = group or Group()
    device = rank_device(r.device, group)
    spec = get_preset(preset)
    size = r.size or spec.working_size
    guidance_scale = spec.default_guidance_scale(r.guidance) if r.guidance_scale is None else r.guidance_scale
    cfg = spec.cfg if r.cfg is None else r.cfg
    prepared: dict[str, Any] = {"stages": {}}
    if r.case is not None:
        inputs = case_inputs(r.case, r.target)
    else:
        given = {k: getattr(r, k) for k in PATH_FIELDS}
        if r.staged:
            assert project is not None and r.source is not None
            staged, prepared = group.on_main(lambda: _prepare(r, project, say))
            given = staged | {k: v for k, v in given.items() if v is not None}
        missing = [f"--{k.replace('_', '-')}" for k, v in given.items() if v is None]
        if missing:
            raise UsageError(
                f"missing {', '.join(missing)}",
                hint="give poses and masks, run 'mfollow pose/align/mask -p DIR' and pass -p DIR, or --case DIR",
            )
        inputs = EditInputs(r.source, target=r.target, **given)  # type: ignore[arg-type]
    sampler = SamplerSettings(
        steps=spec.sampling_steps(r.steps), cfg=cfg, guidance=r.guidance, guidance_scale=guidance_scale,  # type: ignore[arg-type]
        window=r.window, overlap=r.overlap, blend=r.blend,  # type: ignore[arg-type]
    )  # fmt: skip
    settings = EditSettings(
        sampler=sampler, seed=r.seed, short_side=size, start=r.start, frames=r.frames,
        max_frames=None if r.long else r.max_frames, fit=r.fit, colors=r.pose_colors,  # type: ignore[arg-type]
        device=device, dtype=r.dtype, camera=r.camera, output_size=r.output_size,  # type: ignore[arg-type]
        composite=r.composite, composite_margin=r.composite_margin, warp_person=_warp_person(r, spec, inputs),
        preview=None if r.preview_every is None or project is None
        else PreviewSettings(r.preview_every, project / PREVIEW_DIR),
    )  # fmt: skip
    clip = group.agree(lambda: open_clip(inputs, settings))  # lengths and sizes, before the model loads
    bundle, weights_id = model if isinstance(model, tuple) else group.agree(model)
    held: dict[str, Any] = {}
    if r.long:  # the checkpoint lives in the project; rank 0 alone locks it and writes it
        from mfollow.project import Project

        assert project is not None

        def take() -> None:
            held["lock"] = Project.open(project)  # one writer per project
            held["store"] = StateStore(project / "long" / "state.safetensors", run_key(inputs, settings, weights_id))
            if r.restart:
                held["store"].clear()

        group.on_main(take)  # rank 0's error (a locked project) ends every rank
    lock, store = held.get("lock"), held.get("store")
    try:
        report = run_edit(
            bundle, inputs, settings, r.output,  # type: ignore[arg-type]
            store=store, progress=None if progress is None else (lambda e: progress(e["step"], e["steps"])),
            clip=clip, work_dir=None if project is None or not r.long else project / "long",
            group=group if distributed else None,
        )  # fmt: skip
    finally:
        if lock is not None:
            lock.close()
    if not group.main:
        return report
    report["exchange"] = {"bytes_sent": group.exchanged, "bytes_gathered": group.gathered} if distributed else None
    report["weights"] = weights_id
    if bundled_default:  # said after the run, so that an error stays a single line
        say(
            "note: made with the bundled tiny demo model (128 px, trained on synthetic puppets only); "
            "for real footage install the sd15 weights (docs/weights.md)"
        )
    report["stages"] = prepared["stages"]  # cache decisions of the stages this run needed
    report["pose_backend"] = prepared.get("pose_backend")  # None: poses were given
    report["mask_backend"] = prepared.get("mask_backend")
    if project is not None:  # what `mfollow report` shows beside the source
        from mfollow.report.records import record_result

        record_result(project, report)
    return report


def _prepare(r: EditRequest, project: Path, note: Note) -> tuple[dict[str, Path], dict[str, Any]]:
    """The pose, align and mask stages in the project (run, cached or reused)."""
    from mfollow.prepare import StagePlan, prepare_stages

    plan = StagePlan(
        pose_backend=r.pose_backend, edit_mask_backend=r.edit_mask_backend,  # type: ignore[arg-type]
        source_masks=r.source_masks, target_masks=r.target_masks, weights=r.weights,
    )  # fmt: skip
    return prepare_stages(project, r.source, r.target, plan, note=note)  # type: ignore[arg-type]
