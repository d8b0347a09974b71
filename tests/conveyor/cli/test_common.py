"""The CLI's shared parameter types."""

from __future__ import annotations

from datetime import timedelta

import click
import pytest

from conveyor.cli.common import DURATION


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
