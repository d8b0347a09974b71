"""Stock effects of each movement type, and of reversals."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from conveyor.messages import new_message, validate
from conveyor.stock import NO_LOT, movements


def effect(message_type: str, **payload: Any) -> list[tuple[str, str, Decimal]]:
    message = validate(new_message(message_type, "mes", "K/1", payload))
    return [(m.location, m.lot, m.quantity) for m in movements(message)]


BASE = {"material": "M1", "uom": "KG"}


def test_output_adds() -> None:
    assert effect(
        "production_output", order_id="1", quantity="5", location="A", lot="L1", **BASE
    ) == [("A", "L1", Decimal(5))]


def test_consumption_removes_and_negative_returns() -> None:
    assert effect("material_consumption", order_id="1", quantity="2", location="A", **BASE) == [
        ("A", NO_LOT, Decimal(-2))
    ]
    assert effect("material_consumption", order_id="1", quantity="-2", location="A", **BASE) == [
        ("A", NO_LOT, Decimal(2))
    ]


def test_transfer_moves() -> None:
    assert effect("stock_transfer", quantity="3", from_location="A", to_location="B", **BASE) == [
        ("A", NO_LOT, Decimal(-3)),
        ("B", NO_LOT, Decimal(3)),
    ]


def test_adjustment_by_sign() -> None:
    assert effect("stock_adjustment", quantity="-1.5", location="A", reason="scrap", **BASE) == [
        ("A", NO_LOT, Decimal("-1.5"))
    ]


def test_reversal_undoes() -> None:
    assert effect(
        "production_output", order_id="1", quantity="5", location="A", reversal_of="GR/1", **BASE
    ) == [("A", NO_LOT, Decimal(-5))]


@pytest.mark.parametrize("message_type", ["production_order", "material_request", "stock_snapshot"])
def test_non_movements_change_nothing(message_type: str) -> None:
    payloads: dict[str, dict[str, Any]] = {
        "production_order": {
            "order_id": "1",
            "quantity": "5",
            "location": "P",
            "status": "released",
            **BASE,
        },
        "material_request": {"order_id": "1", "quantity": "5", "to_location": "L", **BASE},
        "stock_snapshot": {
            "as_of": "2026-11-21T08:00:00+08:00",
            "rows": [{"location": "A", "quantity": "1", **BASE}],
        },
    }
    assert effect(message_type, **payloads[message_type]) == []
