"""``mfollow edit`` and ``mfollow long`` through the real CLI, on a synthetic puppet pair."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from clirun import cli_env, mfollow, one_line_error

from mfollow.io.video import probe


@pytest.fixture(scope="module")
def world(synth_world: Callable[..., Path]) -> Path:
    return synth_world(6, 30)


def args(world: Path, *extra: str) -> list[str]:
    p = world / "pair"
    return [
        str(p / "source.mp4"), str(p / "target.mp4"),
        "--source-poses", str(p / "source_poses.json"), "--edit-poses", str(p / "edit_poses.json"),
        "--source-masks", str(p / "source_masks"), "--edit-masks", str(p / "edit_masks"),
        "--preset", "tiny", "--weights", str(world / "bundle"), "--size", "64", "--steps", "2", "-q", *extra,
    ]  # fmt: skip


@pytest.mark.slow
def test_edit_end_to_end(world: Path, tmp_path: Path) -> None:
    out = tmp_path / "new" / "folder" / "out.mp4"  # made by the writer, not by the preflight
    r = mfollow("edit", *args(world, "-o", str(out), "--frames", "12", "--start", "3", "--json"))
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["frames"] == 12 and doc["preset"] == "tiny" and doc["windows"] == [[0, 12]]
    assert probe(out).frame_count == 12 and len(doc["weights"]) == 64
    assert doc["composite_margin"] == 1  # the default: 1/64 of the 64-pixel working side
    assert doc["warp_person"] is True  # the tiny preset's default


@pytest.mark.slow
def test_long_end_to_end_with_windows(world: Path, tmp_path: Path) -> None:
    out = tmp_path / "long.mp4"
    extra = (
        "--window",
        "12",
        "--overlap",
        "4",
        "--json",
        "-p",
        str(tmp_path / "proj"),
        "--no-composite",
        "--no-warp-person",
    )
    r = mfollow("long", *args(world, "-o", str(out), *extra))
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["frames"] == 30 and doc["windows"] == [[0, 12], [8, 20], [16, 28], [18, 30]]
    assert doc["composite_margin"] is None and doc["warp_person"] is False  # --no-composite, --no-warp-person
    assert probe(out).timestamps == probe(world / "pair" / "source.mp4").timestamps


@pytest.mark.slow
def test_edit_usage_and_weights_errors(world: Path, tmp_path: Path) -> None:
    p = world / "pair"
    one_line_error(mfollow("edit", str(p / "source.mp4"), "-o", str(tmp_path / "x.mp4")), 2, "--source-poses", "--case")
    one_line_error(mfollow("edit", *args(world, "-o", str(tmp_path / "x.mp4"))), 2, "30 frames", "mfollow long")
    one_line_error(mfollow("edit", *args(world, "-o", str(tmp_path / "x.mp4"), "--size", "100")), 2, "multiple of 64")
    one_line_error(
        mfollow("long", *args(world, "-o", str(tmp_path / "x.mp4"), "--window", "8", "--overlap", "8")), 2, "--overlap"
    )
    no_weights = [a for a in args(world, "-o", str(tmp_path / "x.mp4"), "--frames", "4") if a != str(world / "bundle")]
    no_weights.remove("--weights")
    no_weights[no_weights.index("tiny")] = "sd15"
    one_line_error(mfollow("edit", *no_weights), 3, "weights 'motionfollower' not found")
    one_line_error(
        mfollow("edit", *args(world, "-o", str(tmp_path / "x.mp4"), "--preset", "sd15", "--frames", "4")),
        3,
        "'tiny' bundle",
    )
    # no poses given: the stages would estimate them; a clip too long for one window and missing
    # weights are found first
    staged = [str(p / "source.mp4"), str(p / "target.mp4"), "-o", str(tmp_path / "s.mp4"), "--preset", "sd15"]
    one_line_error(mfollow("edit", *staged), 2, "30 frames is more than one window", "mfollow long")
    assert not (tmp_path / "s.mfollow").exists()
    one_line_error(
        mfollow("edit", *staged, "--frames", "4", "--weights", str(tmp_path)), 3, "weights 'motionfollower' not found"
    )
    assert not (tmp_path / "s.mfollow").exists()  # no stage ran, and the preflight left no folder behind
    for command in ("edit", "long"):  # a missing input is a media error before any work (long keys it)
        missing = [str(tmp_path / "nope.mp4") if a.endswith("source.mp4") else a for a in args(world, "-o", "x.mp4")]
        missing[missing.index("-o") + 1] = str(tmp_path / "x.mp4")
        one_line_error(mfollow(command, *missing), 4, "nope.mp4", "no such file or folder")
    assert not (tmp_path / "x.mp4").exists()


@pytest.mark.slow
def test_batch_isolates_failures_and_shards(world: Path, tmp_path: Path) -> None:
    p = world / "pair"
    common = {
        "source_poses": str(p / "source_poses.json"), "edit_poses": str(p / "edit_poses.json"),
        "source_masks": str(p / "source_masks"), "edit_masks": str(p / "edit_masks"), "frames": 6,
    }  # fmt: skip
    jobs = [
        {"source": str(p / "source.mp4"), "output": str(tmp_path / "a.mp4"), **common},
        {"source": str(tmp_path / "missing.mp4"), "output": str(tmp_path / "b.mp4"), **common},
        "not json",
        {"source": str(p / "source.mp4"), "output": str(tmp_path / "d.mp4"), "seed": 5, **common},
    ]
    jobs_file = tmp_path / "jobs.jsonl"
    jobs_file.write_text("\n".join(j if isinstance(j, str) else json.dumps(j) for j in jobs) + "\n")
    base = ["--preset", "tiny", "--weights", str(world / "bundle"), "--size", "64", "--steps", "1", "-q"]
    r = mfollow("edit", "--batch", str(jobs_file), *base)
    results = [json.loads(line) for line in r.stdout.splitlines()]
    assert [x["ok"] for x in results] == [True, False, False, True]
    assert results[1]["exit_code"] == 4 and results[2]["exit_code"] == 2 and results[3]["seed"] == 5
    assert r.returncode == 4  # the first failure's code
    assert (tmp_path / "a.mp4").is_file() and (tmp_path / "d.mp4").is_file() and not (tmp_path / "b.mp4").exists()
    r = mfollow("edit", "--batch", str(jobs_file), "--shard", "2/2", *base)
    assert [json.loads(line)["job"] for line in r.stdout.splitlines()] == [1, 3]
    one_line_error(mfollow("edit", "--batch", str(jobs_file), "--shard", "3/2", *base), 2, "K <= N")


def test_guidance_step_keeps_its_old_spelling_hidden() -> None:
    """``--guidance-step`` is the consistency-guidance step size; ``--guidance-scale``, its old
    spelling, still works but is not shown, and giving both is a usage error."""
    from typer.testing import CliRunner

    from mfollow.cli import app
    from mfollow.cli.edit import guidance_step
    from mfollow.runtime.errors import UsageError

    assert guidance_step(None, 3.0) == 3.0 and guidance_step(2.0, None) == 2.0 and guidance_step(None, None) is None
    with pytest.raises(UsageError, match="old spelling"):
        guidance_step(2.0, 3.0)
    shown = CliRunner().invoke(app, ["long", "--help"], env={"COLUMNS": "200"}).output
    assert "--guidance-step" in shown and "--guidance-scale" not in shown


@pytest.mark.slow
def test_sigterm_stops_long_as_ctrl_c_does_and_it_resumes(world: Path, tmp_path: Path) -> None:
    """SIGTERM (what SLURM, Kubernetes and `timeout` send) during `long`: exit 143, its last
    step's checkpoint kept, its spilled conditioning removed; the same command then resumes and
    writes the frames of an uninterrupted run."""
    import signal
    import subprocess
    import sys
    import time

    from mfollow.io.video import read_frames

    extra = ("--window", "8", "--overlap", "3", "--guidance", "none", "--steps", "3", "--no-warp-person")
    ref = mfollow("long", *args(world, "-o", str(tmp_path / "ref.mp4"), "-p", str(tmp_path / "ref"), *extra))
    assert ref.returncode == 0, ref.stderr
    project = tmp_path / "proj"
    argv = ["long", *args(world, "-o", str(tmp_path / "out.mp4"), "-p", str(project), *extra)]
    proc = subprocess.Popen([sys.executable, "-m", "mfollow", *argv], env=cli_env("MFOLLOW_DEBUG"),
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    state = project / "long" / "state.safetensors"
    deadline = time.monotonic() + 300
    while not state.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 143, err
    assert err.strip().splitlines()[-1] == "mfollow: terminated"
    assert state.exists() and not (tmp_path / "out.mp4").exists()
    assert not list((project / "long").glob(".spill-*"))  # its temporary conditioning is gone
    r = mfollow(*argv, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["resumed_from_step"] >= 1
    assert (read_frames(tmp_path / "ref.mp4") == read_frames(tmp_path / "out.mp4")).all()


@pytest.mark.slow
def test_an_edit_holds_its_project_for_the_whole_run(world: Path, tmp_path: Path) -> None:
    """A project that another live process holds is refused (exit 5), also when the edit's stages
    are given and only its preview and result would be written there; the lock is re-entrant
    within the edit (its stages take it again) and gone when the edit ends."""
    from procs import project_locked_by_child

    from mfollow.preprocess.lock import LOCK

    project = tmp_path / "shared.mfollow"
    extra = ("-p", str(project), "--preview-every", "1", "--frames", "4")
    with project_locked_by_child(project):
        one_line_error(mfollow("edit", *args(world, "-o", str(tmp_path / "a.mp4"), *extra)), 5, "locked by process")
    assert not (tmp_path / "a.mp4").exists()
    r = mfollow("edit", *args(world, "-o", str(tmp_path / "b.mp4"), *extra))  # the child's stale lock is taken over
    assert r.returncode == 0, r.stderr
    assert (project / "result.json").is_file() and not (project / LOCK).exists()
