"""The ``edit`` and ``long`` commands (registered by :mod:`mfollow.cli`): option types and the
shared body. Both parse options into :class:`mfollow.editing.EditSettings` and call
:func:`mfollow.editing.run_edit`."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from mfollow.cli_common import ProgressChoice, emit_json, stderr_line


class Guidance(StrEnum):
    paper = "paper"
    official = "official"
    none = "none"


class FitChoice(StrEnum):
    trim = "trim"
    loop = "loop"
    hold = "hold"


class Colors(StrEnum):
    official = "official"
    standard = "standard"


class OutputSizeChoice(StrEnum):
    source = "source"
    working = "working"


class Blend(StrEnum):
    tent = "tent"
    mean = "mean"
    ramp = "ramp"


Src = Annotated[Path | None, typer.Argument(help="Source video (or still image, or folder of frames).", metavar="SRC")]
Tgt = Annotated[
    Path | None, typer.Argument(help="Target video (the motion); timing for a still-image source.", metavar="TGT")
]
Out = Annotated[Path | None, typer.Option("--output", "-o", help="Output .mp4.")]
SourcePoses = Annotated[
    Path | None, typer.Option("--source-poses", help="Source poses: keypoint JSON or a folder of pose images.")
]
EditPoses = Annotated[
    Path | None, typer.Option("--edit-poses", help="Edit poses (target motion aligned to the source).")
]
SourceMasks = Annotated[Path | None, typer.Option("--source-masks", help="Folder of source person masks (M_r).")]
EditMasks = Annotated[Path | None, typer.Option("--edit-masks", help="Folder of edit person masks (M_e).")]
Case = Annotated[
    Path | None, typer.Option("--case", help="An official case folder (source_images/, source_poses/, ...).")
]
Preset = Annotated[
    str,
    typer.Option(
        "--preset",
        help="Network size: sd15, tiny, or auto (sd15 when installed, else the bundled tiny demo model).",
    ),
]
Weights = Annotated[Path | None, typer.Option("--weights", help="A model bundle folder, or a weights root for sd15.")]
Steps = Annotated[int, typer.Option("--steps", min=1, help="Denoising steps.")]
Cfg = Annotated[
    float | None,
    typer.Option("--cfg", help="Classifier-free guidance on the CLIP context, 1 = off (default: the preset's)."),
]
GuidanceOpt = Annotated[Guidance, typer.Option("--guidance", help="Consistency guidance: paper, official or none.")]
GuidanceScale = Annotated[
    float | None,
    typer.Option("--guidance-scale", help="Step size of the consistency guidance (default: the preset's, see docs)."),
]
Size = Annotated[
    int | None,
    typer.Option("--size", min=64, help="Working short side, a multiple of 64 (default: sd15 512, tiny 128)."),
]
Start = Annotated[int, typer.Option("--start", min=0, help="First source frame.")]
Frames = Annotated[int | None, typer.Option("--frames", min=1, help="Number of source frames (default: to the end).")]
Fit = Annotated[FitChoice, typer.Option("--fit", help="Edit poses shorter than the source: trim, loop or hold.")]
OutputSize = Annotated[
    OutputSizeChoice,
    typer.Option("--output-size", help="source: the source's size (default); working: the model's size."),
]
CameraOpt = Annotated[bool, typer.Option("--camera", help="Inject the source's background attention (camera motion).")]
CompositeOpt = Annotated[
    bool,
    typer.Option(
        "--composite/--no-composite",
        help="Keep the source's own pixels outside the people (default); --no-composite regenerates every pixel.",
    ),
]
CompositeMargin = Annotated[
    int | None,
    typer.Option(
        "--composite-margin", min=0, help="Band kept from the edit around the people, working px (default: size/64)."
    ),
]
ColorsOpt = Annotated[Colors, typer.Option("--pose-colors", help="Colour order of rendered poses.")]


def execute(
    *,
    src: Path,
    tgt: Path | None,
    output: Path,
    options: dict[str, Any],
    progress: ProgressChoice,
    quiet: bool,
    long: bool = False,
    project: Path | None = None,
    restart: bool = False,
    bundle: tuple[Any, str] | None = None,
) -> dict[str, Any]:
    """Parse options into settings, run one edit, return its report (the body of ``edit``,
    ``long`` and each ``--batch`` job)."""
    from mfollow.cli_common import check_device
    from mfollow.editing import EditInputs, EditSettings, StateStore, case_inputs, run_edit, run_key
    from mfollow.errors import UsageError
    from mfollow.loading import choose_preset, load_bundle
    from mfollow.models.presets import get_preset
    from mfollow.progress import Reporter
    from mfollow.sampling.sampler import SamplerSettings

    o = options
    stage_reports: dict[str, str] = {}
    if o["size"] is not None and o["size"] % 64:
        raise UsageError(f"--size {o['size']} is not a multiple of 64")
    if bundle is not None:
        preset = get_preset(bundle[0].preset)
    else:
        preset = get_preset(choose_preset(o["weights"]) if o["preset"] == "auto" else o["preset"])
    size = o["size"] or preset.working_size
    guidance_scale = (
        preset.default_guidance_scale(o["guidance"].value) if o["guidance_scale"] is None else o["guidance_scale"]
    )
    cfg = preset.cfg if o["cfg"] is None else o["cfg"]
    if o["case"] is not None:
        inputs = case_inputs(o["case"], tgt)
    else:
        given = {k: o[k] for k in ("source_poses", "edit_poses", "source_masks", "edit_masks")}
        if given["source_poses"] is None and given["edit_poses"] is None:
            staged, stage_reports = _run_stages(src, tgt, output, project, o, quiet)
            given = staged | {k: v for k, v in given.items() if v is not None}
        missing = [f"--{k.replace('_', '-')}" for k, v in given.items() if v is None]
        if missing:
            raise UsageError(
                f"missing {', '.join(missing)}",
                hint="give poses and masks, run 'mfollow pose/align/mask -p DIR' and pass -p DIR, or --case DIR",
            )
        inputs = EditInputs(src, target=tgt, **given)  # type: ignore[arg-type]
    check_device(o["device"].value)
    sampler = SamplerSettings(
        steps=o["steps"], cfg=cfg, guidance=o["guidance"].value, guidance_scale=guidance_scale,
        window=o.get("window", 24), overlap=o.get("overlap", 8), blend=o.get("blend", Blend.tent).value,
    )  # fmt: skip
    settings = EditSettings(
        sampler=sampler, seed=o["seed"], short_side=size, start=o["start"], frames=o["frames"],
        max_frames=None if long else o["max_frames"], fit=o["fit"].value, colors=o["pose_colors"].value,
        device=o["device"].value, dtype=o["dtype"].value, camera=o["camera"], output_size=o["output_size"].value,
        composite=o["composite"], composite_margin=o["composite_margin"],
    )  # fmt: skip
    bundled_default = bundle is None and o["preset"] == "auto" and preset.name == "tiny" and o["weights"] is None
    model, weights_id = bundle or load_bundle(preset.name, o["weights"])
    reporter = Reporter(progress.value, quiet=quiet)
    store = None
    lock = None
    if long:  # the checkpoint lives in the project
        from mfollow.project import Project, default_project_dir

        if project is None:
            project = default_project_dir(output)
            stderr_line(f"project: {project}", quiet=quiet)
        lock = Project.open(project)  # one writer per project; the checkpoint lives inside
        store = StateStore(project / "long" / "state.safetensors", run_key(inputs, settings, weights_id))
        if restart:
            store.clear()
    try:
        with reporter.task("long" if long else "edit", o["steps"]) as callback:
            report = run_edit(
                model, inputs, settings, output, store=store, progress=lambda e: callback(e["step"], e["steps"])
            )
    finally:
        if lock is not None:
            lock.close()
    report["weights"] = weights_id
    if bundled_default:  # said after the run, so that an error stays a single line
        stderr_line(
            "note: made with the bundled tiny demo model (128 px, trained on synthetic puppets only); "
            "for real footage install the sd15 weights (docs/weights.md)",
            quiet=quiet,
        )
    report["stages"] = stage_reports  # cache decisions of the stages this run needed
    return report


def _run_stages(
    src: Path, tgt: Path | None, output: Path, project: Path | None, o: dict[str, Any], quiet: bool
) -> tuple[dict[str, Path], dict[str, str]]:
    """Run (or reuse) the pose, align and mask stages in the project: their outputs as inputs, and
    each stage's cache decision."""
    from mfollow.errors import UsageError
    from mfollow.project import default_project_dir
    from mfollow.stages import align_stage, mask_stage, pose_stage, project_inputs

    staged = project_inputs(project) if project is not None else None
    if staged is not None and o["source_masks"] is None:  # fresh stages from earlier commands
        return staged, dict.fromkeys(("pose-source", "pose-target", "align", "mask"), "hit")
    if tgt is None:
        raise UsageError(
            "no poses given: pass TGT to estimate them, or --source-poses/--edit-poses, or --case DIR",
        )
    if project is None:
        project = default_project_dir(output)
        stderr_line(f"project: {project}", quiet=quiet)
    reports = [
        pose_stage(project, src, "source", backend="dwpose", weights=o["weights"]),
        pose_stage(project, tgt, "target", backend="dwpose", weights=o["weights"]),
        align_stage(project),
    ]
    if o["source_masks"] is not None:
        reports.append(mask_stage(project, source_masks=o["source_masks"], edit_backend="hull"))
    else:  # M_r segmented by mediapipe (the optional extra)
        reports.append(mask_stage(project, source_video=src, edit_backend="hull"))
    staged = project_inputs(project)
    assert staged is not None
    return staged, {r["stage"]: r["cache"] for r in reports}


def run_command(*, json_out: bool, quiet: bool, **kwargs: Any) -> None:
    """``edit`` / ``long``: run and print the report."""
    report = execute(quiet=quiet, **kwargs)
    if json_out:
        emit_json(report)
    else:
        stderr_line(f"{report['output']}: {report['frames']} frames, {report['timings']}", quiet=quiet)


PATH_KEYS = ("source", "target", "output", "source_poses", "edit_poses", "source_masks", "edit_masks", "case")
VALUE_KEYS = ("seed", "steps", "cfg", "guidance_scale", "start", "frames")  # per-job overrides


def parse_shard(text: str | None) -> tuple[int, int]:
    """``K/N`` (1 <= K <= N) -> (K, N); None -> (1, 1)."""
    from mfollow.errors import UsageError

    if text is None:
        return 1, 1
    try:
        k, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise UsageError(f"--shard {text!r} is not K/N") from None
    if not 1 <= k <= n:
        raise UsageError(f"--shard {text}: need 1 <= K <= N")
    return k, n


def run_batch(
    jobs_file: Path, shard: str | None, options: dict[str, Any], progress: ProgressChoice, quiet: bool
) -> int:
    """Run every job of a JSON Lines file (this shard's share) with one model; one JSON line of
    result per job on stdout. Returns 0 if every job succeeded, else the first failure's code."""
    import json
    import sys

    from mfollow.errors import EXIT_INTERNAL, EXIT_USAGE, MediaError, MfollowError, UsageError
    from mfollow.loading import load_bundle

    k, n = parse_shard(shard)
    try:
        lines = jobs_file.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise MediaError(f"{jobs_file}: cannot read the jobs file ({exc.strerror or exc})") from exc
    bundle_cache = load_bundle(options["preset"], options["weights"])  # loaded once for every job
    first_failure = 0
    for index, line in enumerate(lines):
        if not line.strip() or index % n != k - 1:
            continue
        result: dict[str, Any] = {"job": index}
        try:
            job = json.loads(line)
            if not isinstance(job, dict) or "output" not in job or ("source" not in job and "case" not in job):
                raise UsageError("a job needs 'output' and 'source' (or 'case')")
            unknown = set(job) - set(PATH_KEYS) - set(VALUE_KEYS)
            if unknown:
                raise UsageError(f"unknown job keys: {', '.join(sorted(unknown))}")
            paths = {key: None if job.get(key) is None else Path(job[key]) for key in PATH_KEYS}
            opts = {**options, **{key: job[key] for key in VALUE_KEYS if key in job}}
            opts.update({key: paths[key] for key in PATH_KEYS[3:]})  # poses, masks, case
            src = paths["source"] or paths["case"]
            assert src is not None and paths["output"] is not None
            report = execute(
                src=src, tgt=paths["target"], output=paths["output"], options=opts,
                progress=progress, quiet=True, bundle=bundle_cache,
            )  # fmt: skip
            result.update(ok=True, **report)
        except MfollowError as exc:
            result.update(ok=False, error=str(exc), exit_code=exc.exit_code)
        except ValueError as exc:  # malformed JSON
            result.update(ok=False, error=f"line {index + 1}: {exc}", exit_code=EXIT_USAGE)
        except Exception as exc:  # isolate the failure; the batch goes on
            result.update(ok=False, error=f"internal error: {type(exc).__name__}: {exc}", exit_code=EXIT_INTERNAL)
        if not result["ok"] and not first_failure:
            first_failure = int(result["exit_code"])
        sys.stdout.write(json.dumps(result, sort_keys=True, default=str) + "\n")
        sys.stdout.flush()
        if not result["ok"]:
            stderr_line(f"job {index}: {result['error']}", quiet=quiet)
    return first_failure
