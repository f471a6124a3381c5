"""The ``edit`` and ``long`` commands (registered by :mod:`mfollow.cli`): option types and the
shared body. Both parse options into :class:`mfollow.edit.run.EditSettings` and call
:func:`mfollow.edit.run.run_edit`."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mfollow.cli.common import ProgressChoice, emit_json, stderr_line

if TYPE_CHECKING:
    from mfollow.edit.request import EditRequest


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
Steps = Annotated[int | None, typer.Option("--steps", min=1, help="Denoising steps (default: the preset's).")]
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
WarpPersonOpt = Annotated[
    bool | None,
    typer.Option(
        "--warp-person/--no-warp-person",
        help="Paste the source person's own pixels, moved bone by bone into the edit pose, over the model's "
        "drawing of them (docs/editing.md). Default: the model's preset's (on for the bundled tiny model, "
        "off for sd15), off with pose images.",
        show_default=False,
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


def request_of(
    src: Path | None,
    tgt: Path | None,
    output: Path | None,
    options: dict[str, Any],
    long: bool,
    project: Path | None,
    restart: bool,
) -> EditRequest:
    """The command's options as the library's :class:`mfollow.edit.pipeline.EditRequest`."""
    from mfollow.edit.request import EDIT_MAX_FRAMES, EditRequest

    o = options

    def v(x: Any) -> Any:  # an option's choice as the library's plain value
        return getattr(x, "value", x)

    return EditRequest(
        source=src if o["case"] is None else None, target=tgt, output=output,
        source_poses=o["source_poses"], edit_poses=o["edit_poses"], source_masks=o["source_masks"],
        edit_masks=o["edit_masks"], target_masks=o.get("target_masks"), case=o["case"], project=project,
        weights=o["weights"], pose_backend=v(o.get("pose_backend", "auto")),
        edit_mask_backend=v(o.get("edit_mask_backend", "auto")), steps=o["steps"], cfg=o["cfg"],
        guidance=v(o["guidance"]), guidance_scale=o["guidance_scale"], seed=o["seed"], size=o["size"],
        start=o["start"], frames=o["frames"], max_frames=o.get("max_frames", EDIT_MAX_FRAMES), fit=v(o["fit"]),
        pose_colors=v(o["pose_colors"]), camera=o["camera"], output_size=v(o["output_size"]),
        composite=o["composite"], composite_margin=o["composite_margin"], warp_person=o.get("warp_person"),
        preview_every=o.get("preview_every"),
        long=long, window=o.get("window", 24), overlap=o.get("overlap", 8), blend=v(o.get("blend", "tent")),
        restart=restart, device=v(o["device"]), dtype=v(o["dtype"]),
    )  # fmt: skip


def execute(
    *,
    src: Path | None,
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
    """The body of ``edit``, ``long`` and each ``--batch`` job: the options as a request, its
    preflight (unless ``preflighted``: then ``project`` is what the preflight returned), then the
    library's one edit path (:func:`mfollow.edit.pipeline.run_request`); the model is loaded only once
    the inputs are known good. ``long`` under ``torchrun`` spreads its windows over the ranks."""
    from mfollow.edit.pipeline import run_request
    from mfollow.edit.preflight import preflight
    from mfollow.runtime.distributed import is_main_process, join, launched_world
    from mfollow.runtime.progress import Reporter

    quiet = quiet or not is_main_process()
    r = request_of(src, tgt, output, options, long, project, restart)
    if not preflighted:
        project = preflight(r)
    model: Any
    if bundle is not None:
        preset, model = bundle[0].preset, bundle
    else:
        from mfollow.models.loading import check_weights, load_bundle

        # the weights are there (or one line and exit 3) before any preprocessing or model loading
        preset = check_weights("auto" if options["preset"] == "auto" else options["preset"].value, r.weights)
        model = lambda: load_bundle(preset, r.weights)  # noqa: E731  (called once the inputs are checked)
    if not preflighted and project is not None and r.project is None:
        stderr_line(f"project: {project}", quiet=quiet)
    group = join(r.device) if long and launched_world() > 1 else None
    bundled_default = bundle is None and options["preset"] == "auto" and preset == "tiny" and r.weights is None
    from mfollow.models.presets import get_preset

    total = get_preset(preset).sampling_steps(r.steps)
    with Reporter(progress.value, quiet=quiet).task("long" if long else "edit", total) as callback:
        return run_request(
            r, project, preset=preset, model=model, bundled_default=bundled_default,
            note=lambda line: stderr_line(line, quiet=quiet), progress=callback, group=group,
        )  # fmt: skip


def run_command(*, json_out: bool, quiet: bool, **kwargs: Any) -> None:
    """``edit`` / ``long``: run and print the report (rank 0 alone under torchrun)."""
    from mfollow.runtime.distributed import is_main_process

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
    from mfollow.runtime.errors import UsageError

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
    from mfollow.edit.preflight import preflight
    from mfollow.runtime.distributed import join
    from mfollow.runtime.errors import EXIT_INTERNAL, MediaError, MfollowError

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
                request = request_of(j["src"], j["paths"]["target"], j["paths"]["output"], j["options"], False,
                                     None, False)  # fmt: skip
                j["project"] = preflight(request)
            except MfollowError as exc:
                j["error"] = exc
    bundle_cache = None
    if any("error" not in j for j in mine):
        from mfollow.models.loading import load_bundle

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

    from mfollow.runtime.errors import UsageError

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
    from mfollow.runtime.errors import UsageError

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
