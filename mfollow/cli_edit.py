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


class PresetChoice(StrEnum):
    auto = "auto"
    sd15 = "sd15"
    tiny = "tiny"


class PoseBackendChoice(StrEnum):
    auto = "auto"
    dwpose = "dwpose"
    mediapipe = "mediapipe"


class EditMaskChoice(StrEnum):
    auto = "auto"
    hull = "hull"
    warp = "warp"
    segdit = "segdit"


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
    PresetChoice,
    typer.Option("--preset", help="Network size; auto: sd15 when installed, else the bundled tiny demo model."),
]
PoseBackendOpt = Annotated[
    PoseBackendChoice,
    typer.Option(
        "--pose-backend",
        help="Pose estimator when poses are not given; auto: fresh poses in the project, else DWPose when "
        "installed, else mediapipe.",
    ),
]
EditMaskOpt = Annotated[
    EditMaskChoice,
    typer.Option(
        "--edit-mask-backend",
        help="M_e when masks are not given: hull, warp (needs --target-masks) or segdit; auto: a fresh mask "
        "stage in the project, else hull. M_r: --source-masks, else mediapipe segments the source.",
    ),
]
TargetMasks = Annotated[
    Path | None, typer.Option("--target-masks", help="Folder of target person masks (for --edit-mask-backend warp).")
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
PreviewEvery = Annotated[
    int | None,
    typer.Option(
        "--preview-every", min=1, help="Every K steps, write the clean-frame estimate into PROJECT/preview/ (report)."
    ),
]


def preflight(
    *,
    src: Path,
    tgt: Path | None,
    output: Path,
    options: dict[str, Any],
    long: bool,
    project: Path | None,
    restart: bool,
) -> Path | None:
    """Check every input, option and output of one edit before anything loads (exit 2/4/5 in
    about a second). Returns the project folder the edit will use (None: none needed)."""
    from mfollow import preflight as P
    from mfollow.cli_common import check_device
    from mfollow.errors import UsageError
    from mfollow.project import default_project_dir

    o = options
    if o["size"] is not None and o["size"] % 64:
        raise UsageError(f"--size {o['size']} is not a multiple of 64")
    if o["case"] is not None:
        from mfollow.inputs import case_inputs

        case = case_inputs(o["case"], tgt)
        inputs = [("--case", o["case"]), ("SRC", case.source), *((n, getattr(case, n)) for n in PATH_KEYS[3:7])]
    else:
        P.check_source(src)
        inputs = [("SRC", src)]
    if tgt is not None:
        P.check_video(tgt, "TGT")
        inputs.append(("TGT", tgt))
    for key in PATH_KEYS[3:7]:
        if o[key] is not None:
            P.check_exists(o[key], f"--{key.replace('_', '-')}")
            inputs.append((f"--{key.replace('_', '-')}", o[key]))
    if o.get("target_masks") is not None:
        P.check_exists(o["target_masks"], "--target-masks")
    staged = o["case"] is None and o["source_poses"] is None and o["edit_poses"] is None
    if staged and tgt is None and project is None:
        raise UsageError("no poses given: pass TGT to estimate them, or --source-poses/--edit-poses, or --case DIR")
    if staged:
        from mfollow.prepare import StagePlan

        StagePlan(edit_mask_backend=o["edit_mask_backend"].value, target_masks=o["target_masks"]).check()
    P.check_output(output, inputs)
    needs_project = staged or long or o.get("preview_every") is not None
    if needs_project:
        project = project or default_project_dir(output)
        P.check_project(project)
        if long and not restart:
            P.check_checkpoint(project / "long" / "state.safetensors")
    check_device(o["device"].value)
    return project if needs_project else None


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
    preflighted: bool = False,
) -> dict[str, Any]:
    """Preflight (unless ``preflighted``: then ``project`` is what :func:`preflight` returned),
    run or reuse the stages, then one edit; returns its report (the body of ``edit``, ``long``
    and each ``--batch`` job).

    ``long`` started by ``torchrun`` with several processes spreads its windows over them
    (:mod:`mfollow.distributed`): every rank preflights; rank 0 runs the stages, holds the
    project's lock and checkpoint, prints, and writes the output."""
    from mfollow.distributed import Group, is_main_process, join, launched_world, rank_device

    o = options
    distributed = long and launched_world() > 1
    quiet = quiet or not is_main_process()
    if not preflighted:
        given_project = project
        project = preflight(
            src=src, tgt=tgt, output=output, options=o, long=long, project=project, restart=restart
        )  # fmt: skip
        if project is not None and given_project is None:
            stderr_line(f"project: {project}", quiet=quiet)

    from mfollow.editing import EditInputs, EditSettings, StateStore, case_inputs, run_edit, run_key
    from mfollow.errors import UsageError
    from mfollow.inputs import open_clip
    from mfollow.loading import choose_preset, load_bundle
    from mfollow.models.presets import get_preset
    from mfollow.preview import PREVIEW_DIR, PreviewSettings
    from mfollow.progress import Reporter
    from mfollow.sampling.sampler import SamplerSettings

    group = join(o["device"].value) if distributed else Group()
    device = rank_device(o["device"].value, group)
    if bundle is not None:
        preset = get_preset(bundle[0].preset)
    else:
        preset = get_preset(choose_preset(o["weights"]) if o["preset"] == "auto" else o["preset"].value)
    size = o["size"] or preset.working_size
    guidance_scale = (
        preset.default_guidance_scale(o["guidance"].value) if o["guidance_scale"] is None else o["guidance_scale"]
    )
    cfg = preset.cfg if o["cfg"] is None else o["cfg"]
    prepared: dict[str, Any] = {"stages": {}}
    if o["case"] is not None:
        inputs = case_inputs(o["case"], tgt)
    else:
        given = {k: o[k] for k in ("source_poses", "edit_poses", "source_masks", "edit_masks")}
        if given["source_poses"] is None and given["edit_poses"] is None:
            assert project is not None
            staged, prepared = group.on_main(lambda: _prepare(src, tgt, project, o, quiet))
            given = staged | {k: v for k, v in given.items() if v is not None}
        missing = [f"--{k.replace('_', '-')}" for k, v in given.items() if v is None]
        if missing:
            raise UsageError(
                f"missing {', '.join(missing)}",
                hint="give poses and masks, run 'mfollow pose/align/mask -p DIR' and pass -p DIR, or --case DIR",
            )
        inputs = EditInputs(src, target=tgt, **given)  # type: ignore[arg-type]
    sampler = SamplerSettings(
        steps=o["steps"], cfg=cfg, guidance=o["guidance"].value, guidance_scale=guidance_scale,
        window=o.get("window", 24), overlap=o.get("overlap", 8), blend=o.get("blend", Blend.tent).value,
    )  # fmt: skip
    settings = EditSettings(
        sampler=sampler, seed=o["seed"], short_side=size, start=o["start"], frames=o["frames"],
        max_frames=None if long else o["max_frames"], fit=o["fit"].value, colors=o["pose_colors"].value,
        device=device, dtype=o["dtype"].value, camera=o["camera"], output_size=o["output_size"].value,
        composite=o["composite"], composite_margin=o["composite_margin"],
        preview=None if o.get("preview_every") is None or project is None
        else PreviewSettings(o["preview_every"], project / PREVIEW_DIR),
    )  # fmt: skip
    clip = group.agree(lambda: open_clip(inputs, settings))  # lengths and sizes, before the model loads
    bundled_default = bundle is None and o["preset"] == "auto" and preset.name == "tiny" and o["weights"] is None
    model, weights_id = bundle or group.agree(lambda: load_bundle(preset.name, o["weights"]))
    reporter = Reporter(progress.value, quiet=quiet)
    held: dict[str, Any] = {}
    if long:  # the checkpoint lives in the project; rank 0 alone locks it and writes it
        from mfollow.project import Project

        assert project is not None

        def take() -> None:
            held["lock"] = Project.open(project)  # one writer per project
            held["store"] = StateStore(project / "long" / "state.safetensors", run_key(inputs, settings, weights_id))
            if restart:
                held["store"].clear()

        group.on_main(take)  # rank 0's error (a locked project) ends every rank
    lock, store = held.get("lock"), held.get("store")
    try:
        with reporter.task("long" if long else "edit", o["steps"]) as callback:
            report = run_edit(
                model, inputs, settings, output, store=store, progress=lambda e: callback(e["step"], e["steps"]),
                clip=clip, work_dir=None if project is None or not long else project / "long",
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
        stderr_line(
            "note: made with the bundled tiny demo model (128 px, trained on synthetic puppets only); "
            "for real footage install the sd15 weights (docs/weights.md)",
            quiet=quiet,
        )
    report["stages"] = prepared["stages"]  # cache decisions of the stages this run needed
    report["pose_backend"] = prepared.get("pose_backend")  # None: poses were given
    report["mask_backend"] = prepared.get("mask_backend")
    if project is not None:  # what `mfollow report` shows beside the source
        from mfollow.report.records import record_result

        record_result(project, report)
    return report


def _prepare(
    src: Path, tgt: Path | None, project: Path, o: dict[str, Any], quiet: bool
) -> tuple[dict[str, Path], dict[str, Any]]:
    """The pose, align and mask stages in the project (run, cached or reused)."""
    from mfollow.prepare import StagePlan, prepare_stages

    plan = StagePlan(
        pose_backend=o["pose_backend"].value, edit_mask_backend=o["edit_mask_backend"].value,
        source_masks=o["source_masks"], target_masks=o["target_masks"], weights=o["weights"],
    )  # fmt: skip
    return prepare_stages(project, src, tgt, plan, note=lambda line: stderr_line(line, quiet=quiet))


def run_command(*, json_out: bool, quiet: bool, **kwargs: Any) -> None:
    """``edit`` / ``long``: run and print the report (rank 0 alone under torchrun)."""
    from mfollow.distributed import is_main_process

    report = execute(quiet=quiet, **kwargs)
    if not is_main_process():
        return
    if json_out:
        emit_json(report)
    else:
        stderr_line(f"{report['output']}: {report['frames']} frames, {format_timings(report['timings'])}", quiet=quiet)


def format_timings(timings: dict[str, float]) -> str:
    """``{"prepare": 1.23, "sample": 30.0}`` -> ``prepare 1.2 s, sample 30.0 s``."""
    return ", ".join(f"{name.replace('_', ' and ')} {seconds:.1f} s" for name, seconds in timings.items())


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
    result per job on stdout. Paths in the file are relative to its folder. The whole batch is
    preflighted before the model loads: a job whose output is any job's input or another job's
    output stops the batch (exit 2); a job with a bad input fails alone. Returns 0 if every job
    succeeded, else the first failure's code."""
    from mfollow.distributed import join
    from mfollow.errors import EXIT_INTERNAL, MediaError, MfollowError

    k, n = parse_shard(shard)
    if not jobs_file.is_file():
        raise MediaError(f"{jobs_file}: no such jobs file")
    try:
        lines = jobs_file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise MediaError(f"{jobs_file}: cannot read the jobs file ({exc})") from exc
    jobs: list[dict[str, Any]] = []
    for index, line in enumerate(lines):
        if line.strip():
            try:
                jobs.append({"job": index, **_parse_job(line, index, jobs_file.parent, options)})
            except MfollowError as exc:
                jobs.append({"job": index, "error": exc})
    _check_collisions(jobs)
    mine = [j for j in jobs if j["job"] % n == k - 1]
    group = join(options["device"].value)  # under torchrun the shard's jobs are split over the ranks
    mine = mine[group.rank :: group.world]
    for j in mine:  # every input and output of this shard's jobs, before the model loads
        if "error" not in j:
            try:
                j["project"] = preflight(
                    src=j["src"], tgt=j["paths"]["target"], output=j["paths"]["output"], options=j["options"],
                    long=False, project=None, restart=False,
                )  # fmt: skip
            except MfollowError as exc:
                j["error"] = exc
    bundle_cache = None
    if any("error" not in j for j in mine):
        from mfollow.loading import load_bundle

        bundle_cache = load_bundle(options["preset"].value, options["weights"])  # once for every job
    results = []
    for j in mine:
        result: dict[str, Any] = {"job": j["job"]}
        try:
            if "error" in j:
                raise j["error"]
            report = execute(
                src=j["src"], tgt=j["paths"]["target"], output=j["paths"]["output"], options=j["options"],
                progress=progress, quiet=True, bundle=bundle_cache, project=j["project"], preflighted=True,
            )  # fmt: skip
            result.update(ok=True, **report)
        except MfollowError as exc:
            result.update(ok=False, error=str(exc), exit_code=exc.exit_code)
        except Exception as exc:  # isolate the failure; the batch goes on
            result.update(ok=False, error=f"internal error: {type(exc).__name__}: {exc}", exit_code=EXIT_INTERNAL)
        results.append(result)
        if group.world == 1:  # one process: each line as soon as its job ends
            _print_result(result, quiet)
    if group.world > 1:  # rank 0 prints every rank's lines, in job order
        every = group.gather(results)
        results = sorted((r for part in every or [] for r in part), key=lambda r: r["job"])
        for result in results:
            _print_result(result, quiet)
    code = next((int(r["exit_code"]) for r in results if not r["ok"]), 0)  # the first failure's code
    return group.broadcast(code) if group.world > 1 else code


def _print_result(result: dict[str, Any], quiet: bool) -> None:
    import json
    import sys

    sys.stdout.write(json.dumps(result, sort_keys=True, default=str) + "\n")
    sys.stdout.flush()
    if not result["ok"]:
        stderr_line(f"job {result['job']}: {result['error']}", quiet=quiet)


def _parse_job(line: str, index: int, base: Path, options: dict[str, Any]) -> dict[str, Any]:
    """One line of a jobs file: its paths (relative ones resolved against ``base``, the jobs
    file's folder) and its options (the command's, with the job's overrides)."""
    import json

    from mfollow.errors import UsageError

    try:
        job = json.loads(line)
    except ValueError as exc:
        raise UsageError(f"line {index + 1}: not JSON ({exc})") from None
    if not isinstance(job, dict) or "output" not in job or ("source" not in job and "case" not in job):
        raise UsageError(f"line {index + 1}: a job needs 'output' and 'source' (or 'case')")
    unknown = set(job) - set(PATH_KEYS) - set(VALUE_KEYS)
    if unknown:
        raise UsageError(f"line {index + 1}: unknown job keys: {', '.join(sorted(unknown))}")
    for key in PATH_KEYS:
        if job.get(key) is not None and not isinstance(job[key], str):
            raise UsageError(f"line {index + 1}: '{key}' must be a path string")
    paths = {key: None if job.get(key) is None else base / Path(job[key]).expanduser() for key in PATH_KEYS}
    opts = {**options, **{key: job[key] for key in VALUE_KEYS if key in job}}
    opts.update({key: paths[key] for key in PATH_KEYS[3:]})  # poses, masks, case
    src = paths["source"] or paths["case"]
    return {"paths": paths, "options": opts, "src": src}


def _check_collisions(jobs: list[dict[str, Any]]) -> None:
    """No job may write any job's input or another job's output (all jobs, every shard)."""
    from mfollow.errors import UsageError

    def identity(path: Path) -> tuple[Any, ...]:
        try:
            st = path.stat()
            return ("inode", st.st_dev, st.st_ino)  # symlinks and hard links are the same file
        except OSError:
            return ("path", str(path.resolve()))

    written: dict[tuple[Any, ...], int] = {}
    read: dict[tuple[Any, ...], int] = {}
    for j in jobs:
        if "error" in j:
            continue
        for key, path in j["paths"].items():
            if path is not None and key != "output":
                read.setdefault(identity(path), j["job"])
    for j in jobs:
        if "error" in j:
            continue
        out = j["paths"]["output"]
        ident = identity(out)
        if ident in read:
            raise UsageError(f"job {j['job']}: output {out} is an input of job {read[ident]}; nothing was run")
        if ident in written:
            raise UsageError(
                f"job {j['job']}: output {out} is also the output of job {written[ident]}; nothing was run"
            )
        written[ident] = j["job"]
