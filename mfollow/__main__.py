"""``python -m mfollow``: the same entry point as the ``mfollow`` console script."""

from mfollow.cli import main

raise SystemExit(main(prog_name="mfollow"))
