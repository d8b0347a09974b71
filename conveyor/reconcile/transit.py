"""Movements in transit: accepted by the hub, not yet delivered to a system when it was counted.

A movement (a row of ``stock_movements``) whose message the hub accepted at or before the run's
``as_of`` is in transit for system X when its delivery to X was not ``delivered`` by the time X's
snapshot was taken (still pending, retrying, parked, or delivered later). The hub's stock already
holds it; X's does not yet: the difference is timing, not a wrong count.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from sqlalchemy import Engine, or_, select

from conveyor.ledger.models import DeliveryRow, MessageRow, StockMovementRow
from conveyor.reconcile.lines import Transit, join_key


def in_transit(
    engine: Engine,
    systems: Sequence[str],
    *,
    as_of: datetime,
    snapshot_times: Mapping[str, datetime] | None = None,
) -> Transit:
    """Quantities in transit per line key and system (``snapshot_times`` default to ``as_of``)."""
    times = {system: (snapshot_times or {}).get(system) or as_of for system in systems}
    deliveries = DeliveryRow.__table__
    messages = MessageRow.__table__
    movements = StockMovementRow.__table__
    earliest = min(times.values())
    query = (
        select(
            deliveries.c.target,
            deliveries.c.status,
            deliveries.c.delivered_at,
            messages.c.source,
            messages.c.key,
            movements.c.material,
            movements.c.location,
            movements.c.lot,
            movements.c.quantity,
        )
        .select_from(
            deliveries.join(messages, messages.c.id == deliveries.c.message_pk).join(
                movements, movements.c.message_pk == messages.c.id
            )
        )
        .where(
            deliveries.c.target.in_(list(systems)),
            messages.c.accepted_at <= as_of,
            or_(
                deliveries.c.status != "delivered",
                deliveries.c.delivered_at.is_(None),
                deliveries.c.delivered_at > earliest,
            ),
        )
        .order_by(deliveries.c.id, movements.c.id)
    )
    transit = Transit()
    with engine.connect() as conn:
        for r in conn.execute(query):
            taken = times[r.target]
            if r.status == "delivered" and r.delivered_at is not None and r.delivered_at <= taken:
                continue
            transit.add(
                join_key(r.material, r.location, r.lot),
                r.target,
                r.quantity,
                f"{r.source}:{r.key} → {r.target} ({r.status})",
            )
    return transit
