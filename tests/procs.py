"""Helpers that run other processes for tests."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def project_locked_by_child(root: Path) -> Iterator[subprocess.Popen[str]]:
    """A live child process holding ``root``'s project lock; it is killed (not released) on exit,
    so the lock it leaves behind is stale."""
    code = (
        "import time; from mfollow.preprocess.project import Project\n"
        f"p = Project.open({str(root)!r}); print('locked', flush=True); time.sleep(60)"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "locked"
        yield child
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        if child.stdout is not None:
            child.stdout.close()
