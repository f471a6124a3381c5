"""The real CLI, in subprocesses: version, help, lazy imports, info, status, clean, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from clirun import mfollow, one_line_error
from media import make_audio_only, make_empty_video, make_video
from procs import project_locked_by_child
from typer.testing import CliRunner

from mfollow import __version__
from mfollow.preprocess import project as P


@pytest.mark.slow
def test_version_and_help() -> None:
    r = mfollow("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"mfollow {__version__}"
    r = mfollow("--help")
    assert r.returncode == 0 and "info" in r.stdout and "status" in r.stdout
    for command in ("info", "status", "clean"):
        r = mfollow(command, "--help")
        assert r.returncode == 0 and "Usage" in r.stdout


@pytest.mark.slow
def test_console_script_is_installed() -> None:
    exe = Path(sys.executable).with_name("mfollow")
    r = subprocess.run([str(exe), "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and __version__ in r.stdout


@pytest.mark.slow
@pytest.mark.parametrize("argv", [["--help"], ["info", "--help"], ["status", "--help"], ["--version"]])
def test_help_does_not_import_heavy_libraries(argv: list[str]) -> None:
    code = (
        "import sys\nfrom mfollow.cli import main\n"
        f"rc = main({argv!r})\n"
        "heavy = [m for m in ('torch', 'av', 'diffusers', 'transformers', 'numpy') if m in sys.modules]\n"
        "print('HEAVY', heavy, rc)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.stdout.strip().splitlines()[-1] == "HEAVY [] 0"


@pytest.mark.slow
def test_info_json_and_text(tmp_path: Path) -> None:
    video = make_video(tmp_path / "clip.mp4", n=10, audio="aac", rotation=90)
    r = mfollow("info", str(video), "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)  # stdout holds exactly one JSON document
    assert report["frame_count"] == 10 and report["rotation"] == 90
    assert (report["display_width"], report["display_height"]) == (48, 64)
    assert report["timestamps"] == list(range(10)) and report["time_base"] == "1/25"
    assert report["audio"][0]["codec"] == "aac"
    r = mfollow("info", str(video))
    assert r.returncode == 0 and "frames     10 (constant frame rate, average 25 fps)" in r.stdout


@pytest.mark.slow
def test_bad_media_inputs_exit_4(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a video")
    cases = {
        str(tmp_path / "missing.mp4"): "no such file",
        str(tmp_path): "is a directory",
        str(tmp_path / "notes.txt"): "not a video file",
        str(make_audio_only(tmp_path / "a.m4a")): "no video stream",
        str(make_empty_video(tmp_path / "empty.mp4")): "no streams",
    }
    for path, needle in cases.items():
        one_line_error(mfollow("info", path), 4, path, needle)


@pytest.mark.slow
def test_usage_errors_exit_2() -> None:
    one_line_error(mfollow("info"), 2, "Missing argument 'VIDEO'")
    one_line_error(mfollow("info", "x.mp4", "--bogus"), 2, "No such option: --bogus")
    one_line_error(mfollow("frobnicate"), 2, "No such command")
    one_line_error(mfollow("status"), 2, "--project")


@pytest.mark.slow
def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    r = mfollow("info", str(tmp_path / "missing.mp4"), "--debug")
    assert r.returncode == 4 and "Traceback" in r.stderr and "no such file" in r.stderr


def _project_with_stage(tmp_path: Path) -> tuple[Path, Path]:
    src = make_video(tmp_path / "src.mp4", n=4)
    root = tmp_path / "proj"
    with P.Project.open(root) as proj:
        spec = P.StageSpec("pose", "1", inputs={"video": src}, params={"backend": "file"})
        with proj.stage_writer(spec) as out:
            (out / "poses.json").write_text("[]")
    return root, src


@pytest.mark.slow
def test_status_json(tmp_path: Path) -> None:
    root, src = _project_with_stage(tmp_path)
    r = mfollow("status", "-p", str(root), "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    (stage,) = [s for s in doc["stages"] if s["name"] == "pose"]
    assert stage["state"] == "fresh"
    assert {s["name"]: s["state"] for s in doc["stages"] if s["name"] != "pose"} == dict.fromkeys(
        ["pose-source", "pose-target", "align", "mask"], "missing"
    )
    assert stage["outputs"][0].endswith("poses.json")
    src.write_bytes(src.read_bytes() + b"\0")
    doc = json.loads(mfollow("status", "-p", str(root), "--json").stdout)
    assert next(s for s in doc["stages"] if s["name"] == "pose")["state"] == "stale"
    r = mfollow("status", "-p", str(root))
    assert r.returncode == 0 and "pose         stale    input video" in r.stdout


@pytest.mark.slow
def test_project_errors_exit_5(tmp_path: Path) -> None:
    one_line_error(mfollow("status", "-p", str(tmp_path / "nope")), 5, "no such project directory")
    root, _ = _project_with_stage(tmp_path)
    manifest = root / "mfollow.json"
    manifest.write_text('{"format": 1, "stages": ')
    for argv in (["status", "-p", str(root)], ["clean", "-p", str(root), "--all"]):
        one_line_error(mfollow(*argv), 5, str(manifest), "corrupt manifest")
    assert manifest.read_text() == '{"format": 1, "stages": '


@pytest.mark.slow
def test_locked_project_exits_5(tmp_path: Path) -> None:
    root, _ = _project_with_stage(tmp_path)
    with project_locked_by_child(root) as owner:
        one_line_error(mfollow("clean", "-p", str(root), "--all"), 5, str(root), f"locked by process {owner.pid}")
    r = mfollow("clean", "-p", str(root), "--all", "--json")  # stale lock recovered
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["stages"] == ["pose"]
    one_line_error(mfollow("clean", "-p", str(root), "mask"), 2, "no stage 'mask'")


def test_internal_error_and_interrupt_mapping(monkeypatch: pytest.MonkeyPatch, capsys, tmp_path: Path) -> None:
    from mfollow import cli
    from mfollow.io import video

    def boom(path: object) -> None:
        raise RuntimeError("something unexpected\nsecond line")

    monkeypatch.setattr(video, "probe", boom)
    assert cli.main(["info", "x.mp4"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error: RuntimeError: something unexpected" in err

    def interrupted(path: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(video, "probe", interrupted)
    assert cli.main(["info", "x.mp4"]) == 130
    assert capsys.readouterr().err == "mfollow: interrupted\n"


def _all_commands() -> list[list[str]]:
    import click
    import typer

    from mfollow.cli import app

    def walk(cmd: click.Command, path: list[str]) -> list[list[str]]:
        found = [path]
        for name, sub in getattr(cmd, "commands", {}).items():
            found += walk(sub, [*path, name])
        return found

    return walk(typer.main.get_command(app), [])


@pytest.mark.slow
def test_help_of_every_command_is_plain() -> None:
    """Flags show no value placeholder; docstrings show no reStructuredText markup."""
    from mfollow.cli import main

    for path in _all_commands():
        r = subprocess.run(
            [sys.executable, "-m", "mfollow", *path, "--help"], capture_output=True, text=True, timeout=600,
            env=os.environ | {"COLUMNS": "200"},
        )  # fmt: skip
        assert r.returncode == 0, (path, r.stderr)
        assert "<bool>" not in r.stdout and "``" not in r.stdout, (path, r.stdout)
    assert main(["long", "--restart", "--help"]) == 0


@pytest.mark.slow
def test_closed_pipe_exits_quietly(tmp_path: Path) -> None:
    video = make_video(tmp_path / "v.mp4", n=3)
    proc = subprocess.Popen(
        [sys.executable, "-m", "mfollow", "info", str(video)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader is gone before mfollow writes (`| head -0`)
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=600) == 141 and err == "", err


def test_timings_line_is_for_people() -> None:
    from mfollow.cli.edit import format_timings

    assert format_timings({"prepare": 1.234, "sample": 30.0, "decode_write": 0.25}) == (
        "prepare 1.2 s, sample 30.0 s, decode and write 0.2 s"
    )


def test_help_reads_as_a_user_needs_it() -> None:
    """The headline first; help paragraphs joined (they wrap at the terminal, not where the source
    was wrapped); rich markup does not eat ``[metrics]``; an option name means one thing: the
    synthetic camera path is ``--camera-motion`` (``--camera`` is camera mode in edit/long), the
    training batch ``--batch-size`` (``--batch`` is a jobs file in edit); old spellings hidden."""
    from mfollow.cli import app

    runner = CliRunner()
    top = runner.invoke(app, ["--help"], env={"COLUMNS": "200"}).output
    listed = [
        w
        for line in top.splitlines()
        if line.startswith("│ ") and len(line.split()) > 2
        if not (w := line.split()[1]).startswith("-")
    ]
    assert listed[:5] == ["edit", "long", "pose", "align", "mask"], listed
    assert "mfollow[metrics]" in runner.invoke(app, ["eval", "--help"], env={"COLUMNS": "200"}).output
    synth = runner.invoke(app, ["synth", "--help"], env={"COLUMNS": "200"}).output
    assert "--camera-motion" in synth and "--camera " not in synth
    train = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "200"}).output
    assert "--batch-size" in train and "--batch " not in train

    import typer.main

    from mfollow.cli.app import _paragraphs

    command = typer.main.get_command(app)
    _paragraphs(command)
    for name, sub in command.commands.items():  # type: ignore[attr-defined]
        for paragraph in (sub.help or "").split("\n\n"):
            assert "\n" not in paragraph, name


def test_running_out_of_memory_is_a_usage_error_not_a_bug(capsys: pytest.CaptureFixture[str]) -> None:
    import typer

    from mfollow.cli.common import guard

    with pytest.raises(typer.Exit) as caught, guard():
        raise MemoryError("Unable to allocate 91.6 GiB")
    assert caught.value.exit_code == 2
    assert capsys.readouterr().err.strip() == (
        "mfollow: error: out of memory (Unable to allocate 91.6 GiB) (lower --size or --window)"
    )
