"""Downloading a component (``mfollow weights download``): from its pinned Hugging Face Hub
revision, from its HTTPS addresses, or (the authors' checkpoints) from their Google Drive folder
(:mod:`mfollow.weights.drive`). Every file is checked against a known hash, staged, moved into place
only when complete, and stamped (:mod:`mfollow.weights.stamps`)."""

from __future__ import annotations

import os
import shutil
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from mfollow.io.atomic import atomic_write_json
from mfollow.io.hashing import sha256_file
from mfollow.runtime.errors import WeightsError
from mfollow.version import __version__
from mfollow.weights.registry import OFFICIAL_URL, STAMP, Component, WeightFile, data_dir, get_component


def check_downloadable(name: str) -> Component:
    """The component, when ``weights download`` can fetch it here (checked before any download).

    Raises:
        WeightsError: unknown, not downloadable, or its downloader (gdown) is not installed.
    """
    import importlib.util

    comp = get_component(name)
    if not comp.downloadable:
        raise WeightsError(f"'{name}' cannot be downloaded automatically", hint=comp.how or f"see {OFFICIAL_URL}")
    if comp.drive_folder is not None and importlib.util.find_spec("gdown") is None:
        from mfollow.weights.drive import GET_GDOWN

        raise WeightsError(f"downloading '{name}' needs gdown", hint=GET_GDOWN)
    return comp


def download(name: str, to: Path | None = None, progress: Callable[[str, int, int], None] | None = None) -> Path:
    """Fetch a component into ``to`` (default: the data folder): from its pinned hub revision, or
    from its HTTPS addresses. Verified, staged, stamped; nothing is left behind on failure.

    Raises:
        WeightsError: not downloadable, source unreachable, or a checksum mismatch.
    """
    comp = check_downloadable(name)
    if comp.drive_folder is not None:  # the authors' checkpoints: fetched, then imported (census-checked)
        from mfollow.weights.drive import download_official

        return download_official(to, weights=to, folder_id=comp.drive_folder)
    files, revision = comp.files, comp.revision
    if comp.repo_id is not None:
        files, revision = _hub_plan(comp)
        fetch = _hub_fetcher(comp, revision)
    else:
        fetch = _https_fetch
    root = Path(to) if to is not None else data_dir()
    final = root / name
    staging = root / f".{name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    stamp: dict[str, object] = {"source": comp.source, "repo_id": comp.repo_id, "revision": revision, "files": {}}
    if revision != comp.revision:
        stamp["requested_revision"] = comp.revision
    try:
        for i, f in enumerate(files):
            if progress is not None:
                progress(f.path, i, len(files))
            got = fetch(f, staging)
            digest = sha256_file(got)
            if not f.matches(digest):
                raise WeightsError(f"{name}/{f.path}: SHA-256 {digest} does not match the expected {f.expected}")
            if f.git_blob is not None and _git_blob_id(got) != f.git_blob:
                raise WeightsError(f"{name}/{f.path}: content does not match the hub's git blob {f.git_blob}")
            if f.size is not None and got.stat().st_size != f.size:
                raise WeightsError(f"{name}/{f.path}: {got.stat().st_size} bytes, expected {f.size}")
            stamp["files"][f.path] = {"size": got.stat().st_size, "sha256": digest}  # type: ignore[index]
        shutil.rmtree(staging / ".cache", ignore_errors=True)  # huggingface_hub's local_dir metadata
        atomic_write_json(staging / STAMP, stamp)
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _is_commit(revision: str | None) -> bool:
    return revision is not None and len(revision) == 40 and all(c in "0123456789abcdef" for c in revision)


def _git_blob_id(path: Path) -> str:
    """Git's object id of a file (SHA-1 of ``blob <size>\\0`` and the content)."""
    import hashlib

    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


#: Reads a hub repo's file list with hashes at a revision (a seam for tests).
def _model_info(repo_id: str, revision: str | None) -> object:
    from huggingface_hub import HfApi

    return HfApi().model_info(repo_id, revision=revision, files_metadata=True)


def _hub_plan(comp: Component) -> tuple[tuple[WeightFile, ...], str | None]:
    """The files to fetch and the commit to fetch them at. A component pinned to a commit with a
    SHA-256 for every file is fetched as it is; otherwise its revision is resolved to the commit
    the hub serves for it, each file is checked against the hub's own hashes (LFS SHA-256, or the
    git blob id of small files), and a listed safetensors file is preferred to its pickle."""
    if _is_commit(comp.revision) and all(f.sha256 for f in comp.files):
        return comp.files, comp.revision
    _hub_fetcher(comp, comp.revision)  # refused up front when the hub is switched off
    try:
        info = _model_info(str(comp.repo_id), comp.revision)
    except Exception as exc:  # huggingface_hub's HTTP errors, network errors
        raise WeightsError(
            f"cannot read {comp.repo_id}@{comp.revision} from the hub ({_first_line(exc)})",
            hint="check the network, or place the files by hand and pass --weights DIR",
        ) from exc
    listed = {s.rfilename: s for s in getattr(info, "siblings", None) or []}
    planned = []
    for f in comp.files:
        rel = f.path if f.path in listed or f.alternative not in listed else f.alternative
        entry = listed.get(rel)  # type: ignore[arg-type]
        if entry is None:
            raise WeightsError(f"{comp.repo_id}@{comp.revision}: no {f.path} in the repository")
        lfs = getattr(entry, "lfs", None)
        sha = f.sha256 if rel == f.path and f.sha256 else (getattr(lfs, "sha256", None) if lfs else None)
        blob = None if lfs else getattr(entry, "blob_id", None)
        if sha is None and blob is None:
            raise WeightsError(f"{comp.repo_id}@{comp.revision}: the hub gives no hash for {rel}; refusing it")
        planned.append(WeightFile(str(rel), sha, getattr(entry, "size", None), git_blob=blob))
    return tuple(planned), str(info.sha)  # type: ignore[attr-defined]


def _hub_fetcher(comp: Component, revision: str | None) -> Callable[[WeightFile, Path], Path]:
    """A fetcher for one hub component's files at ``revision`` (refused up front when the hub is
    switched off)."""
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    if constants.HF_HUB_OFFLINE:
        raise WeightsError(
            f"cannot download '{comp.name}': the Hugging Face Hub is switched off (HF_HUB_OFFLINE=1)",
            hint="unset it, or place the files by hand and pass --weights DIR",
        )

    def fetch(f: WeightFile, staging: Path) -> Path:
        try:
            return Path(hf_hub_download(comp.repo_id, f.path, revision=revision, local_dir=str(staging)))
        except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as exc:
            raise WeightsError(
                f"cannot download {comp.repo_id}/{f.path}@{revision} ({str(exc).splitlines()[0]})",
                hint="check the network, or place the files by hand and pass --weights DIR",
            ) from exc

    return fetch


#: Opens an HTTPS request (a seam for tests, which serve files without a network).
_urlopen = urllib.request.urlopen


def _https_fetch(f: WeightFile, staging: Path) -> Path:
    """Stream ``f.url`` into ``staging/f.path``."""

    assert f.url is not None
    if not f.url.startswith("https://"):
        raise WeightsError(f"{f.url}: only https:// sources are fetched")
    dest = staging / f.path
    dest.parent.mkdir(parents=True, exist_ok=True)
    request = urllib.request.Request(f.url, headers={"User-Agent": f"mfollow/{__version__}"})
    try:
        with _urlopen(request, timeout=60) as response, open(dest, "wb") as out:
            while chunk := response.read(1 << 20):
                out.write(chunk)
    except (urllib.error.URLError, OSError) as exc:
        raise WeightsError(
            f"cannot download {f.url} ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})",
            hint="check the network, or place the file by hand and pass --weights DIR",
        ) from exc
    return dest
