"""Preflight: every input, option and output of a command checked before any model loads
(docs/editing.md, "Preflight"), so that a mistake costs a second, never the GPU time.

Nothing here imports torch or the networks: only path look-ups, PyAV's probe and Pillow. The
checks raise the typed errors of :mod:`mfollow.runtime.errors` (usage 2, media 4, project 5).

Outputs are never inputs: an output that is the same file as any input (resolved paths, symlinks
and hard links: :func:`same_file`) is refused, so nothing the user owns can be overwritten.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from mfollow.runtime.errors import MediaError, ProjectError, UsageError

if TYPE_CHECKING:
    from mfollow.io.video.probe import VideoInfo

VIDEO_OUTPUT_SUFFIXES = (".mp4", ".m4v")  # the writer makes H.264 in an MP4 container


def same_file(a: Path, b: Path) -> bool:
    """True when ``a`` and ``b`` name one file: the same resolved path, or (both existing) the
    same inode, which catches symlinks and hard links."""
    with contextlib.suppress(OSError):
        if a.resolve() == b.resolve():
            return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return False


def check_exists(path: Path, label: str) -> None:
    if not path.exists():
        raise MediaError(f"{path}: no such file or folder ({label})")
    if not os.access(path, os.R_OK):
        raise MediaError(f"{path}: not readable ({label})")


def check_video(path: Path, label: str) -> VideoInfo:
    """An existing, decodable video (probed: its container and stream headers); its probe."""
    from mfollow.io.video import probe

    check_exists(path, label)
    if path.is_dir():
        raise MediaError(f"{path}: is a folder, expected a video ({label})")
    return probe(path)  # MediaError when it is not a video


def check_source(path: Path) -> VideoInfo | None:
    """SRC: a video, a still image, or a folder of frames of one size (:mod:`mfollow.io.media`);
    the video's probe (None for images)."""
    from mfollow.io.media import is_still, media_info

    check_exists(path, "SRC")
    if is_still(path):
        from PIL import Image

        try:
            with Image.open(path) as im:
                im.verify()
        except OSError as exc:
            raise MediaError(f"{path}: not a readable image (SRC)") from exc
    if path.is_dir() or is_still(path):
        media_info(path)  # the folder's frames: listed, readable, one size
        return None
    return check_video(path, "SRC")


def check_output(path: Path, inputs: Iterable[tuple[str, Path]], *, label: str = "--output") -> None:
    """``path`` can be written as a new output: an .mp4 name (a video, not a folder) or a name
    without a suffix (a folder of PNG frames: :mod:`mfollow.io.frame_folder`), not any input, and
    its folder can be created and written (proved by creating and removing a file there).

    Raises:
        UsageError: a bad name, or the same file as an input (exit 2).
        MediaError: a folder, or a place that cannot be written (exit 4).
    """
    from mfollow.io.frame_folder import check_frame_folder, is_frame_folder

    if is_frame_folder(path):
        check_frame_folder(path, label)
    elif path.suffix.lower() not in VIDEO_OUTPUT_SUFFIXES:
        raise UsageError(
            f"{label} {path}: the output is an H.264 video (a .mp4 name) or a folder of PNG frames (a name "
            "without a suffix)"
        )
    elif path.is_dir():
        raise MediaError(f"{path}: is a folder; {label} must name a video file")
    for what, inp in inputs:
        if same_file(path, inp):
            raise UsageError(f"{label} {path}: is the input {what} ({inp}); choose another output")
    check_writable_folder(path.parent, f"{label} {path}")


def check_writable_folder(folder: Path, label: str) -> None:
    """``folder`` exists or can be created, and a file can be created in it: a probe file is made
    and removed in the folder or, where it does not exist yet, in its nearest existing ancestor
    (where its first missing folder would be made: the same permission), and the missing folders'
    names must fit the file system. No folder is created to find out, so nothing is left behind
    and processes probing one folder at once (every rank under torchrun runs the preflight) cannot
    remove what another is probing."""
    at, missing = folder, []
    while not at.exists() and at != at.parent:  # exists() is False under a file, too
        if at.is_symlink():  # a link to nothing: no folder can be made there
            raise MediaError(f"{label}: cannot write in {folder} ({at} is a broken link)")
        missing.append(at.name)
        at = at.parent
    try:
        limit = _name_max(at) if missing else None
        too_long = [name for name in missing if limit is not None and len(os.fsencode(name)) > limit]
        if too_long:
            raise OSError(errno.ENAMETOOLONG, f"a name longer than {limit} bytes: {too_long[0][:40]}...")
        probe_file = at / f".mfollow-write-test-{secrets.token_hex(4)}"
        probe_file.touch(exist_ok=False)
        probe_file.unlink()
    except OSError as exc:
        raise MediaError(f"{label}: cannot write in {folder} ({exc.strerror or exc})") from exc


def _name_max(folder: Path) -> int | None:
    """The longest file name ``folder``'s file system takes, in bytes (None where it does not say)."""
    try:
        return os.pathconf(folder, "PC_NAME_MAX")  # POSIX
    except (AttributeError, OSError, ValueError):  # no pathconf (Windows), not a folder, not reported
        return None


def check_project(path: Path) -> None:
    """A project folder that exists as a folder, or can be created (exit 5 otherwise)."""
    if path.exists() and not path.is_dir():
        raise ProjectError(f"{path}: is a file, expected a project directory")
    try:
        check_writable_folder(path, f"project {path}")
    except MediaError as exc:
        raise ProjectError(exc.message) from None


def check_checkpoint(path: Path) -> None:
    """A sampler checkpoint a resume would read: it must be a readable safetensors file (exit 5
    with the way out otherwise)."""
    if not path.exists():
        return
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
        if "key" not in meta or "step" not in meta:
            raise ValueError("no run key or step recorded")
    except Exception as exc:  # safetensors raises its own SafetensorError for a damaged file
        raise ProjectError(f"{path}: unreadable checkpoint ({exc})", hint="pass --restart to start over") from exc
