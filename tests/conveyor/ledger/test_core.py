"""The ledger on SQLite and PostgreSQL: accept, dedupe, stock, reversals, parking, trace."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from conveyor.ledger import Ledger, Origin
from conveyor.ledger.models import (
    DeliveryRow,
    MessageRow,
    OutboxRow,
    ParkedRecordRow,
    StockMovementRow,
)
from conveyor.messages import new_message

REPO = Path(__file__).resolve().parents[3]


def count(ledger: Ledger, model: type) -> int:
    with ledger.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(model)).scalar_one())


def samples() -> list[dict[str, Any]]:
    return [
        json.loads(line) for line in (REPO / "samples" / "messages.jsonl").read_text().splitlines()
    ]


def movement(kind: str, key: str, source: str = "mes", **payload: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"material": "M1", "uom": "KG"}
    if kind in ("production_output", "material_consumption"):
        base["order_id"] = "PO-7"
    base.update(payload)
    return new_message(kind, source, key, base)


def test_batch_accept_routes_and_counts(ledger: Ledger) -> None:
    results = ledger.accept_batch(samples())
    assert [r.status for r in results] == ["accepted"] * 13
    assert count(ledger, MessageRow) == 13
    # production_order sap→(no route in the test router), mes → erp+wms, wms transfer → erp
    assert (
        count(ledger, DeliveryRow)
        == count(ledger, OutboxRow)
        == sum(len(r.targets) for r in results)
    )


def test_same_batch_twice_is_all_duplicate_and_changes_nothing(ledger: Ledger) -> None:
    ledger.accept_batch(samples())
    before = (
        ledger.positions(),
        count(ledger, MessageRow),
        count(ledger, DeliveryRow),
        count(ledger, StockMovementRow),
    )
    again = ledger.accept_batch(samples())
    assert {r.status for r in again} == {"duplicate"}
    after = (
        ledger.positions(),
        count(ledger, MessageRow),
        count(ledger, DeliveryRow),
        count(ledger, StockMovementRow),
    )
    assert after == before


def test_duplicate_within_one_batch(ledger: Ledger) -> None:
    message = movement("production_output", "GR-1/1", quantity="1", location="A")
    results = ledger.accept_batch(
        [message, dict(message, message_id="0b8f3a56-8c1e-4c51-9a55-4a2b5f0f0f01")]
    )
    assert [r.status for r in results] == ["accepted", "duplicate"]
    assert ledger.positions()[0].quantity == Decimal(1)


def test_reused_message_id_with_other_key_is_rejected_not_duplicate(ledger: Ledger) -> None:
    first = movement("production_output", "GR-1/1", quantity="1", location="A")
    ledger.accept(first)
    clash = movement("production_output", "GR-2/1", quantity="1", location="A")
    clash["message_id"] = first["message_id"]
    result = ledger.accept(clash)
    assert result.status == "rejected"
    assert "message_id" in str(result.error)
    assert count(ledger, ParkedRecordRow) == 1


def test_exact_stock_after_a_day_of_movements(ledger: Ledger) -> None:
    sequence = [
        movement("production_output", "GR-1/1", quantity="0.1", location="A"),
        movement("production_output", "GR-2/1", quantity="0.2", location="A"),
        movement("material_consumption", "MC-1/1", quantity="0.05", location="A"),
        movement(
            "stock_transfer",
            "TO-1/1",
            source="wms",
            quantity="0.1",
            from_location="A",
            to_location="B",
        ),
        movement("stock_adjustment", "SC-1/1", quantity="-0.01", location="B", reason="scrap"),
        movement(
            "material_consumption", "MC-1R/1", quantity="0.05", location="A", reversal_of="MC-1/1"
        ),
    ]
    assert {r.status for r in ledger.accept_batch(sequence[:3])} == {"accepted"}
    for message in sequence[3:]:
        assert ledger.accept(message).status == "accepted"
    stock = {p.location: p.quantity for p in ledger.positions()}
    assert stock == {"A": Decimal("0.2"), "B": Decimal("0.09")}
    assert str(stock["A"]) == "0.2"


def test_sample_day_positions(ledger: Ledger) -> None:
    ledger.accept_batch(samples())
    stock = {(p.material, p.location, p.lot): p.quantity for p in ledger.positions()}
    assert stock == {
        ("RM-2001", "1000/WIP-ASSY", ""): Decimal("16"),
        ("RM-2001", "1000/RM", ""): Decimal("4600"),
        ("FG-5001", "1000/FG", "FG261121-A"): Decimal("46"),
        ("RM-1001", "1000/WIP-MOLD", "L2611-07"): Decimal("129.85"),
        ("RM-1001", "1000/RM", "L2611-07"): Decimal("750.25"),
    }


def test_reversal_of_unknown_message_is_parked(ledger: Ledger) -> None:
    result = ledger.accept(
        movement("production_output", "GR-9R/1", quantity="1", location="A", reversal_of="GR-9/1")
    )
    assert result.status == "rejected"
    assert "reversal_of" in str(result.error)
    assert ledger.positions() == []
    assert count(ledger, ParkedRecordRow) == 1


def test_reversal_of_another_type_is_refused(ledger: Ledger) -> None:
    ledger.accept(movement("production_output", "GR-1/1", quantity="1", location="A"))
    result = ledger.accept(
        movement("material_consumption", "MC-1/1", quantity="1", location="A", reversal_of="GR-1/1")
    )
    assert result.status == "rejected"
    assert "reversal_of.type" in str(result.error)


def test_other_unit_than_the_position_is_refused(ledger: Ledger) -> None:
    ledger.accept(movement("production_output", "GR-1/1", quantity="1", location="A"))
    result = ledger.accept(
        movement("production_output", "GR-2/1", quantity="1000", location="B", uom="G")
    )
    assert result.status == "rejected"
    assert "kept in KG" in str(result.error)


def test_snapshot_changes_no_position(ledger: Ledger) -> None:
    snapshot = new_message(
        "stock_snapshot",
        "wms",
        "SNAP/2026-11-21",
        {
            "as_of": "2026-11-21T08:00:00+08:00",
            "rows": [{"material": "M1", "location": "A", "quantity": "5", "uom": "KG"}],
        },
    )
    assert ledger.accept(snapshot).status == "accepted"
    assert ledger.positions() == []


def test_invalid_records_are_parked_with_origin_once(ledger: Ledger) -> None:
    bad = movement("production_output", "GR-1/1", quantity="-1", location="A")
    origin = Origin(file="drop/in.jsonl", line=7)
    first = ledger.accept(bad, origin)
    second = ledger.accept(bad, origin)
    assert first.status == second.status == "rejected"
    assert first.parked_id == second.parked_id
    [parked] = ledger.parked_records()
    assert (parked.file, parked.line, parked.stage, parked.system) == (
        "drop/in.jsonl",
        7,
        "validate",
        "mes",
    )
    problem = json.loads(parked.problems)[0]
    assert problem == {
        "field": "$.payload.quantity",
        "value": "-1",
        "rule": "pattern",
        "message": problem["message"],
    }
    assert json.loads(parked.record)["key"] == "GR-1/1"


def test_parse_errors_are_parked(ledger: Ledger) -> None:
    result = ledger.accept(
        ValueError("Expecting value: line 1 column 1"), Origin(file="x.jsonl", line=3)
    )
    assert result.status == "rejected"
    [parked] = ledger.parked_records()
    assert parked.stage == "parse"


def test_park_and_resolve(ledger: Ledger) -> None:
    parked_id = ledger.park(
        stage="map", reason="no material row for 'X-1'", record={"MATNR": "X-1"}, system="sap"
    )
    assert [p.id for p in ledger.parked_records(stage="map")] == [parked_id]
    ledger.resolve_parked(parked_id, message_id="m-1")
    assert ledger.parked_records() == []
    assert ledger.parked_records(status="replayed")[0].resolved_message_id == "m-1"


def test_trace_by_order_lot_key_and_id(ledger: Ledger) -> None:
    results = ledger.accept_batch(samples())
    by_order = ledger.trace("100045")
    assert len(by_order["messages"]) == 10  # the order, 2 transfers, 6 consumptions, 1 output
    by_lot = ledger.trace("FG261121-A")
    assert {m["key"] for m in by_lot["messages"]} == {"GR-100045-01/1", "SCR-100045-01/1"}
    by_key = ledger.trace("MC-100045-0004/1")
    assert {m["key"] for m in by_key["messages"]} == {"MC-100045-0004/1", "MC-100045-0004R/1"}
    by_id = ledger.trace(str(results[0].message_id))
    [found] = by_id["messages"]
    assert found["deliveries"] == []
    assert found["routes"] == 0
    consumption = next(m for m in by_order["messages"] if m["key"] == "MC-100045-0001/1")
    assert consumption["stock_changes"][0]["quantity"] == Decimal("-120.1")
    assert {d["target"] for d in consumption["deliveries"]} == {"erp", "wms"}


def test_checkpoints(ledger: Ledger) -> None:
    assert ledger.checkpoint("sap", "orders") is None
    ledger.save_checkpoint("sap", "orders", "2026-11-21T08:00:00Z")
    ledger.save_checkpoint("sap", "orders", "2026-11-21T09:00:00Z")
    assert ledger.checkpoint("sap", "orders") == "2026-11-21T09:00:00Z"


@pytest.mark.parametrize("size", [1, 1500])
def test_large_batch_in_one_transaction(ledger: Ledger, size: int) -> None:
    batch = [
        movement("production_output", f"GR-{i}/1", quantity="1.001", location=f"L{i % 7}")
        for i in range(size)
    ]
    assert {r.status for r in ledger.accept_batch(batch)} == {"accepted"}
    assert sum(p.quantity for p in ledger.positions()) == Decimal("1.001") * size


# ---------------------------------------------------------------------- hostile records
def test_envelope_fields_of_the_wrong_type_are_rejected_beside_a_valid_one(
    ledger: Ledger,
) -> None:
    good = movement(
        "stock_adjustment", "ADJ-OK", reason="count_difference", quantity="3", location="L1"
    )
    hostile: list[Any] = [
        {**good, "type": ["stock_adjustment"], "key": "A1"},
        {**good, "type": {"a": 1}, "key": "A2"},
        {**good, "type": 7, "key": "A3"},
        {**good, "source": 5, "key": "A4"},
        {**good, "key": 5},
        {**good, "source": "s" * 500, "key": "A6"},
    ]
    results = ledger.accept_batch([*hostile, good], [Origin("f.jsonl", i + 1) for i in range(7)])
    assert [r.status for r in results] == ["rejected"] * 6 + ["accepted"]
    rows = ledger.parked_records()
    assert [r.line for r in rows] == [1, 2, 3, 4, 5, 6]
    assert {r.message_type for r in rows} == {None, "stock_adjustment"}
    assert rows[3].system is None
    assert rows[5].system is not None
    assert len(rows[5].system) <= 64


def test_a_huge_rejected_record_is_stored_and_reported_clipped(ledger: Ledger) -> None:
    from conveyor.errors import UnreadableRecordError

    huge = movement(
        "stock_adjustment", "ADJ-BIG", reason="count_difference", quantity="x" * 3_000_000
    )
    unreadable = UnreadableRecordError("not JSON", text="\x00binary\ud800" + "z" * 2_000_000)
    results = ledger.accept_batch([huge, unreadable], [Origin("f.jsonl", 1), Origin("f.jsonl", 2)])
    assert [r.status for r in results] == ["rejected", "rejected"]
    assert len(str(results[0].error)) < 3_000_000  # the value is clipped in the reason too
    rows = ledger.parked_records()
    for row in rows:
        assert len(row.record) < (1 << 20) + 100
        assert len(row.reason) < 5000
        assert len(row.problems) < 5000
    assert "more characters" in rows[0].record
    assert rows[1].record.startswith("\\x00binary\\ud800")
