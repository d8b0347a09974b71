"""Quantity parsing: exact decimals from text and numbers, never through binary floats."""

from __future__ import annotations

from decimal import Decimal

import pytest

from conveyor.quantity import QuantityError, format_quantity, parse_quantity


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("12.5", Decimal("12.5")),
        ("-0.001", Decimal("-0.001")),
        ("1,234,567.25", Decimal("1234567.25")),
        ("１２３.４", Decimal("123.4")),  # full-width digits
        (" 42 ", Decimal("42")),
        (7, Decimal(7)),
        (0.1, Decimal("0.1")),  # via repr: what was typed, not 0.1000000000000000055…
        (Decimal("3.10"), Decimal("3.10")),
    ],
)
def test_parses_exactly(text: object, expected: Decimal) -> None:
    assert parse_quantity(text) == expected


def test_decimal_comma() -> None:
    assert parse_quantity("1.234,5", decimal_comma=True) == Decimal("1234.5")
    assert parse_quantity("0,25", decimal_comma=True) == Decimal("0.25")


@pytest.mark.parametrize("bad", ["", "abc", "1,23", "12kg", "1e5", "NaN", True, None, [1]])
def test_rejects_non_decimals(bad: object) -> None:
    with pytest.raises(QuantityError):
        parse_quantity(bad)


def test_rejects_infinite_decimal() -> None:
    with pytest.raises(QuantityError):
        parse_quantity(Decimal("Infinity"))


def test_sum_is_exact() -> None:
    assert parse_quantity("0.1") + parse_quantity("0.2") == Decimal("0.3")


@pytest.mark.parametrize(
    ("value", "text"), [(Decimal("1.50"), "1.5"), (Decimal("4E+2"), "400"), (Decimal("0.000"), "0")]
)
def test_format_has_no_exponent(value: Decimal, text: str) -> None:
    assert format_quantity(value) == text


def test_decimal_comma_is_never_read_as_a_decimal_point() -> None:
    # "1.250" from a European export is one thousand two hundred and fifty, not 1.25
    assert parse_quantity("1.250", decimal_comma=True) == Decimal("1250")
    assert parse_quantity("1.250") == Decimal("1.25")
