"""Typed errors raised at the library boundary.

Library code raises these; only :mod:`mfollow.cli` maps them to exit codes and messages
(README.md, "Exit codes"). Each class carries its documented exit code so the mapping lives in one place:

====  =========================================
code  meaning
====  =========================================
0     ok
1     internal error (a bug: please report it)
2     usage (bad options or arguments)
3     weights missing, corrupt or mismatched
4     input media unreadable or unsupported
5     project directory / cache problem
130   interrupted (Ctrl-C / SIGINT)
141   stdout closed by its reader (a pipe, as ``| head``): stopped quietly, as Unix tools do
====  =========================================
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_WEIGHTS = 3
EXIT_MEDIA = 4
EXIT_PROJECT = 5
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # 128 + SIGTERM: what SLURM, Kubernetes and `timeout` send before killing
EXIT_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a Unix tool stopped by a closed pipe


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled as Ctrl-C is: the work stops, a ``long`` run's checkpoint of its last step
    stays (resume by running the same command again), temporary files are removed; exit 143."""


class MfollowError(Exception):
    """Base class of every error mfollow reports to the user without a traceback.

    The message must be one line that names the path (when there is one) and the problem.
    """

    exit_code: int = EXIT_INTERNAL

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if self.hint is None else f"{self.message} ({self.hint})"


class UsageError(MfollowError):
    """Options or arguments that cannot work together (exit 2)."""

    exit_code = EXIT_USAGE


class WeightsError(MfollowError):
    """Model weights are missing, corrupt, or do not match the model (exit 3)."""

    exit_code = EXIT_WEIGHTS


class MediaError(MfollowError):
    """An input file is missing, unreadable, not a video, or unsupported; or an output media
    file cannot be written (exit 4)."""

    exit_code = EXIT_MEDIA


class ProjectError(MfollowError):
    """The project directory cannot be used: corrupt manifest, unwritable, ... (exit 5)."""

    exit_code = EXIT_PROJECT


class ProjectLockedError(ProjectError):
    """Another live process holds the project's lock (exit 5)."""
