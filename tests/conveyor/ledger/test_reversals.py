"""Reversals on SQLite and PostgreSQL: a reversal undoes exactly its original's stock effect, at
most once; a reversal is never reversed; everything else is parked with the rule it broke."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from conveyor.ledger import Ledger
from conveyor.messages import new_message
from tests.support.ledger_checks import assert_positions_balance


def output(key: str, **payload: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "order_id": "PO-7",
        "material": "RM-1001",
        "quantity": "10",
        "uom": "KG",
        "location": "1000/RM",
    }
    base.update(payload)
    return new_message("production_output", "mes", key, base)


def adjustment(key: str, quantity: str, **payload: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "material": "RM-1001",
        "quantity": quantity,
        "uom": "KG",
        "location": "1000/RM",
        "reason": "count",
    }
    base.update(payload)
    return new_message("stock_adjustment", "mes", key, base)


def stock(ledger: Ledger) -> dict[tuple[str, str, str], Decimal]:
    return {(p.material, p.location, p.lot): p.quantity for p in ledger.positions()}


def rule_of(result: Any) -> str:
    return str(result.error.problems[0].rule)


def test_reversal_restores_the_position(ledger: Ledger) -> None:
    assert ledger.accept(output("GR-1/1", lot="L1")).status == "accepted"
    result = ledger.accept(output("GR-1R/1", lot="L1", reversal_of="GR-1/1"))
    assert result.status == "accepted"
    assert stock(ledger) == {}
    assert_positions_balance(ledger)


def test_same_original_reversed_twice_is_refused(ledger: Ledger) -> None:
    ledger.accept(output("GR-1/1"))
    assert ledger.accept(output("GR-1R/1", reversal_of="GR-1/1")).status == "accepted"
    second = ledger.accept(output("GR-1R2/1", reversal_of="GR-1/1"))
    assert second.status == "rejected"
    assert rule_of(second) == "reversal_of.once"
    assert "already reversed by GR-1R/1" in str(second.error)
    assert second.parked_id is not None
    assert stock(ledger) == {}
    assert_positions_balance(ledger)


def test_two_reversals_of_one_original_in_one_batch(ledger: Ledger) -> None:
    results = ledger.accept_batch(
        [
            output("GR-1/1"),
            output("GR-1R/1", reversal_of="GR-1/1"),
            output("GR-1R2/1", reversal_of="GR-1/1"),
        ]
    )
    assert [r.status for r in results] == ["accepted", "accepted", "rejected"]
    assert rule_of(results[2]) == "reversal_of.once"
    assert stock(ledger) == {}
    assert_positions_balance(ledger)


def test_reversal_with_other_material_location_quantity_and_unit_is_refused(
    ledger: Ledger,
) -> None:
    ledger.accept(output("GR-1/1"))
    wrong = output(
        "GR-1R/1",
        material="RM-2001",
        location="1000/FG",
        quantity="999",
        uom="PCS",
        reversal_of="GR-1/1",
    )
    result = ledger.accept(wrong)
    assert result.status == "rejected"
    assert rule_of(result) == "reversal_of.match"
    reason = str(result.error)
    for name in ("material", "location", "quantity", "uom"):
        assert f"{name} " in reason
    assert stock(ledger) == {("RM-1001", "1000/RM", ""): Decimal(10)}
    [parked] = ledger.parked_records()
    assert json.loads(parked.problems)[0]["rule"] == "reversal_of.match"
    assert_positions_balance(ledger)


@pytest.mark.parametrize(
    ("field", "value"), [("lot", "L9"), ("quantity", "5"), ("order_id", "PO-8")]
)
def test_reversal_must_repeat_each_field(ledger: Ledger, field: str, value: str) -> None:
    ledger.accept(output("GR-1/1"))
    result = ledger.accept(output("GR-1R/1", reversal_of="GR-1/1", **{field: value}))
    assert result.status == "rejected"
    assert rule_of(result) == "reversal_of.match"
    assert field in str(result.error)
    assert_positions_balance(ledger)


def test_equal_quantity_in_another_notation_reverses(ledger: Ledger) -> None:
    ledger.accept(output("GR-1/1", quantity="10.5"))
    assert ledger.accept(output("GR-1R/1", quantity="10.500", reversal_of="GR-1/1")).status == (
        "accepted"
    )
    assert stock(ledger) == {}


def test_partial_reversal_is_an_ordinary_opposite_movement(ledger: Ledger) -> None:
    ledger.accept(output("GR-1/1"))
    partial = adjustment("ADJ-1/1", "-4")
    assert ledger.accept(partial).status == "accepted"
    assert stock(ledger) == {("RM-1001", "1000/RM", ""): Decimal(6)}
    assert_positions_balance(ledger)


def test_reversal_of_a_reversal_is_refused(ledger: Ledger) -> None:
    ledger.accept(output("GR-1/1"))
    ledger.accept(output("GR-1R/1", reversal_of="GR-1/1"))
    again = ledger.accept(output("GR-1RR/1", reversal_of="GR-1R/1"))
    assert again.status == "rejected"
    assert rule_of(again) == "reversal_of.reversal"
    assert "book the movement again" in str(again.error)
    assert stock(ledger) == {}
    assert_positions_balance(ledger)


def test_adjustment_reversal_carries_the_original_signed_quantity(ledger: Ledger) -> None:
    ledger.accept(adjustment("ADJ-1/1", "4"))
    wrong_sign = ledger.accept(adjustment("ADJ-1R/1", "-4", reversal_of="ADJ-1/1"))
    assert wrong_sign.status == "rejected"
    assert rule_of(wrong_sign) == "reversal_of.match"
    assert ledger.accept(adjustment("ADJ-1R2/1", "4", reversal_of="ADJ-1/1")).status == "accepted"
    assert stock(ledger) == {}
    assert_positions_balance(ledger)


def test_transfer_reversal_needs_both_locations(ledger: Ledger) -> None:
    def transfer(key: str, to: str, **extra: Any) -> dict[str, Any]:
        payload = {"material": "M1", "quantity": "3", "uom": "KG", "from_location": "A"}
        return new_message("stock_transfer", "wms", key, {**payload, "to_location": to, **extra})

    ledger.accept(transfer("TO-1/1", "B"))
    wrong = ledger.accept(transfer("TO-1R/1", "C", reversal_of="TO-1/1"))
    assert wrong.status == "rejected"
    assert "to_location" in str(wrong.error)
    assert ledger.accept(transfer("TO-1R2/1", "B", reversal_of="TO-1/1")).status == "accepted"
    assert stock(ledger) == {}
    assert_positions_balance(ledger)


def test_reversal_before_its_original_in_one_batch_is_refused(ledger: Ledger) -> None:
    results = ledger.accept_batch([output("GR-1R/1", reversal_of="GR-1/1"), output("GR-1/1")])
    assert [r.status for r in results] == ["rejected", "accepted"]
    assert rule_of(results[0]) == "reversal_of.exists"
    assert_positions_balance(ledger)


def test_resending_an_accepted_reversal_is_a_duplicate(ledger: Ledger) -> None:
    ledger.accept(output("GR-1/1"))
    reversal = output("GR-1R/1", reversal_of="GR-1/1")
    assert ledger.accept(reversal).status == "accepted"
    assert ledger.accept(dict(reversal)).status == "duplicate"
    assert stock(ledger) == {}
