"""The ``edit`` and ``long`` commands: one option definition for both, parsed into the library's
:class:`mfollow.edit.request.EditRequest` (whose defaults are the options' defaults) and run by the
library's one edit path (:func:`mfollow.edit.batch.execute`, :func:`mfollow.edit.batch.run_batch`).

The option types' choices are built from the library's choice sets (``Literal`` types), so a choice
is defined once, in the layer it belongs to.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Annotated, Any

import typer

from mfollow.cli.common import (
    DebugOpt,
    DeviceChoice,
    DeviceOpt,
    DtypeChoice,
    DtypeOpt,
    JsonOpt,
    ProgressChoice,
    ProgressOpt,
    QuietOpt,
    SeedOpt,
    choices,
    emit_json,
    guard,
    renamed,
    stderr_line,
)
from mfollow.edit.choices import EditMaskChoice, Noise, OutputSize, PresetChoice
from mfollow.edit.choices import Fit as FitLiteral
from mfollow.edit.request import EditRequest
from mfollow.preprocess.pose import ColorOrder
from mfollow.preprocess.pose.backends import PoseChoice
from mfollow.runtime.errors import UsageError
from mfollow.sampling import BlendScheme, GuidanceMode

Guidance = choices("Guidance", GuidanceMode)
FitChoice = choices("FitChoice", FitLiteral)
Colors = choices("Colors", ColorOrder)
OutputSizeChoice = choices("OutputSizeChoice", OutputSize)
Preset = choices("Preset", PresetChoice)
PoseBackendChoice = choices("PoseBackendChoice", PoseChoice)
EditMask = choices("EditMask", EditMaskChoice)
Blend = choices("Blend", BlendScheme)
NoiseChoice = choices("NoiseChoice", Noise)

DEFAULT = EditRequest()  # the one place of every option's default

GuidanceOpt = Annotated[Guidance, typer.Option("--guidance", help="Consistency guidance: paper, official or none.")]  # type: ignore[valid-type]
GuidanceScale = Annotated[
    float | None,
    typer.Option(
        "--guidance-step", help="Step size of the consistency guidance (default: the preset's, see docs/method.md)."
    ),
]
# the old spelling, hidden (diffusers' guidance_scale is the CFG weight: ours is --cfg)
GuidanceScaleAlias = Annotated[float | None, typer.Option("--guidance-scale", hidden=True)]


def guidance_step(step: float | None, old_spelling: float | None) -> float | None:
    """``--guidance-step``, or its old spelling ``--guidance-scale`` (not both)."""
    return renamed(step, old_spelling, option="--guidance-step", old="--guidance-scale")


def _option(name: str, annotation: Any, default: Any) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default, annotation=annotation)


def _choice(enum: Any, value: Any) -> Any:
    return None if value is None else enum(value)


#: The options ``edit`` and ``long`` share, in help order; each default is EditRequest's.
SHARED = [
    _option("src", Annotated[Path | None, typer.Argument(help="Source video (or still image, or folder of frames).",
                                                         metavar="SRC")], None),
    _option("tgt", Annotated[Path | None, typer.Argument(
        help="Target video (the motion); timing for a still-image source.", metavar="TGT")], None),
    _option("output", Annotated[Path | None, typer.Option(
        "--output", "-o", help="Output .mp4, or a folder of PNG frames (a name without a suffix).")], None),
    _option("project", Annotated[Path | None, typer.Option(
        "--project", "-p", help="Project folder: the cached pose, align and mask stages, and long's checkpoint.")],
        None),
    _option("source_poses", Annotated[Path | None, typer.Option(
        "--source-poses", help="Source poses: keypoint JSON or a folder of pose images.")], None),
    _option("edit_poses", Annotated[Path | None, typer.Option(
        "--edit-poses", help="Edit poses (target motion aligned to the source).")], None),
    _option("source_masks", Annotated[Path | None, typer.Option(
        "--source-masks", help="Folder of source person masks (M_r).")], None),
    _option("edit_masks", Annotated[Path | None, typer.Option(
        "--edit-masks", help="Folder of edit person masks (M_e).")], None),
    _option("pose_backend", Annotated[PoseBackendChoice, typer.Option(  # type: ignore[valid-type]
        "--pose-backend", help="Pose estimator when poses are not given; auto: fresh poses in the project, else "
        "DWPose when installed, else mediapipe.")], PoseBackendChoice(DEFAULT.pose_backend)),
    _option("edit_mask_backend", Annotated[EditMask, typer.Option(  # type: ignore[valid-type]
        "--edit-mask-backend", help="M_e when masks are not given: hull, warp (needs --target-masks) or segdit; "
        "auto: a fresh mask stage in the project, else the target's silhouette (mediapipe) moved by the alignment "
        "(warp), else hull. M_r: --source-masks, else mediapipe segments the "
        "source.")], EditMask(DEFAULT.edit_mask_backend)),
    _option("target_masks", Annotated[Path | None, typer.Option(
        "--target-masks", help="Folder of target person masks (for --edit-mask-backend warp).")], None),
    _option("case", Annotated[Path | None, typer.Option(
        "--case", help="An official case folder (source_images/, source_poses/, ...).")], None),
    _option("preset", Annotated[Preset, typer.Option(  # type: ignore[valid-type]
        "--preset", help="Network size; auto: sd15 when installed, else the bundled tiny demo model.")],
        Preset("auto")),
    _option("weights", Annotated[Path | None, typer.Option(
        "--weights", help="A model bundle folder, or a weights root for sd15.")], None),
    _option("steps", Annotated[int | None, typer.Option(
        "--steps", help="Denoising steps (default: the preset's; 50 with --guidance official, the release's "
        "count: its schedule is written for 50 steps and other counts scale it by fractions).")], DEFAULT.steps),
    _option("cfg", Annotated[float | None, typer.Option(
        "--cfg", help="Classifier-free guidance on the CLIP context, 1 = off (default: the preset's).")], DEFAULT.cfg),
    _option("guidance", GuidanceOpt, Guidance(DEFAULT.guidance)),
    _option("guidance_scale", GuidanceScale, DEFAULT.guidance_scale),
    _option("guidance_scale_alias", GuidanceScaleAlias, None),
    _option("seed", SeedOpt, DEFAULT.seed),
    _option("noise", Annotated[NoiseChoice, typer.Option(  # type: ignore[valid-type]
        "--noise", help="keyed: from (seed, frame), for any windows (default); release: drawn as the release "
        "draws it (its CPU generator seeded once: the initial latent, then the SDE steps' noise), one window "
        "only. The release's default seed is 42, mfollow's 0.")], NoiseChoice(DEFAULT.noise)),
    _option("size", Annotated[int | None, typer.Option(
        "--size", help="Working short side, a multiple of 64 (default: the preset's: sd15 512, tiny 128).")],
        DEFAULT.size),
    _option("start", Annotated[int, typer.Option("--start", help="First source frame.")], DEFAULT.start),
    _option("frames", Annotated[int | None, typer.Option(
        "--frames", help="Number of source frames (default: to the end).")], DEFAULT.frames),
    _option("fit", Annotated[FitChoice, typer.Option(  # type: ignore[valid-type]
        "--fit", help="Edit poses shorter than the source: trim, loop or hold.")], FitChoice(DEFAULT.fit)),
    _option("pose_colors", Annotated[Colors, typer.Option(  # type: ignore[valid-type]
        "--pose-colors", help="Colour order of rendered poses.")], Colors(DEFAULT.pose_colors)),
    _option("camera", Annotated[bool, typer.Option(
        "--camera", help="Inject the source's background attention (camera motion).")], DEFAULT.camera),
    _option("output_size", Annotated[OutputSizeChoice, typer.Option(  # type: ignore[valid-type]
        "--output-size", help="source: the source's size (default); working: the model's size.")],
        OutputSizeChoice(DEFAULT.output_size)),
    _option("composite", Annotated[bool, typer.Option(
        "--composite/--no-composite", help="Keep the source's own pixels outside the people (default); "
        "--no-composite regenerates every pixel.")], DEFAULT.composite),
    _option("composite_margin", Annotated[int | None, typer.Option(
        "--composite-margin", help="Band kept from the edit around the people, working px "
        "(default: size/64).")], DEFAULT.composite_margin),
    _option("warp_person", Annotated[bool | None, typer.Option(
        "--warp-person/--no-warp-person", help="Paste the source person's own pixels, moved bone by bone into the "
        "edit pose, over the model's drawing of them (docs/editing.md). Default: the model's preset's (on for the "
        "bundled tiny model, off for sd15), off with pose images.", show_default=False)], DEFAULT.warp_person),
    _option("preview_every", Annotated[int | None, typer.Option(
        "--preview-every", help="Every K steps, write the clean-frame estimate into PROJECT/preview/ "
        "(report).")], DEFAULT.preview_every),
]  # fmt: skip

#: The options every command ends with.
TAIL = [
    _option("device", DeviceOpt, DeviceChoice(DEFAULT.device)),
    _option("dtype", DtypeOpt, DtypeChoice(DEFAULT.dtype)),
    _option(
        "offload",
        Annotated[
            bool,
            typer.Option(
                "--offload",
                help="Keep only the models a phase needs on the device (CLIP, then PoCtr and ReCtr, then "
                "the U-Net, then the VAE), the others on the CPU: less GPU memory, a little more time. "
                "The memory planner turns it on by itself where the edit needs it.",
            ),
        ],
        DEFAULT.offload,
    ),
    _option(
        "max_memory",
        Annotated[
            str | None,
            typer.Option(
                "--max-memory",
                metavar="SIZE",
                help="The memory the edit may use (12GiB, 800MiB): the planner picks the fastest way to run "
                "within it (activation checkpointing, --offload, batched passes, VAE decoding chunk; "
                "docs/editing.md). Default: what the device has free.",
            ),
        ],
        DEFAULT.max_memory,
    ),
    _option("json_out", JsonOpt, False),
    _option("progress", ProgressOpt, ProgressChoice.auto),
    _option("quiet", QuietOpt, False),
    _option("debug", DebugOpt, False),
]

#: ``long``'s own options.
LONG_ONLY = [
    _option("window", Annotated[int, typer.Option("--window", help="Frames per window.")], DEFAULT.window),
    _option("overlap", Annotated[int, typer.Option(
        "--overlap", help="Frames shared by neighbouring windows.")], DEFAULT.overlap),
    _option("blend", Annotated[Blend, typer.Option(  # type: ignore[valid-type]
        "--blend", help="Blending of overlapping windows.")], Blend(DEFAULT.blend)),
    _option("restart", Annotated[bool, typer.Option("--restart", help="Discard any checkpoint and start over.")],
            DEFAULT.restart),
]  # fmt: skip

#: ``edit``'s own options.
EDIT_ONLY = [
    _option("max_frames", Annotated[int, typer.Option(
        "--max-frames", help="Longest clip edit accepts.")], DEFAULT.max_frames),
    _option("batch", Annotated[Path | None, typer.Option(
        "--batch", help="A JSON Lines file of jobs, run with one model.")], None),
    _option("shard", Annotated[str | None, typer.Option(
        "--shard", help="K/N: run every N-th job, starting at the K-th.")], None),
]  # fmt: skip

_REQUEST_FIELDS = {f.name for f in fields(EditRequest)}


def request_of(options: dict[str, Any], long: bool) -> EditRequest:
    """The parsed options as the library's request: each option is the field of its name (SRC
    is ``source``, TGT ``target``; a case folder stands for the source)."""
    plain = {k: getattr(v, "value", v) for k, v in options.items()}
    plain["guidance_scale"] = guidance_step(plain["guidance_scale"], plain.pop("guidance_scale_alias"))
    plain["source"] = None if plain["case"] is not None else plain.pop("src")
    plain["target"] = plain.pop("tgt")
    return EditRequest(long=long, **{k: v for k, v in plain.items() if k in _REQUEST_FIELDS})


def _command(own: list[inspect.Parameter]) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Give a command the shared options (and its ``own``) as its signature."""

    def decorate(fn: Callable[..., None]) -> Callable[..., None]:
        fn.__signature__ = inspect.Signature([*SHARED, *own, *TAIL])  # type: ignore[attr-defined]
        return fn

    return decorate


def register(app: typer.Typer) -> None:
    """Add ``edit`` and ``long`` to the app."""

    @app.command(epilog="Example: mfollow edit src.mp4 tgt.mp4 -o out.mp4 (poses, alignment and masks estimated).")
    @_command(EDIT_ONLY)
    def edit(**options: Any) -> None:
        """Edit a clip in one window: the source person performs the target's motion."""
        with guard(options["debug"]):
            if options["batch"] is not None:
                from mfollow.edit.batch import run_batch

                base = request_of({**options, "src": None, "tgt": None, "output": None}, long=False)
                code = run_batch(options["batch"], base, preset=options["preset"].value, shard=options["shard"],
                                 emit=lambda line: _print_result(line, options["quiet"]))  # fmt: skip
                if code:
                    raise typer.Exit(code)
                return
            from mfollow.runtime.distributed import launched_world

            if launched_world() > 1:  # one window cannot be shared: the other ranks would only idle
                raise UsageError("edit runs one window in one process; under torchrun use 'long' or 'edit --batch'")
            _run(request_of(options, long=False), options)

    @app.command("long", epilog="Example: mfollow long src.mp4 tgt.mp4 -o out.mp4 -p proj (run it again to resume).")
    @_command(LONG_ONLY)
    def long_(**options: Any) -> None:
        """Edit a video of any length through overlapping windows; resumable after an interruption."""
        with guard(options["debug"]):
            _run(request_of(options, long=True), options)


def _run(request: EditRequest, options: dict[str, Any]) -> None:
    """``edit`` / ``long``: run the request and print the report (rank 0 alone under torchrun)."""
    from mfollow.edit.batch import execute
    from mfollow.runtime.distributed import is_main_process
    from mfollow.runtime.progress import Reporter

    quiet = options["quiet"] or not is_main_process()
    reporter = Reporter(options["progress"].value, quiet=quiet)
    report = execute(request, preset=options["preset"].value, reporter=reporter,
                     note=lambda line: stderr_line(line, quiet=quiet))  # fmt: skip
    if not is_main_process():
        return
    if options["json_out"]:
        emit_json(report)
    else:
        stderr_line(f"{report['output']}: {report['frames']} frames, {format_timings(report['timings'])}", quiet=quiet)


def format_timings(timings: dict[str, float]) -> str:
    """``{"prepare": 1.23, "sample": 30.0}`` -> ``prepare 1.2 s, sample 30.0 s``."""
    return ", ".join(f"{name.replace('_', ' and ')} {seconds:.1f} s" for name, seconds in timings.items())


def _print_result(result: dict[str, Any], quiet: bool) -> None:
    import json
    import sys

    sys.stdout.write(json.dumps(result, sort_keys=True, default=str) + "\n")
    sys.stdout.flush()
    if not result["ok"]:
        stderr_line(f"job {result['job']}: {result['error']}", quiet=quiet)
