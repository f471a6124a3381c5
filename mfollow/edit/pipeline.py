"""``MotionFollowerPipeline``: the one edit path that Python users and the CLI share (diffusers style).

    from mfollow import MotionFollowerPipeline

    pipe = MotionFollowerPipeline.from_pretrained()          # what `--preset auto` picks
    report = pipe("src.mp4", "tgt.mp4", output="out.mp4", steps=25)
    report = pipe("src.mp4", "tgt.mp4", output="long.mp4", long=True, window=24, overlap=8)

A call takes the CLI's defaults (:class:`EditRequest`), runs (or reuses) the pose, align and mask
stages in the project when poses and masks are not given, preflights every input and output before
any work, and returns the report that ``mfollow edit --json`` prints. It raises the typed errors of
:mod:`mfollow.runtime.errors` and never exits; messages go to ``note``, progress to ``progress``
(by default a display on stderr).
``mfollow edit`` and ``mfollow long`` build an :class:`EditRequest` and call :func:`preflight` and
:meth:`MotionFollowerPipeline.run`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import asdict, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from mfollow.edit.plan import resident_bytes
from mfollow.edit.preflight import check_memory, preflight
from mfollow.edit.prepare import StagePlan, prepare_stages
from mfollow.edit.request import PATH_FIELDS, PATH_OPTIONS, EditRequest
from mfollow.models.presets import PRESETS, get_preset
from mfollow.runtime.devices import check_device
from mfollow.runtime.errors import UsageError

if TYPE_CHECKING:
    pass

Note = Callable[[str], None]
Progress = Callable[[int, int], None]


def _bundled(component: str, weights: Path | None) -> bool:
    """Whether ``component`` is found only among the weights shipped in the package."""
    from mfollow.weights.registry import locate

    return locate(component, weights).origin == "bundled"


def _notes(r: EditRequest, report: dict[str, Any], clip: Any) -> list[str]:
    """What the output is not that a user would expect: source frames dropped by ``--fit trim``,
    a size padded to even sides. Said on stderr; the report holds the figures."""
    notes = []
    n, m = report["frames"], report["source_frames"]
    if n < m:
        notes.append(
            f"note: the output has {n} of the source's {m} frames: the edit poses or masks have {n} (--fit trim); "
            "--fit loop or --fit hold keeps every source frame"
        )
    geo = clip.geometry
    if r.output_size == "source" and report["size"] != [geo.src_w, geo.src_h]:
        notes.append(
            f"note: written at {report['size'][0]}x{report['size'][1]}: the source's {geo.src_w}x{geo.src_h} padded "
            "by repeating its last row or column (H.264 needs even sides)"
        )
    return notes


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
        dtype: str = "auto",
    ) -> None:
        self.bundle, self.weights_id, self.weights, self.bundled_default = bundle, weights_id, weights, bundled_default
        self.device, self.dtype = device, dtype

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path | None = None,
        *,
        device: str = "cpu",
        dtype: str = "auto",
        revision: str | None = None,
        offline: bool | None = None,
    ) -> MotionFollowerPipeline:
        """Load a model: ``None`` (what ``--preset auto`` picks: sd15 when installed, else the
        bundled tiny model), a preset name (``sd15``, ``tiny``), a folder (a model bundle, or a
        weights root holding the sd15 components), or a Hugging Face Hub repository ``org/name``
        holding a bundle (at ``revision``; through the Hub cache, which alone is read when
        ``offline`` or ``HF_HUB_OFFLINE=1``: :mod:`mfollow.weights.hub`). ``device``/``dtype`` are
        the defaults of calls.

        Raises:
            UsageError: an unknown device or dtype.
            WeightsError: the weights are not installed, not on the Hub (or not cached offline),
                or do not match.
        """
        from mfollow.edit.request import EditRequest
        from mfollow.models.loading import choose_preset, load_bundle
        from mfollow.weights.hub import is_repo_id, snapshot

        EditRequest(device=device, dtype=dtype).check()  # type: ignore[arg-type]  # the calls' defaults
        check_device(device)
        weights = None
        if name_or_path is None:
            preset = "auto"
        elif str(name_or_path) in PRESETS:
            preset = str(name_or_path)
        else:
            name = str(name_or_path)
            weights = snapshot(name, revision=revision, offline=offline) if is_repo_id(name) else Path(name_or_path)
            preset = choose_preset(weights)
        bundled_default = name_or_path is None and choose_preset(None) == "tiny"
        bundle, weights_id = load_bundle(preset, weights)
        return cls(bundle, weights_id, weights=weights, bundled_default=bundled_default, device=device, dtype=dtype)

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write the model as a bundle folder (the diffusers layout of :mod:`mfollow.weights.hub`),
        which :meth:`from_pretrained` loads from the folder, or from the Hub once uploaded
        (``hf upload org/name DIRECTORY``). Returns the folder."""
        directory = Path(directory)
        self.bundle.save_pretrained(directory)
        return directory

    def __call__(
        self,
        source: str | Path | None = None,
        target: str | Path | None = None,
        output: str | Path | None = None,
        *,
        note: Note | None = None,
        progress: Progress | Literal["auto"] | None = "auto",
        **options: Any,
    ) -> dict[str, Any]:
        """Edit ``source`` to follow ``target``'s motion into ``output``; ``options`` are the
        :class:`EditRequest` fields (``steps``, ``size``, ``source_poses``, ``project``, ``long`` ...).
        ``progress``: ``"auto"`` shows the denoising steps on stderr (a bar on a terminal, lines
        otherwise), a callable receives ``(done, total)``, None shows nothing. Returns the report
        (what ``--json`` prints)."""
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
        spec = get_preset(self.bundle.preset)
        check_memory(request, spec, resident=resident_bytes(self.bundle, self.device))
        if progress != "auto":
            return self.run(request, project, note=note, progress=progress)  # type: ignore[arg-type]
        from mfollow.runtime.progress import Reporter

        with Reporter("auto").task("long" if request.long else "edit", request.sampling_steps(spec)) as callback:
            return self.run(request, project, note=note, progress=callback)

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
        torchrun process group of a ``long`` over several processes (:mod:`mfollow.runtime.distributed`)."""
        return run_request(
            r, project, preset=self.bundle.preset, model=(self.bundle, self.weights_id),
            bundled_default=self.bundled_default, note=note, progress=progress, group=group,
        )  # fmt: skip


@contextlib.contextmanager
def _holding(project: Path | None, group: Any) -> Iterator[None]:
    """Hold ``project`` (its lock) on rank 0 while the edit runs: one writer for the stages, the
    run and the result. Under torchrun the ranks first agree, so that no rank is still in its
    preflight's probe of the folder when rank 0 creates it."""
    from mfollow.preprocess.project import Project
    from mfollow.runtime.distributed import Group

    held: dict[str, Any] = {}
    if project is not None:
        g = group or Group()
        if g.world > 1:
            g.agree(lambda: None)
        g.on_main(lambda: held.update(project=Project.open(project)))
    try:
        yield
    finally:
        if "project" in held:
            held["project"].close()


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
    and its identity, or a loader called once the inputs are known good), the project held and the
    checkpoint, the run. ``preset``: the model's preset (its size, CFG and guidance defaults)."""
    with _holding(project, group):
        from mfollow.edit.forecast import forecast, is_synthetic_pair
        from mfollow.edit.inputs import EditInputs, case_inputs, open_clip
        from mfollow.edit.preview import PREVIEW_DIR
        from mfollow.edit.resume import StateStore, run_key
        from mfollow.edit.run import run_edit
        from mfollow.runtime.distributed import Group, rank_device

        say = note or (lambda _: None)
        distributed = group is not None and group.world > 1
        group = group or Group()
        device = rank_device(r.device, group)
        spec = get_preset(preset)
        prepared: dict[str, Any] = {"stages": {}}
        if r.case is not None:
            inputs = case_inputs(r.case, r.target)
        else:
            given = {k: getattr(r, k) for k in PATH_FIELDS}
            if r.staged:
                assert project is not None and r.source is not None
                staged, prepared = group.on_main(lambda: _prepare(r, project, say, spec))
                given = staged | {k: v for k, v in given.items() if v is not None}
            missing = [f"--{k.replace('_', '-')}" for k, v in given.items() if v is None]
            if missing:
                raise UsageError(
                    f"missing {', '.join(missing)}",
                    hint="give poses and masks, run 'mfollow pose/align/mask -p DIR' and pass -p DIR, or --case DIR",
                )
            inputs = EditInputs(r.source, target=r.target, **given)  # type: ignore[arg-type]
        preview = None if r.preview_every is None or project is None else project / PREVIEW_DIR
        # the preflight's plan (with what a loaded model already holds on the device), rank 0's for
        # every rank: the same choices give the same bits for any number of ranks
        held_there = resident_bytes(model[0], device) if isinstance(model, tuple) else 0
        plan = group.on_main(lambda: check_memory(r, spec, str(device), resident=held_there))
        settings = r.settings(spec, inputs, device, preview, plan)
        clip = group.agree(lambda: open_clip(inputs, settings))  # lengths and sizes, before the model loads
        puppet_segdit = (prepared.get("mask_backend") or {}).get("edit") == "segdit" and _bundled("segdit", r.weights)
        warnings = (
            forecast(clip, bundled_model=bundled_default, puppet_segdit=puppet_segdit, source=r.source)
            if group.main
            else []
        )
        for line in warnings:  # before the sampling, so that a doomed edit can be stopped
            say(f"warning: {line}")
        bundle, weights_id = model if isinstance(model, tuple) else group.agree(model)
        held: dict[str, Any] = {}
        if r.long:  # the checkpoint lives in the project; rank 0 alone writes it
            assert project is not None

            def take() -> None:
                held["store"] = StateStore(
                    project / "long" / "state.safetensors", run_key(inputs, settings, weights_id)
                )
                if r.restart:
                    held["store"].clear()

            group.on_main(take)  # rank 0's error ends every rank
        report = run_edit(
            bundle, inputs, settings, r.output,  # type: ignore[arg-type]
            store=held.get("store"), progress=None if progress is None else (lambda e: progress(e["step"], e["steps"])),
            clip=clip, work_dir=None if project is None or not r.long else project / "long",
            group=group if distributed else None,
        )  # fmt: skip
        if not group.main:
            return report
        report["exchange"] = {"bytes_sent": group.exchanged, "bytes_gathered": group.gathered} if distributed else None
        report["weights"] = weights_id
        report["memory_plan"] = asdict(plan)  # checkpointing, offload, batched passes, decode chunk; bytes
        report["weights_source"] = bundle.source  # the folder(s) the model was loaded from
        if bundled_default and is_synthetic_pair(r.source):  # on real footage the forecast warned already
            say(
                "note: made with the bundled tiny demo model (128 px, trained on synthetic puppets only); "
                "for real footage install the sd15 weights (docs/weights.md)"
            )
        for line in _notes(r, report, clip):
            say(line)
        report["warnings"] = warnings
        report["stages"] = prepared["stages"]  # cache decisions of the stages this run needed
        report["pose_backend"] = prepared.get("pose_backend")  # None: poses were given
        report["mask_backend"] = prepared.get("mask_backend")
        if project is not None:  # what `mfollow report` shows beside the source
            from mfollow.report.records import record_result

            record_result(project, report)
        return report


def _prepare(r: EditRequest, project: Path, note: Note, spec: Any) -> tuple[dict[str, Path], dict[str, Any]]:
    """The pose, align and mask stages in the project (run, cached or reused); the alignment the
    model's preset asks for (``spec.align``)."""

    plan = StagePlan(
        pose_backend=r.pose_backend, edit_mask_backend=r.edit_mask_backend, align=spec.align,  # type: ignore[arg-type]
        source_masks=r.source_masks, target_masks=r.target_masks, weights=r.weights,
    )  # fmt: skip
    return prepare_stages(project, r.source, r.target, plan, note=note)  # type: ignore[arg-type]
