"""Source: the hub's stock positions, now and as they stood before."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from conveyor.ledger import Ledger
from conveyor.messages import new_message
from conveyor.reconcile.sources import (
    HubSnapshot,
    SnapshotStore,
)

from .helpers import rows_of


def test_hub_snapshot_now_and_as_it_stood_before(ledger: Ledger, tmp_path: Path) -> None:
    def adjust(key: str, quantity: str) -> None:
        payload = {
            "material": "M1",
            "location": "L1",
            "quantity": quantity,
            "uom": "KG",
            "reason": "count",
        }
        assert ledger.accept(new_message("stock_adjustment", "mes", key, payload)).status == (
            "accepted"
        )

    adjust("A-1", "10")
    between = datetime.now(UTC)
    adjust("A-2", "5")
    now = HubSnapshot(ledger.engine)
    store = SnapshotStore(tmp_path / "store")
    assert rows_of(now, store) == [("M1", "L1", "", Decimal(15), "KG")]
    assert now.kind == "hub"
    assert now.stored_path is not None
    before = HubSnapshot(ledger.engine, as_of=between)
    assert rows_of(before) == [("M1", "L1", "", Decimal(10), "KG")]
    earlier = HubSnapshot(ledger.engine, as_of=between - timedelta(days=1))
    assert rows_of(earlier) == []  # a zero position is no row
    assert now.sha256 != before.sha256


def test_hub_as_of_counts_movements_by_when_they_occurred(ledger: Ledger) -> None:
    """ "As of 18:00" is by the movements' own time: one that happened at 17:55 but reached the
    hub later counts; one that happened at 19:55 does not, though the hub accepted it first."""
    six_pm = datetime(2026, 11, 21, 10, tzinfo=UTC)  # 18:00 in +08:00
    payload = {"material": "M1", "location": "L1", "quantity": "0", "uom": "KG", "reason": "count"}
    for key, quantity, occurred in (
        ("EVENING", "7", six_pm + timedelta(hours=1, minutes=55)),  # accepted first
        ("OPENING", "100", six_pm - timedelta(hours=12)),
        ("LATE-POSTED", "-3", six_pm - timedelta(minutes=5)),  # accepted last
    ):
        message = new_message(
            "stock_adjustment",
            "mes",
            key,
            {**payload, "quantity": quantity},
            occurred_at=occurred,
        )
        assert ledger.accept(message).status == "accepted"
    assert rows_of(HubSnapshot(ledger.engine)) == [("M1", "L1", "", Decimal(104), "KG")]
    at_six = HubSnapshot(ledger.engine, as_of=six_pm)
    assert rows_of(at_six) == [("M1", "L1", "", Decimal(97), "KG")]
    exactly = HubSnapshot(ledger.engine, as_of=six_pm - timedelta(minutes=5))
    assert rows_of(exactly) == [("M1", "L1", "", Decimal(97), "KG")]  # at its time: counted
    before = HubSnapshot(ledger.engine, as_of=six_pm - timedelta(hours=13))
    assert rows_of(before) == []
