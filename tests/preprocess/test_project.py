"""mfollow.preprocess.project: stage keys, freshness rules, atomic commits, status, clean, the lock."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from procs import project_locked_by_child

from mfollow.io.atomic import atomic_write_text
from mfollow.preprocess import project as P
from mfollow.runtime.errors import ProjectError, ProjectLockedError, UsageError


def _spec(src: Path, **params: object) -> P.StageSpec:
    return P.StageSpec("pose", "1", inputs={"video": src}, params={"backend": "file", **params})


def _run(proj: P.Project, spec: P.StageSpec, text: str = "poses") -> bool:
    """Run a toy stage; returns True when it was a cache hit."""
    key = proj.key(spec)
    if proj.is_fresh(spec.name, key):
        return True
    with proj.stage_writer(spec, key) as out:
        (out / "poses.json").write_text(text)
        (out / "sub").mkdir()
        (out / "sub" / "a.txt").write_text("a")
    return False


@pytest.fixture
def src(tmp_path: Path) -> Path:
    path = tmp_path / "src.mp4"
    path.write_bytes(b"pretend video bytes")
    return path


def test_unchanged_rerun_is_a_cache_hit(tmp_path: Path, src: Path) -> None:
    with P.Project.open(tmp_path / "proj") as proj:
        assert _run(proj, _spec(src)) is False
        assert _run(proj, _spec(src)) is True
        outs = proj.outputs("pose")
        assert set(outs) == {"poses.json", "sub/a.txt"} and outs["poses.json"].read_text() == "poses"
    with P.Project.open(tmp_path / "proj") as proj:  # and across processes (manifest on disk)
        assert _run(proj, _spec(src)) is True


def test_parameter_change_makes_stage_stale(tmp_path: Path, src: Path) -> None:
    with P.Project.open(tmp_path / "proj") as proj:
        _run(proj, _spec(src))
        assert not proj.is_fresh("pose", proj.key(_spec(src, backend="dwpose")))
        assert _run(proj, _spec(src, smoothing=True)) is False
        # the old key's folder is gone, only the new one remains
        assert [p.name for p in (tmp_path / "proj" / "pose").iterdir()] == [proj.key(_spec(src, smoothing=True))[:16]]


def test_key_depends_on_content_weights_and_code_not_on_path(tmp_path: Path, src: Path) -> None:
    with P.Project.open(tmp_path / "proj") as proj:
        k = proj.key(_spec(src))
        copy = tmp_path / "elsewhere.mp4"
        copy.write_bytes(src.read_bytes())
        assert proj.key(_spec(copy)) == k
        assert proj.key(P.StageSpec("pose", "2", inputs={"video": src}, params={"backend": "file"})) != k
        assert proj.key(P.StageSpec("pose", "1", {"video": src}, {"backend": "file"}, {"dwpose": "abc"})) != k
        src.write_bytes(b"other bytes")
        assert proj.key(_spec(src)) != k


def test_touched_but_identical_input_stays_fresh_and_is_rehashed(tmp_path: Path, src: Path, monkeypatch) -> None:
    with P.Project.open(tmp_path / "proj") as proj:
        _run(proj, _spec(src))
    from mfollow.io import hashing

    calls = []
    real = hashing.sha256_file
    monkeypatch.setattr(hashing, "sha256_file", lambda p: calls.append(p) or real(p))
    with P.Project.open(tmp_path / "proj") as proj:
        assert _run(proj, _spec(src)) is True
        assert calls == []  # size and mtime unchanged: the recorded hash is reused
    os.utime(src, ns=(time.time_ns(), time.time_ns() + 10**9))
    with P.Project.open(tmp_path / "proj") as proj:
        assert _run(proj, _spec(src)) is True
        assert len(calls) == 1  # mtime changed: hashed again, same content


def test_failed_stage_leaves_previous_state(tmp_path: Path, src: Path) -> None:
    root = tmp_path / "proj"
    with P.Project.open(root) as proj:
        _run(proj, _spec(src))
        manifest_before = (root / "mfollow.json").read_bytes()
        with pytest.raises(RuntimeError), proj.stage_writer(_spec(src, backend="x")) as out:
            (out / "poses.json").write_text("half")
            raise RuntimeError("crash mid-stage")
        assert (root / "mfollow.json").read_bytes() == manifest_before
        assert proj.is_fresh("pose", proj.key(_spec(src)))
        assert not any(p.name.startswith(".staging") for p in (root / "pose").iterdir())


def test_damaged_output_is_not_fresh(tmp_path: Path, src: Path) -> None:
    with P.Project.open(tmp_path / "proj") as proj:
        _run(proj, _spec(src))
        proj.outputs("pose")["sub/a.txt"].unlink()
        assert not proj.is_fresh("pose", proj.key(_spec(src)))
        status = {s.name: s for s in proj.status()}
        assert status["pose"].state == "stale" and "missing" in status["pose"].reason


def test_status_reports_fresh_stale_missing_and_upstream(tmp_path: Path, src: Path, monkeypatch) -> None:
    monkeypatch.setattr(P, "STAGE_CODE_VERSIONS", {"pose": "1", "align": "1", "mask": "1"})
    root = tmp_path / "proj"
    with P.Project.open(root) as proj:
        _run(proj, _spec(src))
        align = P.StageSpec("align", "1", inputs={"poses": P.StageRef("pose")}, params={"method": "none"})
        with proj.stage_writer(align) as out:
            (out / "edit.json").write_text("{}")
    states = {s.name: (s.state, s.reason) for s in P.Project.read(root).status()}
    assert states == {
        "pose": ("fresh", "up to date"),
        "align": ("fresh", "up to date"),
        "mask": ("missing", "never run"),
    }
    src.write_bytes(b"the source changed")
    states = {s.name: (s.state, s.reason) for s in P.Project.read(root).status()}
    assert states["pose"][0] == "stale" and "input video" in states["pose"][1]
    assert states["align"] == ("stale", "upstream stage 'pose' changed")
    monkeypatch.setattr(P, "STAGE_CODE_VERSIONS", {"pose": "1", "align": "2"})
    src.write_bytes(b"pretend video bytes")
    states = {s.name: (s.state, s.reason) for s in P.Project.read(root).status()}
    assert states["pose"][0] == "fresh"
    assert states["align"] == ("stale", "stage code changed (1 -> 2)")


def test_stage_ref_requires_the_upstream_stage(tmp_path: Path) -> None:
    with P.Project.open(tmp_path / "proj") as proj, pytest.raises(ProjectError, match="has not run"):
        proj.key(P.StageSpec("align", "1", inputs={"poses": P.StageRef("pose")}))


def test_clean_removes_stages_and_leftovers_but_not_user_files(tmp_path: Path, src: Path) -> None:
    root = tmp_path / "proj"
    with P.Project.open(root) as proj:
        _run(proj, _spec(src))
        (root / "pose" / ".staging-deadbeef").mkdir()
        (root / "pose" / "0123456789abcdef").mkdir()
        (root / ".mfollow.partial-1234abcd.json").write_text("{")
        (root / "my-notes").mkdir()
        (root / "long" / ".spill-killed").mkdir(parents=True)  # a killed `long` run's conditioning
        report = proj.clean([])
        assert report["removed"] == [
            ".mfollow.partial-1234abcd.json",
            "long/.spill-killed",
            "pose/.staging-deadbeef",
            "pose/0123456789abcdef",
        ]
        assert proj.is_fresh("pose", proj.key(_spec(src)))
        report = proj.clean(["pose"])
        assert report["stages"] == ["pose"] and report["bytes_freed"] == len("poses") + 1
        assert "pose" not in proj.manifest["stages"] and (root / "my-notes").is_dir()
        with pytest.raises(UsageError, match="no stage 'mask'"):
            proj.clean(["mask"])


# ------------------------------------------------------------------------------ manifest
def test_corrupt_manifest_is_an_error_and_never_overwritten(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    for bad in (b"{not json", b"[]", json.dumps({"format": 1, "stages": {"x": {}}, "files": {}}).encode()):
        (root / "mfollow.json").write_bytes(bad)
        with pytest.raises(ProjectError, match="corrupt manifest"):
            P.Project.open(root)
        with pytest.raises(ProjectError, match="corrupt manifest"):
            P.Project.read(root)
        assert (root / "mfollow.json").read_bytes() == bad
        assert not (root / ".lock").exists()  # the failed open released its lock


def test_manifest_from_another_format_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    (root / "mfollow.json").write_text(json.dumps({"format": 99, "stages": {}, "files": {}}))
    with pytest.raises(ProjectError, match="format 99"):
        P.Project.open(root)


def test_project_path_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(ProjectError, match="is a file"):
        P.Project.open(tmp_path / "f")
    with pytest.raises(ProjectError, match="no such project"):
        P.Project.read(tmp_path / "nope")


# ----------------------------------------------------------------------------------- lock
def test_lock_excludes_a_second_writer_and_is_released(tmp_path: Path) -> None:
    """Another thread (or process) is excluded; the holding thread may take the lock again (an
    edit holds its project while its stages open it), and it is released by the outermost close."""
    import threading

    root = tmp_path / "proj"
    with P.Project.open(root):
        info = json.loads((root / ".lock").read_text())
        assert info["pid"] == os.getpid()
        errors: list[BaseException] = []

        def other() -> None:
            try:
                P.Project.open(root)
            except ProjectLockedError as exc:
                errors.append(exc)

        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
        assert len(errors) == 1 and f"locked by process {os.getpid()}" in str(errors[0])
        with P.Project.open(root):  # re-entrant in the holding thread
            pass
        assert (root / ".lock").exists()  # still held by the outer open
        P.Project.read(root)  # reading needs no lock
    assert not (root / ".lock").exists()
    P.Project.open(root).close()


def test_lock_held_by_another_live_process(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    with project_locked_by_child(root) as child, pytest.raises(ProjectLockedError, match=f"process {child.pid}"):
        P.Project.open(root)
    # the owner died without releasing: the lock is stale and is taken over
    with P.Project.open(root):
        assert json.loads((root / ".lock").read_text())["pid"] == os.getpid()


@pytest.mark.slow
def test_stale_locks_are_recovered(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    host = socket.gethostname()
    for content in (
        json.dumps({"pid": int(dead.stdout), "host": host}),  # owner gone
        json.dumps({"pid": os.getpid(), "host": host, "start": "1"}),  # pid reused by another process
        "",  # owner died between creating and writing the file
    ):
        (root / ".lock").write_text(content)
        with P.Project.open(root):
            assert json.loads((root / ".lock").read_text())["pid"] == os.getpid()
    (root / ".lock").write_text(json.dumps({"pid": 1, "host": "another-machine"}))
    with pytest.raises(ProjectLockedError, match="another-machine"):
        P.Project.open(root)


# -------------------------------------------------------------------------- atomic writes
def test_atomic_write_interrupted_by_exception_keeps_previous(tmp_path: Path) -> None:
    from mfollow.io.atomic import atomic_path

    target = tmp_path / "m.json"
    target.write_text("old")
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as tmp:
        tmp.write_text("new but unfinished")
        raise KeyboardInterrupt
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["m.json"]
    atomic_write_text(target, "new")
    assert target.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["m.json"]


@pytest.mark.slow
def test_atomic_write_killed_mid_way_keeps_previous(tmp_path: Path) -> None:
    target = tmp_path / "big.bin"
    target.write_bytes(b"previous")
    code = (
        "import sys, time; from mfollow.io.atomic import atomic_path\n"
        f"with atomic_path({str(target)!r}) as tmp:\n"
        "    fh = open(tmp, 'wb'); fh.write(b'x' * 100000); fh.flush()\n"
        "    print('writing', flush=True); time.sleep(60)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdout.readline().strip() == "writing"
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert target.read_bytes() == b"previous"
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "big.bin"]
    assert len(leftovers) == 1 and ".partial-" in leftovers[0]  # recognisable, never the real name


def test_default_project_dir() -> None:
    assert P.default_project_dir("/videos/out.mp4") == Path("/videos/out.mfollow")


def test_a_lock_held_by_a_zombie_is_stale(tmp_path: Path) -> None:
    """A killed owner that its parent has not reaped yet (a zombie, as a killed torchrun rank can
    be) holds nothing: its lock is taken over."""
    import subprocess
    import sys
    import time

    from mfollow.preprocess.lock import _process_start

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 30
    while Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    root = tmp_path / "proj"
    root.mkdir()
    info = {"pid": child.pid, "host": socket.gethostname(), "start": _process_start(child.pid)}
    (root / ".lock").write_text(json.dumps(info))
    with P.Project.open(root):  # the zombie's lock is stale: taken over
        assert json.loads((root / ".lock").read_text())["pid"] == os.getpid()
    child.wait()
