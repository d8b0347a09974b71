"""Quantity parsing, range and arithmetic: exact decimals from text and numbers, never through
binary floats, never rounded to fit."""

from __future__ import annotations

from decimal import Decimal, Inexact

import pytest

from conveyor.quantity import (
    CONTEXT,
    QuantityError,
    add,
    check_range,
    format_quantity,
    in_range,
    parse_quantity,
    quantity_arithmetic,
)


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


BIG = "12345678901234567890123456.123456789012"


def test_38_digits_parse_format_and_add_exactly() -> None:
    value = parse_quantity(BIG)
    assert format_quantity(value) == BIG
    assert format_quantity(-value) != "-" + BIG  # unary minus rounds to the default context
    assert format_quantity(value.copy_negate()) == "-" + BIG
    assert add(value, value.copy_negate()) == 0
    assert format_quantity(add(value, Decimal("0.000000000001"))) == BIG[:-1] + "3"


def test_the_context_traps_instead_of_rounding() -> None:
    assert CONTEXT.prec >= 38
    with pytest.raises(Inexact):
        CONTEXT.divide(Decimal(1), Decimal(3))


@pytest.mark.parametrize(
    ("value", "fits"),
    [
        (Decimal("99999999999999999999999999.999999999999"), True),
        (Decimal("-99999999999999999999999999"), True),
        (Decimal("100000000000000000000000000"), False),  # 27 integer digits
        (Decimal("1E+999999"), False),
        (Decimal("0.0000000000001"), False),  # 13 decimals
        (Decimal("-0.0"), True),
    ],
)
def test_range_is_numeric_38_12(value: Decimal, fits: bool) -> None:
    assert in_range(value) is fits
    if not fits:
        with pytest.raises(QuantityError):
            check_range(value)


def test_an_overflowing_sum_is_refused() -> None:
    with pytest.raises(QuantityError, match="does not fit"):
        add(Decimal("99999999999999999999999999.999999999999"), Decimal("0.000000000001"))


def test_hostile_values_are_formatted_short() -> None:
    assert format_quantity(Decimal("1E+999999")) == "1E+999999"
    assert len(format_quantity(Decimal("1E-999999"))) < 20
    with pytest.raises(QuantityError):
        parse_quantity("1" * 10_000)


def test_quantity_arithmetic_keeps_38_digits() -> None:
    @quantity_arithmetic
    def total(a: Decimal, b: Decimal) -> Decimal:
        return a + b

    assert (
        format_quantity(total(Decimal(BIG), Decimal(BIG)))
        == "24691357802469135780246912.246913578024"
    )
    assert (Decimal(1) / Decimal(3)).as_tuple().digits.__len__() == 28  # outside: the default
