"""`long` and `--batch` under torchrun (gloo, CPU): the same bits as one process, resumable across
world sizes, a failing rank ends every rank, batch jobs split over the ranks."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from mfollow.io.video import read_frames
from mfollow.runtime.distributed import Group
from mfollow.sampling.spread import Spread, share
from mfollow.sampling.windows import layout

ENV = {"OMP_NUM_THREADS": "1", "MFOLLOW_DIST_TIMEOUT": "120"}  # one thread a process, in both layouts


def _env(**extra: str) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("MFOLLOW_DEBUG", "RANK", "WORLD_SIZE")} | ENV | extra


def torchrun(n: int, *args: str, **popen: object) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(n),
            "-m", "mfollow", *args]  # fmt: skip


def one(*args: str) -> list[str]:
    return [sys.executable, "-m", "mfollow", *args]


def run(cmd: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, env=_env(**env), timeout=600)


@pytest.fixture(scope="module")
def world(synth_world: Callable[..., Path]) -> Path:
    return synth_world(6, 30)


def long_args(world: Path, out: Path, project: Path, *extra: str) -> list[str]:
    p = world / "pair"
    return [
        "long", str(p / "source.mp4"), str(p / "target.mp4"), "-o", str(out), "-p", str(project),
        "--source-poses", str(p / "source_poses.json"), "--edit-poses", str(p / "edit_poses.json"),
        "--source-masks", str(p / "source_masks"), "--edit-masks", str(p / "edit_masks"),
        "--preset", "tiny", "--weights", str(world / "bundle"), "--size", "64", "--window", "8", "--overlap", "3",
        "-q", *extra,
    ]  # fmt: skip


def test_share_and_spread_bookkeeping() -> None:
    assert share(6, 2) == [range(0, 3), range(3, 6)] and share(2, 3) == [range(0, 0), range(0, 1), range(1, 2)]
    windows = layout(30, 8, 3)  # 6 windows
    spreads = [Spread(windows, Group(rank=r, world=3)) for r in range(3)]
    owned = np.concatenate([s.owned for s in spreads])
    assert sorted(owned.tolist()) == list(range(30))  # every frame owned by exactly one rank
    for s in spreads:  # only the seams are exchanged: frames that windows of two ranks cover
        for k, idx in s.exchanged.items():
            frames = set((windows[k].start + idx).tolist())
            others = {f for r, o in enumerate(spreads) if o is not s for j in o.mine
                      for f in range(windows[j].start, windows[j].stop)}  # fmt: skip
            mine = set(range(windows[k].start, windows[k].stop))
            assert frames == mine & others


@pytest.mark.slow
def test_two_and_three_ranks_give_the_same_bits_as_one_process(world: Path, tmp_path: Path) -> None:
    r = run(one(*long_args(world, tmp_path / "one.mp4", tmp_path / "p1", "--steps", "2")))
    assert r.returncode == 0, r.stderr
    for n in (2, 3):  # 6 windows: blocks of 3 + 3, and 2 + 2 + 2
        out, project = tmp_path / f"{n}.mp4", tmp_path / f"p{n}"
        r = run(torchrun(n, *long_args(world, out, project, "--steps", "2", "--json")))
        assert r.returncode == 0, r.stderr[-3000:]
        doc = json.loads(r.stdout)  # rank 0 alone prints
        assert doc["world_size"] == n and doc["exchange"]["bytes_sent"] > 0
        np.testing.assert_array_equal(read_frames(tmp_path / "one.mp4"), read_frames(out))
        assert list((project / "long").iterdir()) == []  # no spill, no checkpoint left


@pytest.mark.slow
def test_killed_under_two_ranks_resumes_in_one_process(world: Path, tmp_path: Path) -> None:
    args = ("--steps", "3", "--guidance", "none")  # unguided: cheap steps; the kill lands after the first
    r = run(one(*long_args(world, tmp_path / "ref.mp4", tmp_path / "ref", *args)))
    assert r.returncode == 0, r.stderr
    project = tmp_path / "proj"
    state = project / "long" / "state.safetensors"
    for attempt in range(2):  # a launch that dies before its first step (torchrun's start-up) is retried once
        log = tmp_path / f"torchrun-{attempt}.log"
        (tmp_path / "out.mp4").unlink(missing_ok=True)
        with open(log, "w") as err:
            proc = subprocess.Popen(torchrun(2, *long_args(world, tmp_path / "out.mp4", project, *args)),
                                    env=_env(), stdout=subprocess.DEVNULL, stderr=err,
                                    start_new_session=True)  # fmt: skip
            deadline = time.monotonic() + 300
            while not state.exists() and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            ranks = _descendants(proc.pid)  # torchrun starts each rank in a session of its own
            for pid in [proc.pid, *ranks]:  # every rank and the launcher, mid-run
                with contextlib.suppress(ProcessLookupError):  # a helper process that has just ended
                    os.kill(pid, signal.SIGKILL)
            proc.wait()
        while any(Path(f"/proc/{pid}").exists() and "Z" not in _state(pid) for pid in ranks):
            time.sleep(0.05)  # until the ranks are gone (their lock is then stale)
        if state.exists():
            break
    assert state.exists(), log.read_text()[-3000:]
    assert state.exists() and not (tmp_path / "out.mp4").exists()
    r = run(one(*long_args(world, tmp_path / "out.mp4", project, *args, "--json")))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["resumed_from_step"] >= 1
    np.testing.assert_array_equal(read_frames(tmp_path / "ref.mp4"), read_frames(tmp_path / "out.mp4"))


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid``: its children, theirs, and so on (Linux /proc)."""
    found, todo = [], [pid]
    while todo:
        kids = _children(todo.pop())
        found += kids
        todo += kids
    return found


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


@pytest.mark.slow
def test_a_failing_rank_ends_every_rank(world: Path, tmp_path: Path) -> None:
    """Rank 1's windows fail (a media error, injected at start-up): every rank stops with exit 4,
    rank 0 says why, nothing is written, nothing hangs."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import os\n"
        "if os.environ.get('RANK') == '1':\n"
        "    import mfollow.sampling.paper as s\n"
        "    from mfollow.runtime.errors import MediaError\n"
        "    def broken(*a, **k):\n"
        "        raise MediaError('injected failure')\n"
        "    s.predict = broken\n"
    )
    r = run(torchrun(2, *long_args(world, tmp_path / "out.mp4", tmp_path / "p", "--steps", "2")),
            PYTHONPATH=str(hook))  # fmt: skip
    assert r.returncode != 0
    assert "mfollow: error: rank 1: injected failure" in r.stderr
    assert r.stderr.count("mfollow: error:") == 1  # rank 0 speaks for both
    assert "exitcode  : 4" in r.stderr or "exitcode: 4" in r.stderr.replace(" ", "")
    assert not (tmp_path / "out.mp4").exists()


@pytest.mark.slow
def test_batch_jobs_are_split_over_the_ranks(world: Path, tmp_path: Path) -> None:
    p = world / "pair"
    common = {"source_poses": str(p / "source_poses.json"), "edit_poses": str(p / "edit_poses.json"),
              "source_masks": str(p / "source_masks"), "edit_masks": str(p / "edit_masks"), "frames": 4}  # fmt: skip
    jobs = [
        {"source": str(p / "source.mp4"), "output": "a.mp4", **common},
        {"source": "missing.mp4", "output": "b.mp4", **common},
        {"source": str(p / "source.mp4"), "output": "c.mp4", "seed": 3, **common},
    ]
    (tmp_path / "jobs.jsonl").write_text("".join(json.dumps(j) + "\n" for j in jobs))
    args = ["edit", "--batch", str(tmp_path / "jobs.jsonl"), "--preset", "tiny", "--weights", str(world / "bundle"),
            "--size", "64", "--steps", "1", "-q"]  # fmt: skip
    r = run(torchrun(2, *args))
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    assert [x["job"] for x in lines] == [0, 1, 2] and [x["ok"] for x in lines] == [True, False, True]
    assert lines[1]["exit_code"] == 4 and lines[2]["seed"] == 3
    assert (tmp_path / "a.mp4").is_file() and (tmp_path / "c.mp4").is_file()
    assert "exitcode" in r.stderr  # torchrun reports the ranks' exit code (4: the first failure's)
    single = ["edit", *args[3:], str(p / "source.mp4"), "-o", str(tmp_path / "e.mp4")]
    single.remove("-q")
    r = subprocess.run(one(*single), capture_output=True, text=True, env=_env(WORLD_SIZE="2"), timeout=600)
    assert r.returncode == 2 and "under torchrun use 'long'" in r.stderr  # one window is not shared
