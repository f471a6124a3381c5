"""Running the real CLI in a subprocess, and what a one-line error looks like."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def cli_env(*drop: str) -> dict[str, str]:
    """This environment without ``drop``, and this process's torch thread count for the CLI: float
    sums depend on the count, so a test comparing its own frames with a CLI's gets the same bits
    (under pytest-xdist each worker runs one thread)."""
    import torch

    return {k: v for k, v in os.environ.items() if k not in drop} | {"OMP_NUM_THREADS": str(torch.get_num_threads())}


def mfollow(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mfollow", *args], capture_output=True, text=True, cwd=cwd, env=cli_env("MFOLLOW_DEBUG"),
        timeout=600,
    )  # fmt: skip


def one_line_error(result: subprocess.CompletedProcess[str], code: int, *needles: str) -> None:
    assert result.returncode == code, result.stderr
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def run(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = cli_env("MFOLLOW_DEBUG", "MFOLLOW_WEIGHTS")
    return subprocess.run(
        [sys.executable, "-m", "mfollow", *args],
        capture_output=True, text=True, cwd=cwd, env=base | (env or {}), timeout=600,
    )  # fmt: skip
