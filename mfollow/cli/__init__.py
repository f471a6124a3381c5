"""The ``mfollow`` command line: a thin Typer layer that parses options into the library's typed
settings, calls one library function and renders its report. No defaults or checks of its own.

:mod:`mfollow.cli.app` is the root app and the commands ``info``, ``status``, ``clean``, ``synth``,
``eval``, ``demo``, ``report``; the edit commands live in :mod:`mfollow.cli.edit`, the
preprocessing commands in :mod:`mfollow.cli.stages`, ``train`` in :mod:`mfollow.cli.train`,
``weights`` in :mod:`mfollow.cli.weights`; what they share in :mod:`mfollow.cli.common`.
"""

from mfollow.cli.app import app, main, run

__all__ = ["app", "main", "run"]
