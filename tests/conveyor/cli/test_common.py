"""The CLI's shared parameter types and output helpers."""

from __future__ import annotations

from datetime import timedelta

import click
import pytest

from conveyor.cli.common import DURATION, printable, render_value


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("15m", timedelta(minutes=15)),
        ("1.5h", timedelta(minutes=90)),
        ("30d", timedelta(days=30)),
        ("45", timedelta(seconds=45)),
        (" 2H ", timedelta(hours=2)),
        ("0s", timedelta(0)),
    ],
)
def test_durations_are_read_with_their_unit(text: str, expected: timedelta) -> None:
    assert DURATION.convert(text, None, None) == expected


@pytest.mark.parametrize("text", ["soon", "", "h", "-1h", "nan", "infd", "1w"])
def test_what_is_not_a_duration_is_refused_by_name(text: str) -> None:
    with pytest.raises(click.BadParameter, match=repr(text)):
        DURATION.convert(text, None, None)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("RM-1001", "RM-1001"),
        ("原料 Ø12　A", "原料 Ø12　A"),  # CJK, accents and a full-width space stay
        ("\x1b[31mred", "\\x1b[31mred"),
        ("a\u202eb", "a\\u202eb"),
        ("zero\u200bwidth\ufeff", "zero\\u200bwidth\\ufeff"),
        ("nul\x00 bell\x07 line\n", "nul\\x00 bell\\x07 line\\x0a"),
        ("tag\U000e0041", "tag\\U000e0041"),
    ],
)
def test_printable_escapes_what_a_terminal_would_obey(text: str, shown: str) -> None:
    assert printable(text) == shown


def test_printable_output_never_carries_a_control_character() -> None:
    import unicodedata

    hostile = "".join(chr(c) for c in range(0x0, 0xA0)) + "\u202e\u2066\u200b\u2028\ufeff"
    out = printable(hostile)
    assert not [ch for ch in out if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp")]
    assert render_value("\x1b[2J") == "\\x1b[2J"
