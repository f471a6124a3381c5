"""Stamps: what was installed (each file's size and SHA-256), written beside a component so that
``mfollow weights verify`` can re-check it later."""

from __future__ import annotations

import json
from pathlib import Path

from mfollow.io.atomic import atomic_write_json
from mfollow.io.hashing import sha256_file
from mfollow.runtime.errors import WeightsError
from mfollow.weights.registry import BUNDLED_SHA256, STAMP, WeightFile, get_component, locate, resolve


def write_stamp(folder: Path, **info: object) -> None:
    """Record each file's size and SHA-256 (what ``verify`` re-checks)."""
    files = {
        p.relative_to(folder).as_posix(): {"size": p.stat().st_size, "sha256": sha256_file(p)}
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != STAMP
    }
    atomic_write_json(folder / STAMP, {**info, "files": files})


def verify(name: str, explicit: Path | None = None) -> dict[str, str]:
    """Re-hash a component's files against the registry's SHA-256 (or the stamp written when the
    files were installed). Returns file -> "ok" | "no reference"; raises on any mismatch."""
    loc = locate(name, explicit)
    folder = loc.path or resolve(name, explicit)  # resolve: the error saying how to get it
    comp = get_component(name)
    recorded: dict[str, dict[str, object]] = {}
    if loc.origin == "bundled":
        recorded = {p: {"sha256": sha} for p, sha in BUNDLED_SHA256.get(name, {}).items()}
    elif (folder / STAMP).is_file():
        try:
            recorded = json.loads((folder / STAMP).read_text())["files"]
        except (OSError, ValueError, KeyError) as exc:
            raise WeightsError(f"{folder / STAMP}: unreadable stamp ({exc})") from exc
    result = {}
    for f in comp.files:
        path = f.found(folder)
        if path is None:
            raise WeightsError(f"{folder / f.path}: missing", hint="download it again")
        rel = path.relative_to(folder).as_posix()
        stamped = (recorded.get(rel) or {}).get("sha256")
        # the registry's full SHA-256, else the stamp's, else the published prefix (if any)
        reference = WeightFile(rel, str(stamped)) if stamped and not (f.sha256 and rel == f.path) else f
        if reference.expected is None:
            result[rel] = "no reference"
            continue
        digest = sha256_file(path)
        if not reference.matches(digest):
            raise WeightsError(
                f"{path}: SHA-256 {digest} does not match {reference.expected}", hint="download it again"
            )
        result[rel] = "ok"
    return result
