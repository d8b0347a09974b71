"""Date and number parsing of mapped values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from conveyor.mapping.parsers import (
    DateParser,
    ParseError,
    check_date_format,
    format_date,
    parse_decimal,
)
from conveyor.mapping.parsers import (
    timezone as zone_of,
)

SHANGHAI = zone_of("Asia/Shanghai")


@pytest.mark.parametrize(
    ("text", "formats", "expected"),
    [
        ("2026/11/21 08:30", ["%Y/%m/%d %H:%M"], datetime(2026, 11, 21, 8, 30)),
        ("20261121", ["%Y%m%d"], datetime(2026, 11, 21)),
        ("２０２６/１１/２１ ０８:３０", ["%Y/%m/%d %H:%M"], datetime(2026, 11, 21, 8, 30)),
        ("2026年11月21日", ["%Y-%m-%d", "%Y年%m月%d日"], datetime(2026, 11, 21)),
        (
            " 2026-11-21 08:30:15 ",
            ["%Y/%m/%d", "%Y-%m-%d %H:%M:%S"],
            datetime(2026, 11, 21, 8, 30, 15),
        ),
    ],
)
def test_dates_in_the_mapping_zone(text: str, formats: list[str], expected: datetime) -> None:
    parsed = DateParser(formats, SHANGHAI)(text)
    assert parsed == expected.replace(tzinfo=SHANGHAI)
    assert parsed.utcoffset() == timedelta(hours=8)


def test_iso_keeps_its_offset() -> None:
    parsed = DateParser(["iso"], SHANGHAI)("2026-11-21T08:30:00Z")
    assert parsed == datetime(2026, 11, 21, 8, 30, tzinfo=UTC)
    assert DateParser(["iso"], UTC)("2026-11-21T08:30:00+02:00").utcoffset() == timedelta(hours=2)


def test_bad_date_names_the_formats() -> None:
    with pytest.raises(ParseError, match="%Y%m%d"):
        DateParser(["%Y%m%d"], UTC)("2026-13-45")
    with pytest.raises(ParseError):
        DateParser(["%Y%m%d"], UTC)(None)


def test_numeric_date_values() -> None:
    assert DateParser(["%Y%m%d"], UTC)(20261121) == datetime(2026, 11, 21, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1,234,567.25", "1234567.25"),
        ("１２３", "123"),
        ("１，２３４．５", "1234.5"),
        (" -12.50 ", "-12.50"),
        (Decimal("3.5"), "3.5"),
        (7, "7"),
    ],
)
def test_decimals(text: object, expected: str) -> None:
    assert parse_decimal(text) == Decimal(expected)


def test_decimal_comma() -> None:
    assert parse_decimal("1.250,500", decimal_comma=True) == Decimal("1250.500")


@pytest.mark.parametrize("text", ["1,23", "abc", "", "1e5x", "NaN"])
def test_not_decimals(text: str) -> None:
    with pytest.raises(ParseError):
        parse_decimal(text)


def test_check_date_format() -> None:
    assert check_date_format("%Y/%m/%d %H:%M") is None
    assert check_date_format("iso") is None
    assert "no % directive" in (check_date_format("YYYYMMDD") or "")
    assert check_date_format("%Y-%Q") is not None


def test_format_date_in_zone() -> None:
    text = format_date("2026-11-21T00:30:00+00:00", "%Y%m%d %H:%M", SHANGHAI)
    assert text == "20261121 08:30"
    assert format_date(datetime(2026, 11, 21, tzinfo=UTC), "%Y-%m-%d", UTC) == "2026-11-21"


def test_unknown_timezone() -> None:
    with pytest.raises(ValueError, match="Mars"):
        zone_of("Mars/Olympus")
