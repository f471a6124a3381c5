"""Behaviour kept byte for byte: the real CLI's outputs against golden hashes recorded before the
package was laid out anew (the demo, an edit and a two-window ``long`` on random tiny weights).

The goldens (``golden/outputs.json``) are the sha256 of every written video and the ``--json``
reports without timings. A change that alters a single output byte fails here; a deliberate
change of behaviour re-records them with ``python tests/test_golden.py --record`` and says so in
the CHANGELOG.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

GOLDEN = Path(__file__).parent / "golden" / "outputs.json"
VOLATILE = {"timings", "budget"}  # wall-clock figures and the free memory (the memory plan's budget)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _mfollow(*args: str, cwd: Path) -> dict[str, Any]:
    # two threads, as the goldens were recorded (float sums, and so the bytes, depend on the count)
    env = {k: v for k, v in os.environ.items() if k != "MFOLLOW_DEBUG"} | {"OMP_NUM_THREADS": "2"}
    r = subprocess.run(
        [sys.executable, "-m", "mfollow", *args, "--json", "--progress", "none"],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def _plain(report: Any, root: Path) -> Any:
    """The report without timings and with the temporary folder written as ``<tmp>``; a weights
    identity (names, sizes and mtimes of the files: a fresh clone or a fresh save gives another)
    is kept as its length."""
    if isinstance(report, dict):
        plain = {k: _plain(v, root) for k, v in sorted(report.items()) if k not in VOLATILE}
        if isinstance(plain.get("weights"), str):
            plain["weights"] = len(plain["weights"])
        return plain
    if isinstance(report, list):
        return [_plain(v, root) for v in report]
    if isinstance(report, str):
        return report.replace(str(root), "<tmp>")
    return report


def produce(root: Path) -> dict[str, Any]:
    """Run the three golden commands in ``root``; return their hashes and reports."""
    from mfollow.models.bundle import ModelBundle
    from mfollow.synth import make_pair
    from mfollow.synth.files import write_pair

    out: dict[str, Any] = {}
    demo = _mfollow("demo", "demo", "--seed", "7", cwd=root)
    out["demo"] = {
        "report": _plain(demo, root),
        "result.mp4": _sha(root / "demo" / "result.mp4"),
        "side_by_side.mp4": _sha(root / "demo" / "side_by_side.mp4"),
    }
    ModelBundle.random("tiny", seed=0).save_pretrained(root / "random")
    write_pair(make_pair(2, frames=12, size=64, camera="pan"), root / "pair")
    given = [
        "--source-poses", "pair/source_poses.json", "--edit-poses", "pair/edit_poses.json",
        "--source-masks", "pair/source_masks", "--edit-masks", "pair/edit_masks",
        "--weights", "random", "--steps", "3", "--size", "64", "--seed", "5",
    ]  # fmt: skip
    edit = _mfollow("edit", "pair/source.mp4", "pair/target.mp4", "-o", "random-edit.mp4", *given, cwd=root)
    out["edit"] = {"report": _plain(edit, root), "edit.mp4": _sha(root / "random-edit.mp4")}
    long = _mfollow(
        "long", "pair/source.mp4", "pair/target.mp4", "-o", "random-long.mp4", *given,
        "--window", "8", "--overlap", "4", "-p", "long.mfollow", cwd=root,
    )  # fmt: skip
    assert len(long["windows"]) == 2
    out["long"] = {"report": _plain(long, root), "long.mp4": _sha(root / "random-long.mp4")}
    return out


@pytest.mark.slow
def test_outputs_are_the_recorded_bytes(tmp_path: Path) -> None:
    golden = json.loads(GOLDEN.read_text())
    got = produce(tmp_path)
    for name in ("demo", "edit", "long"):
        assert got[name] == golden[name], name


if __name__ == "__main__" and sys.argv[1:] == ["--record"]:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(produce(Path(tmp)), indent=1, sort_keys=True) + "\n")
    print(f"recorded {GOLDEN}")
