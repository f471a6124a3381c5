"""What every ``mfollow`` command shares: option types, error → exit-code mapping, output.

Data goes to stdout (a human summary, or one JSON document with ``--json``); people read stderr.
Library functions raise :mod:`mfollow.runtime.errors` types; :func:`guard` turns them into a one-line
message and the documented exit code (``--debug`` or ``MFOLLOW_DEBUG=1`` adds the traceback).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import traceback
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, get_args

import typer

from mfollow.edit.choices import Device, Dtype
from mfollow.runtime.errors import (
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_PIPE,
    EXIT_TERMINATED,
    EXIT_USAGE,
    MfollowError,
    Terminated,
)
from mfollow.runtime.progress import ProgressMode


def choices(name: str, literal: Any) -> type[StrEnum]:
    """A Typer choice type whose values are a library ``Literal``'s (each choice set is defined once,
    in the layer it belongs to)."""
    return StrEnum(name, {value: value for value in get_args(literal)})  # type: ignore[return-value]


ProgressChoice = choices("ProgressChoice", ProgressMode)


# Shared options, declared once and used by the commands they apply to.
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No messages or progress on stderr.")]
DebugOpt = Annotated[
    bool, typer.Option("--debug", help="Show tracebacks of errors (also MFOLLOW_DEBUG=1).", envvar="MFOLLOW_DEBUG")
]
ProgressOpt = Annotated[
    ProgressChoice,
    typer.Option("--progress", help="Progress display on stderr: auto (rich on a terminal), rich, plain, none."),
]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed; the same seed gives the same result.")]
ProjectOpt = Annotated[Path, typer.Option("--project", "-p", help="Project directory (cache of intermediate results).")]


DeviceChoice = choices("DeviceChoice", Device)
DtypeChoice = choices("DtypeChoice", Dtype)
DeviceOpt = Annotated[DeviceChoice, typer.Option("--device", help="Where the networks run.")]
DtypeOpt = Annotated[
    DtypeChoice,
    typer.Option(
        "--dtype",
        help="Precision of the networks: auto is bfloat16 on a CUDA device that has "
        "it (else float16) and float32 on the CPU and MPS; latents, guidance and DDIM stay float32.",
    ),
]


def renamed(value: Any, old_value: Any, *, option: str, old: str, default: Any = None) -> Any:
    """An option's value when it may also come through its old, hidden spelling: the old one's
    when only it was given; both given is a usage error."""
    from mfollow.runtime.errors import UsageError

    if old_value is None:
        return value
    if value != default:
        raise UsageError(f"{old} is the old spelling of {option}: give one of them")
    return old_value


def stderr_line(message: str, *, quiet: bool = False) -> None:
    """One line for people on stderr (suppressed by ``--quiet``)."""
    if not quiet:
        print(message, file=sys.stderr, flush=True)


def emit_json(document: Any) -> None:
    """The command's one JSON document on stdout."""
    sys.stdout.write(json.dumps(document, indent=2, sort_keys=True, default=str) + "\n")
    sys.stdout.flush()


@contextlib.contextmanager
def guard(debug: bool = False) -> Iterator[None]:
    """Map typed errors to their exit codes with a one-line message; never a traceback unless
    ``debug``. Unexpected exceptions are internal errors (exit 1); Ctrl-C exits 130."""
    debug = debug or os.environ.get("MFOLLOW_DEBUG", "") not in ("", "0")
    try:
        yield
    except MfollowError as exc:
        from mfollow.runtime.distributed import is_main_process

        if is_main_process():  # under torchrun rank 0 speaks for every rank (others' errors reach it)
            if debug:
                traceback.print_exc()
            print(f"mfollow: error: {exc}", file=sys.stderr, flush=True)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt as exc:
        terminated = isinstance(exc, Terminated)
        print(f"mfollow: {'terminated' if terminated else 'interrupted'}", file=sys.stderr, flush=True)
        raise typer.Exit(EXIT_TERMINATED if terminated else EXIT_INTERRUPTED) from None
    except BrokenPipeError:  # the reader went away (`mfollow info x.mp4 | head`): stop quietly
        silence_stdout()
        raise typer.Exit(EXIT_PIPE) from None
    except MemoryError as exc:  # past the preflight's estimate: still the user's size, not a bug
        if debug:
            traceback.print_exc()
        print(f"mfollow: error: out of memory ({exc}) (lower --size or --window)", file=sys.stderr, flush=True)
        raise typer.Exit(EXIT_USAGE) from None
    except (typer.Exit, typer.Abort):
        raise
    except Exception as exc:  # a bug: say so, in one line unless debugging
        if debug:
            traceback.print_exc()
        first = str(exc).splitlines()[0] if str(exc) else ""
        print(
            f"mfollow: internal error: {type(exc).__name__}: {first} "
            "(run again with --debug for the traceback, and please report it)",
            file=sys.stderr,
            flush=True,
        )
        raise typer.Exit(EXIT_INTERNAL) from None


def silence_stdout() -> None:
    """Point stdout at /dev/null so that Python's final flush of a closed pipe stays silent."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
