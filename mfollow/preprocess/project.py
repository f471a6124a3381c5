"""The project directory: manifest, stage keys, freshness, atomic stage outputs, lock (docs/project.md).

Layout of a project ``DIR``::

    DIR/mfollow.json            the manifest (format, mfollow version, file fingerprints, stages)
    DIR/.lock                   present while a process writes the project (pid, host, start time)
    DIR/<stage>/<key16>/...     a stage's outputs; ``key16`` = first 16 hex digits of its key
    DIR/<stage>/.staging-*/     outputs being written (never read; removed on the next commit)

A stage's **key** is the SHA-256 of a canonical JSON document holding its inputs' content hashes,
its parameters, its code version and the hashes of the weights it uses. A stage is *fresh* when
the manifest records the same key and every recorded output file is present with its recorded
size; *stale* when it is recorded with another key (or its outputs were damaged); *missing* when
it is not recorded. Inputs are files (fingerprinted by content) or other stages (their keys), so a
change anywhere upstream makes everything downstream stale.

Fingerprints are fast: a file whose size and mtime match the manifest's record reuses the
recorded SHA-256; when they changed the file is hashed again (a touched but identical file is
still the same input).

Writes are atomic: outputs go to a staging folder that is renamed to its key folder, then the
manifest is replaced atomically. A crash at any point leaves the previous, consistent state.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from mfollow.io.atomic import PARTIAL_MARK, atomic_write_json
from mfollow.io.hashing import Fingerprint, fingerprint, hash_key
from mfollow.preprocess.lock import ProjectLock
from mfollow.runtime.errors import ProjectError, UsageError
from mfollow.version import __version__

MANIFEST = "mfollow.json"
SPILL_PREFIX = ".spill-"  # temporary conditioning of a `long` run (mfollow.edit.run)
FORMAT = 1  # manifest format version; bump on incompatible changes

StageState = Literal["fresh", "stale", "missing"]
_KEY_DIR = re.compile(r"[0-9a-f]{16}")


# ---------------------------------------------------------------------------------- stages
@dataclass(frozen=True)
class StageRef:
    """An input that is another stage's output: it contributes that stage's key."""

    name: str


@dataclass(frozen=True)
class StageSpec:
    """What a stage key is made of.

    Args:
        name: the stage name (also its folder).
        code_version: bump when the stage's code changes its outputs.
        inputs: name → file path or :class:`StageRef`.
        params: JSON-serialisable parameters that change the outputs.
        weights: weights component name → content hash.
    """

    name: str
    code_version: str
    inputs: Mapping[str, str | Path | StageRef] = field(default_factory=dict)
    params: Mapping[str, Any] = field(default_factory=dict)
    weights: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z][a-z0-9_-]*", self.name):
            raise ValueError(f"stage name {self.name!r} must be lower-case letters, digits, '-' or '_'")


@dataclass(frozen=True)
class StageStatus:
    """One stage's freshness as :meth:`Project.status` reports it."""

    name: str
    state: StageState
    reason: str
    key: str | None
    outputs: tuple[Path, ...]
    updated: float | None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "state": self.state,
            "reason": self.reason,
            "key": self.key,
            "outputs": [str(p) for p in self.outputs],
            "updated": self.updated,
        }


#: The stages this mfollow implements and their code versions: ``status`` reports a stage recorded
#: by other code as stale and a known stage that never ran as missing. Each stage's issue adds its
#: entry here (kept in this light module so that ``status`` imports no stage code).
STAGE_CODE_VERSIONS: dict[str, str] = {"pose-source": "2", "pose-target": "2", "align": "4", "mask": "2"}


# -------------------------------------------------------------------------------- the project
class Project:
    """A project directory. Open it with :meth:`open` (writing, locked) or :meth:`read`.

    Typical use by a stage::

        with Project.open(root) as proj:
            spec = StageSpec("pose", "1", inputs={"video": src}, params={"backend": "file"})
            key = proj.key(spec)
            if proj.is_fresh("pose", key):
                poses = proj.output("pose", "poses.json")
            else:
                with proj.stage_writer(spec, key) as out:
                    write_poses(out / "poses.json")
    """

    def __init__(self, root: Path, manifest: dict[str, Any], lock: ProjectLock | None) -> None:
        self.root = root
        self.manifest = manifest
        self._lock = lock

    # -- opening
    @classmethod
    def open(cls, root: Path | str, *, create: bool = True) -> Project:
        """Open ``root`` for writing: create it if needed, take the lock, read the manifest."""
        root = Path(root)
        if root.exists() and not root.is_dir():
            raise ProjectError(f"{root}: is a file, expected a project directory")
        if not root.exists():
            if not create:
                raise ProjectError(f"{root}: no such project directory")
            try:
                root.mkdir(parents=True)
            except OSError as exc:
                raise ProjectError(f"{root}: cannot create the project directory ({exc.strerror or exc})") from exc
        lock = ProjectLock(root)
        lock.acquire()
        try:
            manifest = _read_manifest(root)
        except BaseException:
            lock.release()
            raise
        return cls(root, manifest, lock)

    @classmethod
    def read(cls, root: Path | str) -> Project:
        """Open ``root`` read-only (no lock, nothing written): for ``status``."""
        root = Path(root)
        if not root.exists():
            raise ProjectError(f"{root}: no such project directory")
        if not root.is_dir():
            raise ProjectError(f"{root}: is a file, expected a project directory")
        return cls(root, _read_manifest(root), None)

    def close(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> Project:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- keys
    def _input_fingerprint(self, path: Path | str) -> Fingerprint:
        resolved = str(Path(path).resolve())
        known = self.manifest["files"].get(resolved)
        fp = fingerprint(path, Fingerprint.from_json(known) if known else None)
        self.manifest["files"][resolved] = fp.to_json()
        return fp

    def key_document(self, spec: StageSpec) -> dict[str, Any]:
        """The JSON document whose hash is the stage key (recorded in the manifest)."""
        inputs: dict[str, Any] = {}
        for name, value in sorted(spec.inputs.items()):
            if isinstance(value, StageRef):
                rec = self.manifest["stages"].get(value.name)
                if rec is None:
                    raise ProjectError(
                        f"{self.root}: stage {spec.name!r} needs stage {value.name!r}, which has not run"
                    )
                inputs[name] = {"stage": value.name, "key": rec["key"]}
            else:
                fp = self._input_fingerprint(value)
                inputs[name] = {"path": fp.path, "sha256": fp.sha256}
        return {
            "stage": spec.name,
            "code_version": spec.code_version,
            "inputs": inputs,
            "params": dict(spec.params),
            "weights": dict(spec.weights),
        }

    def key(self, spec: StageSpec) -> str:
        """The stage key of ``spec``: SHA-256 of :meth:`key_document` minus input paths (moving a
        file does not change its content)."""
        return _key_of(self.key_document(spec))

    # -- freshness
    def is_fresh(self, stage: str, key: str) -> bool:
        """True when ``stage`` is recorded with ``key`` and its outputs are intact."""
        rec = self.manifest["stages"].get(stage)
        return rec is not None and rec["key"] == key and self._outputs_problem(rec) is None

    def _outputs_problem(self, rec: Mapping[str, Any]) -> str | None:
        for rel, size in rec["outputs"].items():
            p = self.root / rel
            try:
                if p.stat().st_size != size:
                    return f"output {rel} changed size"
            except OSError:
                return f"output {rel} is missing"
        return None

    def _record(self, stage: str) -> Mapping[str, Any]:
        rec = self.manifest["stages"].get(stage)
        if rec is None:
            raise ProjectError(f"{self.root}: stage {stage!r} has no outputs (it has not run)")
        return rec

    def stage_dir(self, stage: str) -> Path:
        """The folder holding a recorded stage's outputs."""
        return self.root / self._record(stage)["dir"]

    def outputs(self, stage: str) -> dict[str, Path]:
        """Output name (relative to the stage folder, POSIX form) → absolute path."""
        rec = self._record(stage)
        return {Path(rel).relative_to(rec["dir"]).as_posix(): self.root / rel for rel in rec["outputs"]}

    def output(self, stage: str, name: str) -> Path:
        """The absolute path of one output of a recorded stage."""
        outs = self.outputs(stage)
        if name not in outs:
            raise ProjectError(f"{self.root}: stage {stage!r} has no output {name!r}")
        return outs[name]

    # -- writing
    @contextlib.contextmanager
    def stage_writer(self, spec: StageSpec, key: str | None = None) -> Iterator[Path]:
        """Yield an empty folder to write the stage's outputs into; commit it on a clean exit.

        Commit: the folder is renamed to ``<stage>/<key16>``, then the manifest records the
        stage (key, key document, parameters, output sizes) and is replaced atomically; older
        key folders of the stage are removed last. On an exception the staging folder is deleted
        and the project is unchanged.
        """
        self._require_lock()
        doc = self.key_document(spec)
        key = key or _key_of(doc)
        stage_dir = self.root / spec.name
        staging = stage_dir / f".staging-{secrets.token_hex(4)}"
        started = time.time()
        try:
            staging.mkdir(parents=True)
        except OSError as exc:
            raise ProjectError(f"{stage_dir}: cannot write stage outputs ({exc.strerror or exc})") from exc
        try:
            yield staging
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        final = stage_dir / key[:16]
        try:
            if final.exists():  # same key re-run with --force: replace the old copy
                shutil.rmtree(final)
            os.rename(staging, final)
            outputs = {str(p.relative_to(self.root)): p.stat().st_size for p in sorted(final.rglob("*")) if p.is_file()}
            self.manifest["stages"][spec.name] = {
                "key": key,
                "dir": str(final.relative_to(self.root)),
                "document": doc,
                "outputs": outputs,
                "updated": time.time(),
                "seconds": round(time.time() - started, 3),
                "mfollow_version": __version__,
            }
            self._save()
        except OSError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            raise ProjectError(f"{stage_dir}: cannot commit stage outputs ({exc.strerror or exc})") from exc
        for old in stage_dir.iterdir():  # older key folders and abandoned staging folders
            if old != final and old.is_dir() and (_KEY_DIR.fullmatch(old.name) or old.name.startswith(".staging-")):
                shutil.rmtree(old, ignore_errors=True)

    def clean(self, stages: list[str]) -> dict[str, Any]:
        """Remove the named stages (record and outputs) and any leftovers: folders of older keys,
        abandoned staging folders and partial files. Returns what was removed and bytes freed.

        Raises:
            UsageError: a named stage is not recorded in this project.
        """
        self._require_lock()
        unknown = [s for s in stages if s not in self.manifest["stages"]]
        if unknown:
            recorded = ", ".join(sorted(self.manifest["stages"])) or "none"
            raise UsageError(f"{self.root}: no stage {unknown[0]!r} in this project (recorded: {recorded})")
        for stage in stages:
            del self.manifest["stages"][stage]
        if stages:
            self._save()
        keep = {self.root / rec["dir"] for rec in self.manifest["stages"].values()}
        removed: list[str] = []
        freed = 0
        for candidate in self._cleanable(keep, stages):
            freed += _tree_size(candidate)
            removed.append(str(candidate.relative_to(self.root)))
            if candidate.is_dir():
                shutil.rmtree(candidate, ignore_errors=True)
            else:
                candidate.unlink(missing_ok=True)
        return {"stages": list(stages), "removed": sorted(removed), "bytes_freed": freed}

    def _cleanable(self, keep: set[Path], removed_stages: list[str]) -> list[Path]:
        """mfollow's own leftovers only: a user's files in the project folder are never touched."""
        found = [e for e in sorted(self.root.iterdir()) if PARTIAL_MARK in e.name and e.is_file()]
        found += sorted(p for p in self.root.glob(f"*/{SPILL_PREFIX}*") if p.is_dir())  # a killed run's spill
        ours = set(self.manifest["stages"]) | set(STAGE_CODE_VERSIONS) | set(removed_stages)
        for name in sorted(ours):
            folder = self.root / name
            if not folder.is_dir():
                continue
            found += [
                sub
                for sub in sorted(folder.iterdir())
                if sub.is_dir()
                and sub not in keep
                and (_KEY_DIR.fullmatch(sub.name) or sub.name.startswith(".staging-"))
            ]
        return found

    def save(self) -> None:
        """Persist the manifest (fingerprint cache included)."""
        self._require_lock()
        self._save()

    def _save(self) -> None:
        self.manifest["mfollow_version"] = __version__
        try:
            atomic_write_json(self.root / MANIFEST, self.manifest)
        except OSError as exc:
            raise ProjectError(f"{self.root / MANIFEST}: cannot write the manifest ({exc.strerror or exc})") from exc

    def _require_lock(self) -> None:
        if self._lock is None:
            raise ProjectError(f"{self.root}: opened read-only")

    # -- status
    def status(self) -> list[StageStatus]:
        """Every known or recorded stage with its state, without writing anything.

        Known stages (:data:`STAGE_CODE_VERSIONS`) that never ran are *missing*. A recorded
        stage is *stale* when its code version changed, an input file changed or vanished, an
        upstream stage changed, or an output is damaged; otherwise *fresh*.
        """
        names = sorted(set(STAGE_CODE_VERSIONS) | set(self.manifest["stages"]))
        keys: dict[str, str] = {}
        out: list[StageStatus] = []
        for name in _topological(names, self.manifest["stages"]):
            rec = self.manifest["stages"].get(name)
            if rec is None:
                out.append(StageStatus(name, "missing", "never run", None, (), None))
                continue
            reason = self._stale_reason(rec, keys)
            outputs = tuple(self.root / rel for rel in rec["outputs"])
            state: StageState = "fresh" if reason is None else "stale"
            keys[name] = rec["key"] if reason is None else "stale"
            out.append(StageStatus(name, state, reason or "up to date", rec["key"], outputs, rec.get("updated")))
        return out

    def _stale_reason(self, rec: Mapping[str, Any], keys: Mapping[str, str]) -> str | None:
        doc = rec["document"]
        current = STAGE_CODE_VERSIONS.get(doc["stage"])
        if current is not None and current != doc["code_version"]:
            return f"stage code changed ({doc['code_version']} -> {current})"
        for name, inp in doc["inputs"].items():
            if "stage" in inp:
                up = keys.get(inp["stage"]) or self.manifest["stages"].get(inp["stage"], {}).get("key")
                if up != inp["key"]:
                    return f"upstream stage {inp['stage']!r} changed"
                continue
            known = self.manifest["files"].get(inp["path"])
            try:
                fp = fingerprint(inp["path"], Fingerprint.from_json(known) if known else None)
            except ProjectError:
                return f"input {name} ({inp['path']}) is missing"
            if fp.sha256 != inp["sha256"]:
                return f"input {name} ({inp['path']}) changed"
        return self._outputs_problem(rec)


def _key_of(document: Mapping[str, Any]) -> str:
    # Paths are recorded for humans but excluded from the key: content decides.
    hashed = dict(document)
    hashed["inputs"] = {k: ({"sha256": v["sha256"]} if "sha256" in v else v) for k, v in document["inputs"].items()}
    return hash_key(hashed)


def _topological(names: list[str], stages: Mapping[str, Any]) -> list[str]:
    """Order stage names so that every stage comes after the stages it reads."""
    done: list[str] = []
    seen: set[str] = set()

    def visit(n: str, path: tuple[str, ...]) -> None:
        if n in seen or n in path:
            return
        rec = stages.get(n)
        for inp in (rec or {}).get("document", {}).get("inputs", {}).values():
            if "stage" in inp:
                visit(inp["stage"], (*path, n))
        seen.add(n)
        done.append(n)

    for n in names:
        visit(n, ())
    return done


def _tree_size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _new_manifest() -> dict[str, Any]:
    return {"format": FORMAT, "mfollow_version": __version__, "files": {}, "stages": {}}


def _read_manifest(root: Path) -> dict[str, Any]:
    """Read and validate ``root/mfollow.json``; a missing one is a new project.

    A corrupt manifest is an error and is never overwritten: the user decides what to do.
    """
    path = root / MANIFEST
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return _new_manifest()
    except OSError as exc:
        raise ProjectError(f"{path}: cannot read the manifest ({exc.strerror or exc})") from exc
    hint = f"move {path} aside to start the project afresh"
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ProjectError(f"{path}: corrupt manifest (not JSON: {exc})", hint=hint) from exc
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("stages"), dict)
        or not isinstance(data.get("files"), dict)
    ):
        raise ProjectError(f"{path}: corrupt manifest (missing 'stages' or 'files')", hint=hint)
    fmt = data.get("format")
    if fmt != FORMAT:
        raise ProjectError(
            f"{path}: manifest format {fmt!r} is not the supported {FORMAT}",
            hint="written by another mfollow version" if isinstance(fmt, int) else hint,
        )
    for name, rec in data["stages"].items():
        if not (isinstance(rec, dict) and {"key", "dir", "document", "outputs"} <= rec.keys()):
            raise ProjectError(f"{path}: corrupt manifest (stage {name!r} record is incomplete)", hint=hint)
    return data


def default_project_dir(path: Path | str) -> Path:
    """The project directory used when ``-p`` is not given: ``NAME.mfollow`` beside ``path``
    (the output video, or the source when there is no output)."""
    p = Path(path)
    return p.with_name(p.stem + ".mfollow")
