"""Running requests: one (:func:`execute`, the body of ``mfollow edit`` and ``mfollow long``), or a
JSON Lines file of jobs with one model (:func:`run_batch`, ``mfollow edit --batch``), also from
Python.

A jobs file holds one JSON object per line: ``output`` and ``source`` (or ``case``) and optionally
``target``, poses, masks, and per-job values (:data:`VALUE_KEYS`); every other option is the base
request's. Paths are relative to the jobs file's folder. The whole batch is preflighted before the
model loads: a job whose output is any job's input or another job's output stops the batch
(exit 2); a job with a bad input fails alone.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from mfollow.edit.pipeline import run_request
from mfollow.edit.preflight import check_memory, preflight
from mfollow.edit.request import EditRequest
from mfollow.models.presets import get_preset
from mfollow.runtime.errors import EXIT_INTERNAL, MediaError, MfollowError, UsageError

Note = Callable[[str], None]

PATH_KEYS = ("source", "target", "output", "source_poses", "edit_poses", "source_masks", "edit_masks", "case")
VALUE_KEYS = ("seed", "steps", "cfg", "guidance_scale", "start", "frames")  # per-job overrides


def execute(
    r: EditRequest,
    *,
    preset: str = "auto",
    reporter: Any = None,
    note: Note | None = None,
    model: tuple[Any, str] | None = None,
    project: Path | None = None,
    preflighted: bool = False,
) -> dict[str, Any]:
    """One request through the library's one edit path: its preflight (unless ``preflighted``:
    then ``project`` is what the preflight returned), the weights checked from their files, then
    :func:`mfollow.edit.pipeline.run_request`; the model is loaded only once the inputs are known
    good (``model``: an already loaded bundle and its identity). ``long`` under ``torchrun`` spreads
    its windows over the ranks. ``reporter``: a :class:`mfollow.runtime.progress.Reporter`."""
    from mfollow.runtime.distributed import join, launched_world

    say = note or (lambda _: None)
    if not preflighted:
        project = preflight(r)
    loader: Any
    if model is not None:
        name, loader = model[0].preset, model
    else:
        from mfollow.models.loading import check_weights, load_bundle

        # the weights are there (or one line and exit 3) before any preprocessing or model loading
        name = check_weights(preset, r.weights)
        loader = lambda: load_bundle(name, r.weights)  # noqa: E731  (called once the inputs are checked)
    if not preflighted:  # (run_batch checked every job's memory before loading its model)
        check_memory(r, get_preset(name))  # what the working size needs, before any stage or model
    if not preflighted and project is not None and r.project is None:
        say(f"project: {project}")
    group = join(r.device) if r.long and launched_world() > 1 else None
    bundled_default = model is None and preset == "auto" and name == "tiny" and r.weights is None
    total = r.sampling_steps(get_preset(name))

    def run(progress: Callable[[int, int], None] | None) -> dict[str, Any]:
        return run_request(r, project, preset=name, model=loader, bundled_default=bundled_default, note=say,
                           progress=progress, group=group)  # fmt: skip

    if reporter is None:
        return run(None)
    with reporter.task("long" if r.long else "edit", total) as callback:
        return run(callback)


def parse_shard(text: str | None) -> tuple[int, int]:
    """``K/N`` (1 <= K <= N) -> (K, N); None -> (1, 1)."""
    if text is None:
        return 1, 1
    try:
        k, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise UsageError(f"--shard {text!r} is not K/N") from None
    if not 1 <= k <= n:
        raise UsageError(f"--shard {text}: need 1 <= K <= N")
    return k, n


def read_jobs(jobs_file: Path, base: EditRequest) -> list[dict[str, Any]]:
    """Every line of a jobs file as ``{"job": index, "request": EditRequest}`` (or ``"error"``: the
    line's :class:`MfollowError`); refuses outputs that are inputs or other jobs' outputs."""
    if not jobs_file.is_file():
        raise MediaError(f"{jobs_file}: no such jobs file")
    try:
        lines = jobs_file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise MediaError(f"{jobs_file}: cannot read the jobs file ({exc})") from exc
    jobs: list[dict[str, Any]] = []
    for index, line in enumerate(lines):
        if line.strip():
            try:
                jobs.append({"job": index, "request": _job_request(line, index, jobs_file.parent, base)})
            except MfollowError as exc:
                jobs.append({"job": index, "error": exc})
    _check_collisions(jobs)
    return jobs


def run_batch(
    jobs_file: Path,
    base: EditRequest,
    *,
    preset: str = "auto",
    shard: str | None = None,
    emit: Callable[[dict[str, Any]], None] | None = None,
) -> int:
    """Run every job of a JSON Lines file (this shard's share; under ``torchrun`` split over the
    ranks) with one model; ``emit`` receives each job's result (``{"job", "ok", ...}``, the report
    or the error), in job order. Returns 0 if every job succeeded, else the first failure's code."""
    from mfollow.runtime.distributed import join

    k, n = parse_shard(shard)
    jobs = read_jobs(jobs_file, base)
    mine = [j for j in jobs if j["job"] % n == k - 1]
    group = join(base.device)  # under torchrun the shard's jobs are split over the ranks
    mine = mine[group.rank :: group.world]
    for j in mine:  # every input and output of this shard's jobs, before the model loads
        if "error" not in j:
            try:
                j["project"] = preflight(j["request"])
            except MfollowError as exc:
                j["error"] = exc
    model = None
    from mfollow.models.loading import check_weights, load_bundle

    if any("error" not in j for j in mine):
        spec = get_preset(check_weights(preset, base.weights))  # from the files, before the model loads
        for j in mine:  # each job's working size against the free memory, before the model loads
            if "error" not in j:
                try:
                    check_memory(j["request"], spec)
                except MfollowError as exc:
                    j["error"] = exc
    if any("error" not in j for j in mine):
        model = load_bundle(preset, base.weights)  # once for every job
    results = []
    for j in mine:
        result: dict[str, Any] = {"job": j["job"]}
        try:
            if "error" in j:
                raise j["error"]
            report = execute(j["request"], model=model, project=j["project"], preflighted=True)
            result.update(ok=True, **report)
        except MfollowError as exc:
            result.update(ok=False, error=str(exc), exit_code=exc.exit_code)
        except Exception as exc:  # isolate the failure; the batch goes on
            result.update(ok=False, error=f"internal error: {type(exc).__name__}: {exc}", exit_code=EXIT_INTERNAL)
        results.append(result)
        if group.world == 1 and emit is not None:  # one process: each line as soon as its job ends
            emit(result)
    if group.world > 1:  # rank 0 emits every rank's results, in job order
        every = group.gather(results)
        results = sorted((r for part in every or [] for r in part), key=lambda r: r["job"])
        for result in results:
            if emit is not None:
                emit(result)
    code = next((int(r["exit_code"]) for r in results if not r["ok"]), 0)  # the first failure's code
    return group.broadcast(code) if group.world > 1 else code


def _job_request(line: str, index: int, base_dir: Path, base: EditRequest) -> EditRequest:
    """One line of a jobs file as a request: its paths (relative ones resolved against
    ``base_dir``, the jobs file's folder) and values over the ``base`` request."""
    try:
        job = json.loads(line)
    except ValueError as exc:
        raise UsageError(f"line {index + 1}: not JSON ({exc})") from None
    if not isinstance(job, dict) or "output" not in job or ("source" not in job and "case" not in job):
        raise UsageError(f"line {index + 1}: a job needs 'output' and 'source' (or 'case')")
    unknown = set(job) - set(PATH_KEYS) - set(VALUE_KEYS)
    if unknown:
        raise UsageError(f"line {index + 1}: unknown job keys: {', '.join(sorted(unknown))}")
    for key in PATH_KEYS:
        if job.get(key) is not None and not isinstance(job[key], str):
            raise UsageError(f"line {index + 1}: '{key}' must be a path string")
    paths = {key: None if job.get(key) is None else base_dir / Path(job[key]).expanduser() for key in PATH_KEYS}
    values = {key: job[key] for key in VALUE_KEYS if key in job}
    if paths["case"] is not None:
        paths["source"] = None
    return replace(base, **paths, **values)


def _identity(path: Path) -> tuple[Any, ...]:
    try:
        st = path.stat()
        return ("inode", st.st_dev, st.st_ino)  # symlinks and hard links are the same file
    except OSError:
        return ("path", str(path.resolve()))


def _check_collisions(jobs: list[dict[str, Any]]) -> None:
    """No job may write any job's input or another job's output (all jobs, every shard)."""
    good = [j for j in jobs if "error" not in j]
    read: dict[tuple[Any, ...], int] = {}
    for j in good:
        for key in PATH_KEYS:
            path = getattr(j["request"], key)
            if path is not None and key != "output":
                read.setdefault(_identity(path), j["job"])
    written: dict[tuple[Any, ...], int] = {}
    for j in good:
        out = j["request"].output
        ident = _identity(out)
        if ident in read:
            raise UsageError(f"job {j['job']}: output {out} is an input of job {read[ident]}; nothing was run")
        if ident in written:
            raise UsageError(
                f"job {j['job']}: output {out} is also the output of job {written[ident]}; nothing was run"
            )
        written[ident] = j["job"]
