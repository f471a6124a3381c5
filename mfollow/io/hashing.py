"""Content hashes of inputs and weights: a file's SHA-256, a folder's (names and contents), and the
fingerprint that lets an unchanged file (same size and mtime) skip rehashing."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mfollow.runtime.errors import ProjectError


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's content."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class Fingerprint:
    """A file's identity: content hash plus the (size, mtime) that let us skip rehashing."""

    path: str  # absolute, resolved
    size: int
    mtime_ns: int
    sha256: str

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "mtime_ns": self.mtime_ns, "sha256": self.sha256}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Fingerprint:
        return cls(str(d["path"]), int(d["size"]), int(d["mtime_ns"]), str(d["sha256"]))


def fingerprint(path: Path | str, known: Fingerprint | None = None) -> Fingerprint:
    """Fingerprint ``path``; reuse ``known.sha256`` when size and mtime are unchanged.

    Raises:
        ProjectError: the file is missing or unreadable.
    """
    p = Path(path).resolve()
    try:
        if p.is_dir():  # a folder (of masks, pose images): its files' names, sizes and contents
            files = sorted(q for q in p.rglob("*") if q.is_file())
            size = sum(q.stat().st_size for q in files)
            mtime = max((q.stat().st_mtime_ns for q in files), default=p.stat().st_mtime_ns) + len(files)
            if known is not None and known.path == str(p) and (known.size, known.mtime_ns) == (size, mtime):
                return known
            digest = hashlib.sha256("".join(f"{q.relative_to(p).as_posix()}:{sha256_file(q)};" for q in files).encode())
            return Fingerprint(str(p), size, mtime, digest.hexdigest())
        st = p.stat()
        if known is not None and known.path == str(p) and (known.size, known.mtime_ns) == (st.st_size, st.st_mtime_ns):
            return known
        return Fingerprint(str(p), st.st_size, st.st_mtime_ns, sha256_file(p))
    except OSError as exc:
        raise ProjectError(f"{p}: cannot fingerprint input ({exc.strerror or exc})") from exc


def canonical_json(obj: Any) -> str:
    """Deterministic JSON (sorted keys, no spaces) used for hashing."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def hash_key(document: Mapping[str, Any]) -> str:
    """SHA-256 hex of ``canonical_json(document)``."""
    return hashlib.sha256(canonical_json(document).encode("ascii")).hexdigest()
