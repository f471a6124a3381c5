"""Atomic file writes: write under a temporary name in the same folder, then ``os.replace``.

An interrupted write (exception, Ctrl-C, SIGKILL, power loss after fsync) never leaves a file that
looks complete: readers see either the previous file or the new one. Temporary names start with a
dot and contain ``.partial-`` so they are easy to recognise and clean up; they keep the final
suffix so that tools choosing a format by extension (the mp4 muxer) still work.
"""

from __future__ import annotations

import abc
import contextlib
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Self

PARTIAL_MARK = ".partial-"


def partial_path(path: Path) -> Path:
    """A unique temporary sibling of ``path``: ``dir/.NAME.partial-XXXXXXXX.SUFFIX``."""
    token = secrets.token_hex(4)
    return path.with_name(f".{path.stem}{PARTIAL_MARK}{token}{path.suffix}")


def _fsync_dir(directory: Path) -> None:
    # Make the rename itself durable. Not every platform can open a directory (Windows).
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(path: Path | str, *, fsync: bool = True) -> Iterator[Path]:
    """Yield a temporary path to write; on a clean exit it replaces ``path`` atomically.

    On any exception (KeyboardInterrupt included) the temporary file is removed and ``path`` is
    left exactly as it was. Raises ``OSError`` when the folder is missing or not writable.
    """
    path = Path(path)
    tmp = partial_path(path)
    try:
        yield tmp
        if fsync and tmp.is_file():
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    if fsync:
        _fsync_dir(path.parent)


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: Path | str, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path | str, obj: Any) -> None:
    """Write ``obj`` as indented, key-sorted JSON (plus a final newline) atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


@contextlib.contextmanager
def atomic_dir(path: Path | str) -> Iterator[Path]:
    """Yield a temporary sibling folder to fill; on a clean exit it becomes ``path`` (which must
    not exist: a folder that appeared meanwhile, from another writer of the same content, is kept
    and the new one dropped). On any exception the temporary folder is removed."""
    import shutil

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_path(path)
    tmp.mkdir()
    try:
        yield tmp
        try:
            tmp.rename(path)
        except OSError:
            if not path.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone already when renamed
    _fsync_dir(path.parent)


class CommitOnExit(abc.ABC):
    """A writer as a context manager: :meth:`close` commits on a clean exit, :meth:`abort` discards
    on an exception (the writers of :mod:`mfollow.io.video.write` and :mod:`mfollow.io.frame_folder`)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Commit what was written."""

    @abc.abstractmethod
    def abort(self) -> None:
        """Discard what was written; the destination keeps its previous content."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
