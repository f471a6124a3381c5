"""Progress display modes."""

from __future__ import annotations

import io

from mfollow.runtime.progress import Reporter, resolve_mode


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_mode_resolution() -> None:
    assert resolve_mode("auto", io.StringIO()) == "plain"
    assert resolve_mode("auto", _Tty()) == "rich"
    assert resolve_mode("rich", io.StringIO(), quiet=True) == "none"


def test_plain_prints_one_line_per_tenth() -> None:
    out = io.StringIO()
    with Reporter("plain", stream=out).task("work", 20) as cb:
        for i in range(1, 21):
            cb(i, 20)
    lines = out.getvalue().splitlines()
    assert [line.split()[1] for line in lines] == ["1/20"] + [
        f"{2 * k}/20" for k in range(1, 11)
    ]  # start, then each 10%
    assert lines[-1].startswith("work: 20/20 (100%)")


def test_none_and_rich_modes() -> None:
    out = io.StringIO()
    with Reporter("none", stream=out).task("work", 3) as cb:
        cb(3, 3)
    assert out.getvalue() == ""
    with Reporter("rich", stream=out).task("work", 3) as cb:
        cb(3, 3)
    assert "work" in out.getvalue() and "3/3" in out.getvalue()
