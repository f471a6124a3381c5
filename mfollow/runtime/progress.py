"""Progress reporting for people, on stderr, in the mode the user picked.

Library code never prints: long-running functions take a ``callback(done, total)`` and the CLI
passes :meth:`Reporter.task`'s. Modes: ``rich`` (an animated bar), ``plain`` (one line per 10%,
for log files), ``none``; ``auto`` is ``rich`` on a terminal and ``plain`` otherwise.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from typing import Literal, TextIO

ProgressMode = Literal["auto", "rich", "plain", "none"]
Callback = Callable[[int, int], None]


def resolve_mode(mode: ProgressMode, stream: TextIO | None = None, quiet: bool = False) -> ProgressMode:
    """``auto`` → ``rich`` on a terminal, else ``plain``; ``quiet`` forces ``none``."""
    if quiet:
        return "none"
    if mode != "auto":
        return mode
    stream = stream or sys.stderr
    return "rich" if stream.isatty() else "plain"


class Reporter:
    """Makes per-task progress callbacks that draw on ``stream`` (stderr by default)."""

    def __init__(self, mode: ProgressMode = "auto", *, quiet: bool = False, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.mode = resolve_mode(mode, self.stream, quiet)

    @contextlib.contextmanager
    def task(self, description: str, total: int) -> Iterator[Callback]:
        """Yield ``callback(done, total)`` for one task; the display closes with the block."""
        if self.mode == "none":
            yield lambda done, total: None
        elif self.mode == "plain":
            yield from self._plain(description, total)
        else:
            yield from self._rich(description, total)

    def _plain(self, description: str, total: int) -> Iterator[Callback]:
        started = time.monotonic()
        last_decile = -1

        def callback(done: int, total_now: int) -> None:
            nonlocal last_decile
            decile = 10 * done // max(total_now, 1)
            if decile > last_decile:
                last_decile = decile
                elapsed = time.monotonic() - started
                print(
                    f"{description}: {done}/{total_now} ({10 * decile}%) {elapsed:.1f}s", file=self.stream, flush=True
                )

        yield callback

    def _rich(self, description: str, total: int) -> Iterator[Callback]:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        console = Console(file=self.stream)
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=console, transient=False) as bar:
            task_id = bar.add_task(description, total=total)
            yield lambda done, total_now: bar.update(task_id, completed=done, total=total_now)
