"""The one place that parses quantities: text or numbers to exact ``Decimal``, never via float.

Accepts plain decimals, thousands separators (``1,234.5``), full-width digits (``１２３``) and a
decimal comma when asked. Rejects NaN, infinity and floats that already lost precision (a float is
converted through its shortest ``repr``, which is exact for what was typed).

It is also the one place of the ledger's quantity range and arithmetic: a stored quantity is
``NUMERIC(38, 12)`` (at most 26 integer and 12 fractional digits, ``in_range``), and every
quantity path — parse, convert, sum, store, format — computes in ``CONTEXT``, which is wide enough
for it and traps instead of rounding. A result that does not fit is refused (``QuantityError``),
never rounded.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable
from decimal import (
    ROUND_HALF_EVEN,
    Context,
    Decimal,
    DivisionByZero,
    Inexact,
    InvalidOperation,
    Overflow,
    localcontext,
)
from functools import wraps
from typing import ParamSpec, TypeVar

_P = ParamSpec("_P")
_R = TypeVar("_R")

INTEGER_DIGITS = 26
"""At most this many digits before the decimal point (NUMERIC(38, 12))."""
DECIMALS = 12
"""At most this many digits after the decimal point (NUMERIC(38, 12))."""

CONTEXT = Context(
    prec=2 * (INTEGER_DIGITS + DECIMALS) + 4,
    rounding=ROUND_HALF_EVEN,
    traps=[InvalidOperation, DivisionByZero, Overflow, Inexact],
)
"""The decimal context of every quantity computation: 80 significant digits (a product of two
in-range values fits), and an inexact result raises instead of being rounded. Python's default
context (28 digits) would silently round a 38-digit quantity."""

_CANONICAL = re.compile(r"-?[0-9]{1,26}(\.[0-9]{1,12})?")
_PLAIN = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)$")
_GROUPED = re.compile(r"^[+-]?\d{1,3}(,\d{3})+(\.\d*)?$")
_GROUPED_EU = re.compile(r"^[+-]?\d{1,3}(\.\d{3})+(,\d*)?$")
_LONGEST = 200
"""Texts longer than this are not quantities (and are not worth a regex or a Decimal)."""


class QuantityError(ValueError):
    """A value is not an exact decimal quantity, or does not fit the ledger's range."""


def parse_quantity(value: object, *, decimal_comma: bool = False) -> Decimal:
    """Parse ``value`` to an exact ``Decimal``.

    ``decimal_comma`` reads ``1.234,5`` as 1234.5 (European exports); otherwise commas are
    thousands separators and must group by three. The result is exact but not range-checked:
    ``check_range`` says whether the ledger can hold it.
    """
    if not decimal_comma and isinstance(value, str) and _CANONICAL.fullmatch(value):  # fast
        return Decimal(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise QuantityError(f"not a finite quantity: {value}")
        return value
    if isinstance(value, bool):
        raise QuantityError(f"not a quantity: {value!r}")
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        # repr() gives the shortest text that round-trips: what the sender typed, not the binary.
        return parse_quantity(repr(value))
    if not isinstance(value, str):
        raise QuantityError(f"not a quantity: {value!r}")
    if len(value) > _LONGEST:
        raise QuantityError(f"not a decimal quantity: {len(value)} characters")
    text = unicodedata.normalize("NFKC", value).strip().replace(" ", "").replace("\u00a0", "")
    if not text:
        raise QuantityError("empty quantity")
    if decimal_comma:
        if _GROUPED_EU.match(text):
            text = text.replace(".", "")
        text = text.replace(",", ".")
    elif _GROUPED.match(text):
        text = text.replace(",", "")
    if not _PLAIN.match(text):
        raise QuantityError(f"not a decimal quantity: {value!r}")
    try:
        return Decimal(text)
    except InvalidOperation as exc:  # pragma: no cover - the regex already guards
        raise QuantityError(f"not a decimal quantity: {value!r}") from exc


def range_problem(value: Decimal) -> str | None:
    """Why ``value`` does not fit NUMERIC(38, 12), or None when it does (exactly)."""
    if not value.is_finite():
        return "not a finite quantity"
    if not value:
        return None
    if value.adjusted() >= INTEGER_DIGITS:
        return f"more than {INTEGER_DIGITS} integer digits"
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -DECIMALS:
        return f"more than {DECIMALS} decimal places"
    return None


def in_range(value: Decimal) -> bool:
    """Whether the ledger can hold ``value`` exactly (≤ 26 integer, ≤ 12 fractional digits)."""
    return range_problem(value) is None


def check_range(value: Decimal, what: str = "quantity") -> Decimal:
    """``value`` itself when it fits NUMERIC(38, 12); otherwise ``QuantityError`` (no rounding)."""
    problem = range_problem(value)
    if problem is not None:
        raise QuantityError(f"{what} {_short(value)} does not fit the ledger: {problem}")
    return value


def add(*values: Decimal) -> Decimal:
    """The exact sum of ``values``, refused (``QuantityError``) when it does not fit the ledger."""
    total = Decimal(0)
    try:
        for value in values:
            total = CONTEXT.add(total, value)
    except (Inexact, Overflow, InvalidOperation) as exc:
        raise QuantityError("sum of quantities does not fit the ledger") from exc
    return check_range(total, "sum")


def total(values: Iterable[Decimal]) -> Decimal:
    """``add`` over an iterable."""
    return add(*values)


def quantity_arithmetic(func: Callable[_P, _R]) -> Callable[_P, _R]:
    """Decorator: run ``func`` with ``CONTEXT``'s precision as the thread's decimal context, so
    plain ``+``/``-`` on quantities inside it (report sums, variances) keep all 38 digits. Inexact
    results are not trapped there, so a percentage may still be divided and quantized."""

    @wraps(func)
    def run(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        with localcontext(CONTEXT) as context:
            context.traps[Inexact] = False
            return func(*args, **kwargs)

    return run


def format_quantity(value: Decimal) -> str:
    """Canonical text of a quantity: no exponent, no trailing zeros (``Decimal('1.50')`` →
    ``1.5``), all digits kept. A value far outside the ledger's range (which the ledger refuses)
    keeps its exponent form, so a hostile ``1E+999999`` never becomes a million characters."""
    if not value.is_finite():
        return str(value)
    if not value:
        return "0"
    try:
        normal = value.normalize(CONTEXT)
    except Inexact:  # more than 80 significant digits: far outside the range
        return str(value)
    text = str(normal)
    if "E" not in text:  # the common case: str() is already the plain form
        return text
    exponent = normal.as_tuple().exponent
    if normal.adjusted() > 2 * INTEGER_DIGITS or (
        isinstance(exponent, int) and exponent < -4 * DECIMALS
    ):
        return text
    return format(normal, "f")


def _short(value: Decimal) -> str:
    text = format_quantity(value)
    return text if len(text) <= 60 else f"{text[:57]}…"
