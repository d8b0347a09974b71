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
