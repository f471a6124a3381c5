"""The exclusive lock of a project directory: ``DIR/.lock`` created with O_EXCL.

The file records the owner's pid, host and process start time. A lock whose owner is gone (on this
host), or whose pid now names another process (a different start time), is stale and is taken
over atomically; a live owner, or an owner on another host, raises :class:`ProjectLockedError`.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mfollow.runtime.errors import ProjectError, ProjectLockedError
from mfollow.version import __version__

LOCK = ".lock"


def _process_start(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (Linux), to tell a live owner from a reused pid."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
        return fields[19].decode()  # field 22 overall: starttime in clock ticks since boot
    except (OSError, IndexError):
        return None


def _pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs: a zombie (killed, not yet reaped by its parent) holds nothing."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):  # no /proc (not Linux): os.kill's answer stands
        return True


def _lock_is_stale(info: Mapping[str, Any]) -> bool:
    """A lock is stale when its owner on this host is dead (or its pid now names another process)."""
    if info.get("host") != socket.gethostname():
        return False  # cannot check another machine's processes
    pid = int(info.get("pid", -1))
    if not _pid_alive(pid):
        return True
    recorded, current = info.get("start"), _process_start(pid)
    return recorded is not None and current is not None and recorded != current


_THREAD = threading.local()  # .held: lock file -> how many holders in this thread (re-entrant, as an RLock)


def _held() -> dict[str, int]:
    if not hasattr(_THREAD, "held"):
        _THREAD.held = {}
    return _THREAD.held


class ProjectLock:
    """An exclusive lock on a project directory: ``DIR/.lock`` made with O_EXCL.

    The file records the owner's pid, host and process start time. A lock whose owner process is
    gone (on this host) is stale and is taken over; a live owner raises
    :class:`ProjectLockedError`. Within one thread the lock is re-entrant (as ``threading.RLock``):
    an edit holds its project for the whole run while the stages it runs take it again; another
    thread of the same process is excluded like another process.
    """

    def __init__(self, root: Path) -> None:
        self.path = root / LOCK
        self._held = False

    def acquire(self) -> None:
        key, held = str(self.path.resolve()), _held()
        if held.get(key):  # this thread holds it already
            held[key] += 1
            self._held = True
            return
        self._acquire_file()
        held[key] = 1

    def _acquire_file(self) -> None:
        me = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "start": _process_start(os.getpid()),
            "since": time.time(),
            "version": __version__,
        }
        for _ in range(5):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                self._take_over_if_stale()
                continue
            except OSError as exc:
                raise ProjectError(f"{self.path.parent}: cannot lock the project ({exc.strerror or exc})") from exc
            with os.fdopen(fd, "w") as fh:
                json.dump(me, fh)
            self._held = True
            return
        raise ProjectLockedError(f"{self.path.parent}: could not take the project lock")

    def _take_over_if_stale(self) -> None:
        try:
            info = json.loads(self.path.read_text())
        except FileNotFoundError:
            return  # released meanwhile: retry
        except (OSError, ValueError):
            # A lock file that is empty or garbled: its writer died between create and write, or
            # is writing right now. Wait a moment, then treat a still-garbled file as stale.
            time.sleep(0.2)
            try:
                info = json.loads(self.path.read_text())
            except FileNotFoundError:
                return
            except (OSError, ValueError):
                info = {"host": socket.gethostname(), "pid": -1}
        if not _lock_is_stale(info):
            raise ProjectLockedError(
                f"{self.path.parent}: locked by process {info.get('pid')} on {info.get('host')}",
                hint=f"wait for it to finish; if it is gone, delete {self.path}",
            )
        # Move the stale lock aside atomically so two processes cannot both take it over.
        aside = self.path.with_name(f"{LOCK}.stale-{secrets.token_hex(4)}")
        with contextlib.suppress(FileNotFoundError):
            os.rename(self.path, aside)
            aside.unlink()

    def release(self) -> None:
        if not self._held:
            return
        self._held = False
        key, held = str(self.path.resolve()), _held()
        held[key] = held.get(key, 1) - 1
        if held[key] <= 0:
            held.pop(key, None)
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
