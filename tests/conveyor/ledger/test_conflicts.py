"""The same business key with another content, on SQLite and PostgreSQL: a ``conflict`` (the
stored version stands, the new one is parked and visible in trace), never a silent duplicate."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal
from typing import Any

from sqlalchemy import select, update

from conveyor.ledger import Ledger
from conveyor.ledger.core import content_hash
from conveyor.ledger.models import MessageRow
from conveyor.messages import new_message
from tests.support.ledger_checks import assert_positions_balance


def output(quantity: Any = "10", **envelope: Any) -> dict[str, Any]:
    message = new_message(
        "production_output",
        "mes",
        "GR-1/1",
        {
            "order_id": "PO-7",
            "material": "RM-1001",
            "quantity": quantity,
            "uom": "KG",
            "location": "1000/RM",
        },
        occurred_at="2026-11-21T08:00:00+08:00",
    )
    message.update(envelope)
    return message


def again(message: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """Another message with the same key: a new message_id, ``changes`` applied."""
    copy = dict(message, message_id=str(uuid.uuid4()))
    copy["payload"] = dict(message["payload"])
    for name, value in changes.items():
        if name in copy["payload"] or name == "lot":
            copy["payload"][name] = value
        else:
            copy[name] = value
    return copy


def test_same_content_is_a_duplicate_whatever_the_envelope(ledger: Ledger) -> None:
    first = output()
    assert ledger.accept(first).status == "accepted"
    for variant in (
        again(first, mapping_version="sha256:other"),
        again(first, correlation_id="c-2"),
        again(first, quantity="10.000"),  # the same quantity written otherwise
        again(first, quantity=Decimal(10)),  # as a JSON number
        again(first, occurred_at="2026-11-21T00:00:00Z"),  # the same instant in UTC
    ):
        assert ledger.accept(variant).status == "duplicate"
    assert ledger.parked_records() == []


def test_other_content_is_a_conflict_kept_beside_the_stored_version(ledger: Ledger) -> None:
    first = output()
    ledger.accept(first)
    changed = again(first, quantity="12")
    result = ledger.accept(changed)
    assert result.status == "conflict"
    assert result.parked_id is not None
    reason = str(result.error)
    assert "payload.quantity" in reason
    assert '"10" → "12"' in reason
    assert first["message_id"] in reason
    assert result.as_dict()["status"] == "conflict"
    [parked] = ledger.parked_records()
    assert parked.stage == "accept"
    assert json.loads(parked.problems)[0]["rule"] == "conflict"
    assert json.loads(parked.record)["payload"]["quantity"] == "12"
    # the stored version stands
    assert [p.quantity for p in ledger.positions()] == [Decimal(10)]
    traced = ledger.trace("GR-1/1")
    assert [m["message_id"] for m in traced["messages"]] == [first["message_id"]]
    assert [p["id"] for p in traced["parked"]] == [parked.id]
    assert "conflict" in traced["parked"][0]["reason"]
    assert_positions_balance(ledger)


def test_conflict_on_occurred_at_or_a_payload_field(ledger: Ledger) -> None:
    first = output()
    ledger.accept(first)
    later = ledger.accept(again(first, occurred_at="2026-11-22T08:00:00+08:00"))
    lot = ledger.accept(again(first, lot="L-2"))
    assert later.status == lot.status == "conflict"
    assert "occurred_at" in str(later.error)
    assert "payload.lot" in str(lot.error)
    assert len(ledger.parked_records()) == 2
    assert_positions_balance(ledger)


def test_conflict_within_one_batch(ledger: Ledger) -> None:
    first = output()
    results = ledger.accept_batch([first, again(first), again(first, quantity="11")])
    assert [r.status for r in results] == ["accepted", "duplicate", "conflict"]
    assert "earlier in this batch" in str(results[2].error)
    assert [p.quantity for p in ledger.positions()] == [Decimal(10)]
    assert_positions_balance(ledger)


def test_the_stored_hash_is_the_content_hash(ledger: Ledger) -> None:
    first = output()
    ledger.accept(first)
    with ledger.engine.connect() as conn:
        stored = conn.execute(select(MessageRow.content_hash)).scalar_one()
    assert stored == content_hash(first)
    assert len(stored) == 64


def test_rows_without_a_hash_are_hashed_from_their_columns(ledger: Ledger) -> None:
    """Messages stored before revision 0004 have no content_hash: still a duplicate or a
    conflict, never a silent duplicate."""
    first = output()
    ledger.accept(first)
    with ledger.engine.begin() as conn:
        conn.execute(update(MessageRow).values(content_hash=None))
    assert ledger.accept(again(first)).status == "duplicate"
    assert ledger.accept(again(first, quantity="3")).status == "conflict"


def test_a_re_raised_alert_is_a_duplicate_whatever_its_moment(ledger: Ledger) -> None:
    """An alert's key carries its figures; when it was raised (occurred_at, as_of, run_id) is not
    content, so every check after the first finds a duplicate, not a conflict."""

    def alert(moment: str, run_id: str) -> dict[str, Any]:
        payload = {
            "alert": "below_safety_stock",
            "material": "RM-1001",
            "quantity": "5",
            "required": "10",
            "shortage": "5",
            "uom": "KG",
            "as_of": moment,
            "run_id": run_id,
        }
        key = "below_safety_stock/RM-1001/5/10"
        return new_message("stock_alert", "hub", key, payload, occurred_at=moment)

    assert ledger.accept(alert("2026-11-21T08:00:00Z", "r-1")).status == "accepted"
    assert ledger.accept(alert("2026-11-22T09:30:00Z", "r-2")).status == "duplicate"
    changed = alert("2026-11-22T09:30:00Z", "r-2")
    changed["payload"]["shortage"] = "6"
    assert ledger.accept(changed).status == "conflict"
