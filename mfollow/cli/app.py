"""The ``mfollow`` command line (Typer). Thin: parse, call one library function, render.

Heavy libraries (av, torch, diffusers, transformers) are imported inside command bodies so that
``mfollow --help`` starts instantly and imports none of them.
"""

from __future__ import annotations

import contextlib
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from mfollow.cli import edit as cli_edit
from mfollow.cli import stages as cli_stages
from mfollow.cli import train as cli_train
from mfollow.cli.common import (
    DebugOpt,
    DeviceChoice,
    DeviceOpt,
    JsonOpt,
    ProgressChoice,
    ProgressOpt,
    ProjectOpt,
    QuietOpt,
    SeedOpt,
    emit_json,
    guard,
    renamed,
    stderr_line,
)
from mfollow.cli.weights import weights_app
from mfollow.metrics.learned import settings as learned_settings
from mfollow.runtime.devices import check_device
from mfollow.runtime.errors import EXIT_INTERRUPTED, EXIT_PIPE, EXIT_TERMINATED, EXIT_USAGE, Terminated, UsageError
from mfollow.version import __version__

#: The order of ``mfollow --help``'s command list: the headline first, then the stages, the
#: project's views, and the tools.
ORDER = ("edit", "long", "pose", "align", "mask", "report", "status", "clean", "info", "demo", "eval", "synth",
         "train", "weights")  # fmt: skip


class _Commands(TyperGroup):
    def list_commands(self, ctx: Any) -> list[str]:
        return sorted(super().list_commands(ctx), key=lambda n: ORDER.index(n) if n in ORDER else len(ORDER))


app = typer.Typer(
    cls=_Commands,
    name="mfollow",
    help="Video motion editing: re-render a source video's person performing a target video's motion.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        print(f"mfollow {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """mfollow: MotionFollower video motion editing.

    Exit codes: 0 ok, 1 internal error, 2 usage, 3 weights, 4 input media, 5 project/cache,
    130 interrupted.
    """


@app.command()
def info(
    video: Annotated[Path, typer.Argument(help="A video file.", metavar="VIDEO", show_default=False)],
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Describe a video: frames, timestamps, frame rate, size, rotation, audio."""
    with guard(debug):
        from mfollow.io.video import probe

        report = probe(video).to_json()
        if json_out:
            emit_json(report)
            return
        _print_info(report)


def _print_info(r: dict) -> None:
    rate = "constant" if r["constant_rate"] else "variable"
    lines = [
        f"file       {r['path']}",
        f"video      {r['codec']} {r['pix_fmt']} {r['width']}x{r['height']}"
        + (f" (rotation {r['rotation']}, shown {r['display_width']}x{r['display_height']})" if r["rotation"] else ""),
        f"frames     {r['frame_count']} ({rate} frame rate, average {r['average_fps_float']:.6g} fps)",
        f"time base  {r['time_base']}",
        f"duration   {r['duration']:.6g} s",
    ]
    for a in r["audio"] or [None]:
        lines.append(
            "audio      none"
            if a is None
            else f"audio      #{a['index']} {a['codec']} {a['sample_rate']} Hz {a['channels']} ch"
        )
    print("\n".join(lines))


@app.command()
def status(
    project: ProjectOpt,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Show each stage of a project: fresh, stale or missing, with its outputs."""
    with guard(debug):
        from mfollow.preprocess.project import Project

        stages = Project.read(project).status()
        if json_out:
            emit_json({"project": str(project.resolve()), "stages": [s.to_json() for s in stages]})
            return
        if not stages:
            print(f"{project}: no stages yet")
        for s in stages:
            print(f"{s.name:<12} {s.state:<8} {s.reason}")
            by_folder: dict[Path, list[Path]] = {}
            for p in s.outputs:
                by_folder.setdefault(p.parent, []).append(p)
            for folder, files in by_folder.items():
                shown = [str(f) for f in files] if len(files) <= 3 else [f"{folder}/ ({len(files)} files)"]
                for line in shown:
                    print(f"             {line}")


@app.command()
def clean(
    project: ProjectOpt,
    stages: Annotated[
        list[str] | None, typer.Argument(help="Stages to remove (outputs and records).", metavar="[STAGE]...")
    ] = None,
    all_stages: Annotated[bool, typer.Option("--all", help="Remove every stage.")] = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Free disk space: remove stages' outputs, and leftovers of interrupted or superseded runs."""
    with guard(debug):
        from mfollow.preprocess.project import Project

        with Project.open(project, create=False) as proj:
            names = sorted(proj.manifest["stages"]) if all_stages else list(stages or [])
            report = proj.clean(names)
        if json_out:
            emit_json({"project": str(project.resolve()), **report})
            return
        stderr_line(
            f"{project}: removed {len(report['removed'])} item(s), {report['bytes_freed']} bytes"
            + (f"; stages {', '.join(report['stages'])}" if report["stages"] else ""),
            quiet=quiet,
        )


class LpipsNet(StrEnum):
    alex = "alex"
    vgg = "vgg"


class Camera(StrEnum):
    pan = "pan"
    zoom = "zoom"
    shake = "shake"
    none = "none"


class MotionKind(StrEnum):
    walk = "walk"
    wave = "wave"
    squat = "squat"
    jump = "jump"
    arm_circles = "arm_circles"
    dance = "dance"


CameraMotion = Annotated[
    Camera | None, typer.Option("--camera-motion", help="The source camera's motion (default: from the seed).")
]
CameraMotionAlias = Annotated[Camera | None, typer.Option("--camera", hidden=True)]  # the old spelling


def _camera_motion(camera: Camera | None, old: Camera | None) -> str | None:
    """``--camera-motion`` (``--camera`` in ``edit``/``long`` is a flag: camera mode)."""
    chosen = renamed(camera, old, option="--camera-motion", old="--camera")
    return None if chosen is None else chosen.value


@app.command()
def synth(
    out_dir: Annotated[Path, typer.Argument(help="Folder to write the pair into.", metavar="OUT_DIR")],
    seed: SeedOpt = 0,
    frames: Annotated[int, typer.Option("--frames", min=1, help="Frames per video.")] = 48,
    size: Annotated[int, typer.Option("--size", min=16, help="Frame width and height in pixels.")] = 256,
    fps: Annotated[str, typer.Option("--fps", help="Frame rate, e.g. 24 or 30000/1001.")] = "24",
    camera: CameraMotion = None,
    camera_alias: CameraMotionAlias = None,
    source_motion: Annotated[MotionKind | None, typer.Option("--source-motion", help="Default: from the seed.")] = None,
    target_motion: Annotated[MotionKind | None, typer.Option("--target-motion", help="Default: from the seed.")] = None,
    json_out: JsonOpt = False,
    progress: ProgressOpt = ProgressChoice.auto,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Make a synthetic puppet pair with exact ground truth.

    Source, target and edited videos, poses and person masks. Example: mfollow synth pair --seed 3
    """
    with guard(debug):
        from fractions import Fraction

        from mfollow.runtime.progress import Reporter
        from mfollow.synth.files import write_pair
        from mfollow.synth.world import make_pair

        try:
            rate = Fraction(fps)
        except (ValueError, ZeroDivisionError):
            raise UsageError(f"--fps {fps!r} is not a number or fraction") from None
        if rate <= 0:
            raise UsageError(f"--fps {fps} must be positive")
        pair = make_pair(
            seed,
            frames=frames,
            size=size,
            fps=rate,
            camera=_camera_motion(camera, camera_alias),
            source_motion=None if source_motion is None else source_motion.value,
            target_motion=None if target_motion is None else target_motion.value,
        )
        with Reporter(progress.value, quiet=quiet).task("synth", 3 * frames) as callback:
            report = write_pair(pair, out_dir, progress=callback)
        if json_out:
            emit_json(report)
        else:
            stderr_line(
                f"{out_dir}: {report['source_motion']} -> {report['target_motion']}, camera {report['camera']}, "
                f"{frames} frames at {size}x{size}",
                quiet=quiet,
            )


@app.command("eval")
def eval_(
    result: Annotated[Path, typer.Argument(help="The video to score.", metavar="RESULT")],
    reference: Annotated[Path, typer.Argument(help="The ground truth.", metavar="REFERENCE")],
    fg_masks: Annotated[
        Path | None, typer.Option("--fg-masks", help="Folder of person masks (one PNG per frame) for fg/bg scores.")
    ] = None,
    per_frame: Annotated[Path | None, typer.Option("--per-frame", help="Write a per-frame CSV table here.")] = None,
    trim: Annotated[bool, typer.Option("--trim", help="Different lengths: score the frames both have.")] = False,
    resize: Annotated[bool, typer.Option("--resize", help="Different sizes: resize the result.")] = False,
    lpips: Annotated[
        LpipsNet | None, typer.Option("--lpips", help="Also LPIPS v0.1 with this trunk (weights lpips-NET).")
    ] = None,
    fid: Annotated[bool, typer.Option("--fid", help="Also FID between the frames (weights fid-inception).")] = False,
    fvd: Annotated[bool, typer.Option("--fvd", help="Also FVD between the clips (weights fvd-i3d).")] = False,
    fvd_clip: Annotated[int, typer.Option("--fvd-clip", min=1, help="FVD: frames per clip.")] = learned_settings.CLIP,
    fvd_stride: Annotated[
        int, typer.Option("--fvd-stride", min=1, help="FVD: a clip starts every N frames.")
    ] = learned_settings.STRIDE,
    weights: Annotated[
        Path | None, typer.Option("--weights", help="Folder searched first for the learned metrics' weights.")
    ] = None,
    project: Annotated[
        Path | None,
        typer.Option(
            "--project", "-p", help="Also record the per-frame scores in this project (its report plots them)."
        ),
    ] = None,
    device: DeviceOpt = "cpu",  # type: ignore[assignment]
    json_out: JsonOpt = False,
    progress: ProgressOpt = ProgressChoice.auto,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Score a result against a reference: L1, PSNR, SSIM, in and out of masks.

    Optionally LPIPS, FID and FVD (the extra mfollow\\[metrics]; their weights through 'mfollow
    weights download'). Example: mfollow eval out.mp4 pair/edit_gt.mp4 --fg-masks pair/edit_masks
    """
    with guard(debug):
        from mfollow.metrics.evaluation import (
            EvalSettings,
            check_writable,
            evaluate_videos,
            json_number,
            write_per_frame_csv,
        )
        from mfollow.runtime.progress import Reporter

        if per_frame is not None:
            check_writable(per_frame)
        if project is not None:
            from mfollow.preprocess.project import Project

            Project.read(project)  # an existing project, before any scoring
        settings = EvalSettings(length="trim" if trim else "error", size="resize" if resize else "error")
        dev = getattr(device, "value", str(device))
        check_device(dev)
        learned = learned_settings.LearnedSettings(
            lpips=None if lpips is None else lpips.value,  # type: ignore[arg-type]
            fid=fid,
            fvd=fvd,
            fvd_clip=fvd_clip,
            fvd_stride=fvd_stride,
            device=dev,
        )
        with Reporter(progress.value, quiet=quiet).task("eval", 0) as callback:
            report, header = evaluate_videos(result, reference, fg_masks, settings, callback, learned, weights)
        if per_frame is not None:
            write_per_frame_csv(report, per_frame)
        summary = {k: json_number(v) for k, v in report.summary.items() if not k.startswith("frames")}
        if project is not None:
            from mfollow.report.records import record_eval

            record_eval(project, report, {**header, "summary": summary})
        if json_out:
            emit_json({**header, "per_frame_csv": None if per_frame is None else str(per_frame), "summary": summary})
            return
        for key, value in summary.items():
            print(f"{key:<8} {value if isinstance(value, str) or value is None else f'{value:.6g}'}")


@app.command()
def demo(
    out_dir: Annotated[Path, typer.Argument(help="Folder for the demo's files.", metavar="[OUT_DIR]")] = Path(
        "mfollow-demo"
    ),
    seed: Annotated[int, typer.Option("--seed", help="Synthetic pair seed (held out from training).")] = 7,
    frames: Annotated[int, typer.Option("--frames", min=2, max=32, help="Frames to edit (one window).")] = 24,
    steps: Annotated[
        int | None, typer.Option("--steps", min=1, help="Sampling steps (default: the tiny preset's).")
    ] = None,
    guidance: cli_edit.GuidanceOpt = cli_edit.Guidance.paper,
    guidance_scale: cli_edit.GuidanceScale = None,
    guidance_scale_alias: cli_edit.GuidanceScaleAlias = None,
    camera: CameraMotion = None,
    camera_alias: CameraMotionAlias = None,
    weights: Annotated[
        Path | None, typer.Option("--weights", help="A tiny bundle folder, or a weights folder with tiny/ and segdit/.")
    ] = None,
    warp_person: Annotated[
        bool,
        typer.Option(
            "--warp-person/--no-warp-person",
            help="Paste the source person moved into the edit pose over the model's drawing (default: on; "
            "--no-warp-person shows the model alone).",
        ),
    ] = True,
    device: DeviceOpt = DeviceChoice.cpu,
    json_out: JsonOpt = False,
    progress: ProgressOpt = ProgressChoice.auto,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Edit a held-out synthetic pair with the bundled demo model, side by side with the truth.

    Writes result.mp4, side_by_side.mp4 (source | target | result | ground truth) and metrics.json.
    Example: mfollow demo out/
    """
    with guard(debug):
        from mfollow.edit.demo import DemoSettings, run_demo
        from mfollow.runtime.progress import Reporter

        if out_dir.exists() and not out_dir.is_dir():
            raise UsageError(f"{out_dir}: exists and is not a folder; choose another OUT_DIR")
        if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / "pair" / "pair.json").is_file():
            raise UsageError(f"{out_dir}: exists and is not a demo folder; choose another OUT_DIR")
        check_device(device.value)
        settings = DemoSettings(
            seed=seed,
            frames=frames,
            steps=steps,
            guidance=guidance.value,
            guidance_scale=cli_edit.guidance_step(guidance_scale, guidance_scale_alias),
            camera=_camera_motion(camera, camera_alias),
            device=device.value,
            warp_person=warp_person,
        )
        reporter = Reporter(progress.value, quiet=quiet)
        with contextlib.ExitStack() as stack:
            current: dict[str, Any] = {"task": None}

            def tick(task: str, done: int, total: int) -> None:
                if current["task"] != task:  # one progress display per step of the demo
                    if current["task"] is not None:
                        current["stack"].close()
                    current.update(task=task, stack=stack.enter_context(contextlib.ExitStack()))
                    current["callback"] = current["stack"].enter_context(reporter.task(task, total))
                current["callback"](done, total)

            report = run_demo(out_dir, settings, weights=weights, progress=tick)
        if json_out:
            emit_json(report)
            return
        m = report["metrics"]
        stderr_line(f"{report['side_by_side']}: source | target | result | ground truth", quiet=quiet)

        def fmt(v: object, digits: int) -> str:
            return f"{v:.{digits}f}" if isinstance(v, float) else str(v)

        for name in ("result", "source_unchanged", "target_unchanged"):
            r = m[name]
            print(
                f"{name:<17} PSNR {fmt(r['psnr'], 2)}  fg {fmt(r['psnr_fg'], 2)}  bg {fmt(r['psnr_bg'], 2)}  "
                f"SSIM {fmt(r['ssim'], 3)}  fg {fmt(r['ssim_fg'], 3)}  silhouette IoU {fmt(r['silhouette_iou'], 3)}"
            )
        ceiling = fmt(m["ground_truth"]["silhouette_iou"], 3)
        print(f"{'ground_truth':<17} silhouette IoU {ceiling} (the measure's ceiling: H.264 coding noise)")


@app.command()
def report(
    project: ProjectOpt,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="The page (default: PROJECT/report/report.html).")
    ] = None,
    max_side: Annotated[int, typer.Option("--max-side", min=64, help="Long side of the page's videos, px.")] = 384,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """One HTML page of a project, to look at before spending GPU time.

    Source and target, poses,
    aligned poses and masks over the source, the result and per-frame metrics, every stage's
    state and parameters. Media are written beside the page; it opens from disk, no server."""
    with guard(debug):
        from mfollow.preprocess.project import Project
        from mfollow.report import ReportSettings, write_report
        from mfollow.report.page import default_report_path

        Project.read(project)  # exit 5 at once: no such project, or a corrupt manifest
        page = output or default_report_path(project)
        if page.suffix.lower() not in (".html", ".htm"):
            raise UsageError(f"--output {page}: the report is an HTML page; give it a .html name")
        if page.is_dir():
            raise UsageError(f"--output {page}: is a folder")
        written = write_report(
            project,
            page,
            ReportSettings(max_side=max_side),
            progress=lambda s: stderr_line(f"report: {s}", quiet=quiet),
        )
        if json_out:
            emit_json(written)
        else:
            stderr_line(f"{written['report']}: {written['sections']} sections, {len(written['media'])} media files",
                        quiet=quiet)  # fmt: skip


cli_stages.register(app)
cli_train.register(app)
cli_edit.register(app)


app.add_typer(weights_app, name="weights")


def main(argv: list[str] | None = None, prog_name: str = "mfollow") -> int:
    """Console-script entry point: run the app and return its exit code.

    Usage errors are reported in one line (``mfollow: usage: ...``) with exit code 2.
    """
    command = typer.main.get_command(app)
    _flags_without_metavar(command)
    _paragraphs(command)
    _terminate_as_interrupt()
    try:
        result = command.main(args=argv, prog_name=prog_name, standalone_mode=False)
    except typer.TyperException as exc:  # Click's usage errors: bad options, missing arguments
        if type(exc).__name__ == "NoArgsIsHelpError":
            print(exc.format_message(), file=sys.stderr)
            return EXIT_USAGE
        hint = ""
        ctx = getattr(exc, "ctx", None)
        if ctx is not None:
            hint = f" (see '{ctx.command_path} --help')"
        print(f"mfollow: usage: {exc.format_message()}{hint}", file=sys.stderr)
        return int(getattr(exc, "exit_code", EXIT_USAGE))
    except typer.Abort:
        print("mfollow: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Terminated:
        print("mfollow: terminated", file=sys.stderr)
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        print("mfollow: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # help or a listing into a closed pipe
        from mfollow.cli.common import silence_stdout

        silence_stdout()
        return EXIT_PIPE
    return result if isinstance(result, int) else 0


def _paragraphs(command: Any) -> None:
    """Help texts as paragraphs: a docstring's line breaks inside a paragraph are joined, so that
    the help wraps at the terminal's width, not mid-sentence where the source was wrapped."""
    import inspect

    if command.help:
        text = inspect.cleandoc(command.help)
        command.help = "\n\n".join(" ".join(p.split()) for p in text.split("\n\n"))
    for sub in getattr(command, "commands", {}).values():
        _paragraphs(sub)


def _terminate_as_interrupt() -> None:
    """SIGTERM (cluster preemption, ``timeout``) stops a command as Ctrl-C does, so that a ``long``
    run keeps its checkpoint and removes its temporary files (exit 143); a handler someone else
    installed is left alone."""
    import signal
    import threading

    def terminate(signum: int, frame: object) -> None:
        raise Terminated

    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, terminate)


def _flags_without_metavar(command: Any) -> None:
    """Typer's help shows a ``<bool>`` type beside on/off flags as if they took a value: show
    nothing there (every flag of every command, ``--help`` included, here in one place)."""
    from typer.core import TyperOption

    def plain(option: Any) -> Any:
        if isinstance(option, TyperOption) and option.is_flag and option.metavar is None:
            option.metavar = ""
        return option

    for param in command.params:
        plain(param)
    help_option = command.get_help_option  # made per context: wrap this command's factory
    command.get_help_option = lambda ctx, make=help_option: plain(make(ctx))
    for sub in getattr(command, "commands", {}).values():
        _flags_without_metavar(sub)


def run() -> None:
    """The ``mfollow`` console script."""
    raise SystemExit(main())
