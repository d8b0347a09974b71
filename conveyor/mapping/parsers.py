"""Value parsing for mappings: numbers through ``conveyor.quantity.parse_quantity`` (thousands
separators, full-width digits, decimal comma) and dates through ``datetime.strptime`` with the
formats a mapping declares (``%Y/%m/%d %H:%M``, ``%Y%m%d``, …), full-width digits folded first.

A date without a UTC offset is read in the mapping's ``timezone``. Parsed dates are cached per text,
because an export repeats the same posting date on thousands of rows.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from datetime import UTC, datetime, tzinfo
from decimal import Decimal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from conveyor.quantity import QuantityError, parse_quantity

ISO = "iso"
"""Date format name for ISO 8601 / RFC 3339 text."""

_CACHE_LIMIT = 4096


class ParseError(ValueError):
    """A value cannot be parsed as the mapping says; the message says what was expected."""


def timezone(name: str | None) -> tzinfo:
    """The zone of a mapping's ``timezone:`` (UTC when absent); ``ValueError`` when unknown."""
    if not name or name.upper() == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown timezone {name!r}") from exc


def fold(text: str) -> str:
    """Full-width digits and punctuation to ASCII (``２０２６／１１／２１`` → ``2026/11/21``)."""
    return text if text.isascii() else unicodedata.normalize("NFKC", text)


def parse_decimal(value: object, *, decimal_comma: bool = False) -> Decimal:
    """An exact ``Decimal`` from text or a number (``ParseError`` when it is not one)."""
    try:
        return parse_quantity(value, decimal_comma=decimal_comma)
    except QuantityError as exc:
        raise ParseError(str(exc)) from None


class DateParser:
    """Parse dates with a list of formats (first that fits wins), in a zone; cached per text."""

    def __init__(self, formats: Sequence[str], zone: tzinfo) -> None:
        self.formats = tuple(formats) or (ISO,)
        self.zone = zone
        self._cache: dict[str, datetime] = {}

    def __call__(self, value: object) -> datetime:
        """The aware ``datetime`` for ``value``; ``ParseError`` naming the formats tried."""
        if isinstance(value, datetime):
            return value if value.tzinfo else value.replace(tzinfo=self.zone)
        if isinstance(value, int | Decimal) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            raise ParseError(f"not a date: {value!r}")
        found = self._cache.get(value)
        if found is not None:
            return found
        text = fold(value).strip()
        parsed = self._parse(text)
        if parsed is None:
            raise ParseError(
                f"{value!r} does not match the date format(s) {' or '.join(self.formats)}"
            )
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[value] = parsed
        return parsed

    def _parse(self, text: str) -> datetime | None:
        for fmt in self.formats:
            try:
                if fmt == ISO:
                    parsed = datetime.fromisoformat(text.replace("z", "Z"))
                else:
                    parsed = datetime.strptime(text, fmt)
            except ValueError:
                continue
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=self.zone)
        return None


def check_date_format(fmt: str) -> str | None:
    """Why ``fmt`` is not a usable ``strptime`` format, or None when it is."""
    if fmt == ISO:
        return None
    if "%" not in fmt:
        return f"date format {fmt!r} has no % directive (e.g. %Y%m%d)"
    try:
        sample = datetime(2026, 11, 21, 8, 30, 15, tzinfo=UTC).strftime(fmt)
        datetime.strptime(sample, fmt)
    except ValueError as exc:
        return f"date format {fmt!r} is not valid: {exc}"
    return None


def format_date(value: object, fmt: str, zone: tzinfo) -> str:
    """A timestamp (aware ``datetime`` or RFC 3339 text) as text in ``zone`` with ``fmt``."""
    if isinstance(value, str):
        moment = datetime.fromisoformat(value.replace("z", "Z"))
    elif isinstance(value, datetime):
        moment = value
    else:
        raise ParseError(f"not a timestamp: {value!r}")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(zone)
    return moment.isoformat() if fmt == ISO else moment.strftime(fmt)
