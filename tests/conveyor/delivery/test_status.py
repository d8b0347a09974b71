"""The delivery queries an operator reads: per target the oldest open delivery and the last
delivery, and parked deliveries counted by reason — on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import update

from conveyor.delivery.status import delivery_times, parked_reasons
from conveyor.ledger import Ledger
from conveyor.ledger.models import DeliveryRow
from tests.conveyor.delivery.conftest import output


def test_oldest_open_and_last_delivered_per_target(ledger: Ledger) -> None:
    ledger.accept_batch([output(1), output(2), output(3)])  # each to erp and wms
    d = DeliveryRow.__table__
    early, late = datetime(2026, 11, 21, 8, tzinfo=UTC), datetime(2026, 11, 21, 9, tzinfo=UTC)
    with ledger.engine.begin() as conn:
        conn.execute(update(d).values(created_at=late))
        conn.execute(update(d).where(d.c.target == "erp", d.c.id == 1).values(created_at=early))
        conn.execute(
            update(d)
            .where(d.c.target == "wms")
            .values(status="delivered", delivered_at=late + timedelta(minutes=5))
        )
    times = delivery_times(ledger.engine)
    assert times["erp"] == {"oldest_open_at": early, "last_delivered_at": None}
    assert times["wms"] == {
        "oldest_open_at": None,
        "last_delivered_at": late + timedelta(minutes=5),
    }


def test_parked_deliveries_are_counted_per_target_and_reason(ledger: Ledger) -> None:
    ledger.accept_batch([output(n) for n in range(1, 5)])
    d = DeliveryRow.__table__
    with ledger.engine.begin() as conn:
        conn.execute(update(d).where(d.c.target == "erp").values(status="parked", last_error="A"))
        conn.execute(
            update(d).where(d.c.target == "erp", d.c.id <= 2).values(last_error="B: closed")
        )
        conn.execute(update(d).where(d.c.target == "wms", d.c.id == 2).values(status="needs_check"))
    groups = [(g["target"], g["reason"], g["count"]) for g in parked_reasons(ledger.engine)]
    assert groups == [("erp", "A", 3), ("erp", "B: closed", 1), ("wms", None, 1)]
