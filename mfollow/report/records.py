"""What the report page reads besides the stages: the last edit's result and the last evaluation,
recorded in the project by ``edit``/``long``/``demo`` and ``eval -p``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from mfollow.io.atomic import atomic_write_json
from mfollow.runtime.errors import ProjectError

if TYPE_CHECKING:
    from mfollow.metrics.frames import Report

RESULT = "result.json"  # the last edit's report (its "output" is the result video)
EVAL_DIR = "eval"  # per_frame.csv and summary.json of the last `eval -p`


def record_result(project: Path, report: dict[str, Any]) -> None:
    try:
        project.mkdir(parents=True, exist_ok=True)  # the preflight checked it can be, and left none behind
        atomic_write_json(project / RESULT, report)
    except OSError as exc:
        raise ProjectError(f"{project / RESULT}: cannot record the result ({exc.strerror or exc})") from exc


def record_eval(project: Path, report: Report, summary: dict[str, Any]) -> None:
    from mfollow.metrics.evaluation import write_per_frame_csv

    write_per_frame_csv(report, project / EVAL_DIR / "per_frame.csv")
    try:
        (project / EVAL_DIR).mkdir(parents=True, exist_ok=True)
        atomic_write_json(project / EVAL_DIR / "summary.json", summary)
    except OSError as exc:
        raise ProjectError(f"{project / EVAL_DIR}: cannot record the evaluation ({exc.strerror or exc})") from exc
