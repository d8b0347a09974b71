"""Quantities at the edge of NUMERIC(38, 12), on SQLite and PostgreSQL: 38 digits round-trip
exactly (accept → position → read back, and sums), JSON numbers keep the same bounds as text, and
a sum that would not fit is refused, never rounded."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from conveyor.ledger import Ledger
from conveyor.ledger.models import StockMovementRow
from conveyor.messages import loads, new_message
from tests.support.ledger_checks import assert_positions_balance

BIG = "12345678901234567890123456.123456789012"  # 38 significant digits
OTHER = "23456789012345678901234567.876543210987"
SUM = "35802467913580246791358023.999999999999"
LARGEST = "99999999999999999999999999.999999999999"


def output(key: str, quantity: Any, location: str = "1000/RM") -> dict[str, Any]:
    return new_message(
        "production_output",
        "mes",
        key,
        {
            "order_id": "PO-7",
            "material": "RM-1001",
            "quantity": quantity,
            "uom": "KG",
            "location": location,
        },
    )


def test_38_digits_round_trip_exactly(ledger: Ledger) -> None:
    assert ledger.accept(output("GR-1/1", BIG)).status == "accepted"
    [position] = ledger.positions()
    assert position.quantity == Decimal(BIG)
    assert str(position.quantity) == BIG
    with ledger.engine.connect() as conn:
        stored = conn.execute(select(StockMovementRow.quantity)).scalar_one()
    assert str(stored) == BIG
    [traced] = ledger.trace("GR-1/1")["messages"]
    assert traced["payload"]["quantity"] == BIG
    assert_positions_balance(ledger)


def test_sum_of_two_38_digit_quantities_is_exact(ledger: Ledger) -> None:
    ledger.accept(output("GR-1/1", BIG))
    assert ledger.accept(output("GR-2/1", OTHER)).status == "accepted"
    assert str(ledger.positions()[0].quantity) == SUM
    # and within one batch (summed in Python before the position is written)
    ledger.accept_batch([output("GR-3/1", BIG, "B"), output("GR-4/1", OTHER, "B")])
    assert {str(p.quantity) for p in ledger.positions()} == {SUM}
    assert_positions_balance(ledger)


def test_consuming_38_digits_back_to_zero(ledger: Ledger) -> None:
    ledger.accept(output("GR-1/1", BIG))
    consumption = new_message(
        "material_consumption",
        "mes",
        "MC-1/1",
        {
            "order_id": "PO-7",
            "material": "RM-1001",
            "quantity": BIG,
            "uom": "KG",
            "location": "1000/RM",
        },
    )
    assert ledger.accept(consumption).status == "accepted"
    assert [p.quantity for p in ledger.positions(include_zero=True)] == [Decimal(0)]
    assert_positions_balance(ledger)


def test_a_sum_beyond_the_range_is_refused_not_rounded(ledger: Ledger) -> None:
    assert ledger.accept(output("GR-1/1", LARGEST)).status == "accepted"
    result = ledger.accept(output("GR-2/1", "0.000000000001"))
    assert result.status == "rejected"
    assert result.error is not None
    assert result.error.problems[0].rule == "quantity.range"  # type: ignore[attr-defined]
    assert "never rounded" in str(result.error)
    assert str(ledger.positions()[0].quantity) == LARGEST
    assert len(ledger.parked_records()) == 1
    assert_positions_balance(ledger)


def test_overflow_within_one_batch_refuses_only_the_message_that_overflows(
    ledger: Ledger,
) -> None:
    half = "60000000000000000000000000"
    results = ledger.accept_batch(
        [output("GR-1/1", half), output("GR-2/1", half), output("GR-3/1", "1")]
    )
    assert [r.status for r in results] == ["accepted", "rejected", "accepted"]
    assert str(ledger.positions()[0].quantity) == "60000000000000000000000001"
    assert_positions_balance(ledger)


@pytest.mark.parametrize(
    "number",
    [
        "1e999999",
        "1e400",
        "1" + "0" * 39,  # a 40-digit integer
        "123456789012345678901234567",  # 27 integer digits
        "0.0000000000001",  # 13 decimals
        "-0.0",
        "0.0",
        "-5",
    ],
)
def test_json_numbers_keep_the_bounds_of_text(ledger: Ledger, number: str) -> None:
    line = json.dumps(output("GR-1/1", "1")).replace('"quantity":"1"', f'"quantity":{number}')
    line = line.replace('"quantity": "1"', f'"quantity": {number}')
    record = loads(line)
    assert not isinstance(record["payload"]["quantity"], str)
    result = ledger.accept(record)
    assert result.status == "rejected", number
    [parked] = ledger.parked_records()
    assert len(parked.problems) < 2000  # the value is kept short, not a million digits
    assert ledger.positions() == []


def test_a_zero_adjustment_as_a_json_number_is_refused(ledger: Ledger) -> None:
    adjustment = new_message(
        "stock_adjustment",
        "mes",
        "ADJ-1/1",
        {
            "material": "M1",
            "quantity": Decimal("-0.0"),
            "uom": "KG",
            "location": "A",
            "reason": "x",
        },
    )
    result = ledger.accept(adjustment)
    assert result.status == "rejected"
    assert "must not be zero" in str(result.error)
    assert ledger.positions(include_zero=True) == []
