"""The one place that parses quantities: text or numbers to exact ``Decimal``, never via float.

Accepts plain decimals, thousands separators (``1,234.5``), full-width digits (``１２３``) and a
decimal comma when asked. Rejects NaN, infinity, exponents beyond sane bounds and floats that
already
lost precision (a float is converted through its shortest ``repr``, which is exact for what was
typed).
"""

from __future__ import annotations

import re
import unicodedata
from decimal import Decimal, InvalidOperation

_CANONICAL = re.compile(r"-?[0-9]{1,26}(\.[0-9]{1,12})?")
_PLAIN = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)$")
_GROUPED = re.compile(r"^[+-]?\d{1,3}(,\d{3})+(\.\d*)?$")
_GROUPED_EU = re.compile(r"^[+-]?\d{1,3}(\.\d{3})+(,\d*)?$")


class QuantityError(ValueError):
    """A value is not an exact decimal quantity."""


def parse_quantity(value: object, *, decimal_comma: bool = False) -> Decimal:
    """Parse ``value`` to an exact ``Decimal``.

    ``decimal_comma`` reads ``1.234,5`` as 1234.5 (European exports); otherwise commas are
    thousands separators and must group by three.
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


def format_quantity(value: Decimal) -> str:
    """Canonical text of a quantity: no exponent, no trailing zeros (``Decimal('1.50')`` →
    ``1.5``)."""
    if value == 0:
        return "0"
    text = format(value.normalize(), "f")
    return text
