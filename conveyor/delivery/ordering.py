"""Ordering: deliveries with the same ordering key reach a target in acceptance order.

A delivery may start only when every earlier delivery (smaller id) to the same target with the same
``ordering_key`` is delivered. The check is one ``NOT EXISTS`` over the partial index of deliveries
not yet delivered, evaluated inside the claim itself, so unrelated messages never wait for each
other and competing workers cannot overtake. When an earlier delivery is:

- pending, in flight or retrying — the later one waits (comes back when the earlier one is due);
- parked or needs_check — the later one is parked too, *held* behind it (``blocked_by``), so that
  e.g. a reversal never overtakes what it reverses; replaying the earlier one replays it as well.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    ARRAY,
    BindParameter,
    ColumnElement,
    Connection,
    String,
    Table,
    all_,
    exists,
    literal_column,
    select,
)

from conveyor.ledger.models import DeliveryRow

deliveries_t = cast(Table, DeliveryRow.__table__)
FINAL = ("delivered", "parked", "needs_check")
STUCK = ("parked", "needs_check")
DELIVERED = literal_column("'delivered'", String())
"""Inline, not a bind parameter: a prepared statement with a generic plan can then still prove
the predicate of the partial index ``ix_deliveries_open`` (``status <> 'delivered'``)."""


def earlier_open(d: Any, batch: Sequence[int] | BindParameter[Any] = ()) -> ColumnElement[bool]:
    """SQL: an earlier delivery of ``d``'s target and ordering key is not delivered yet.

    Deliveries in ``batch`` do not count: a batch is worked in id order by one thread, which
    stops a chain at its first failure (see ``worker``), so related messages need not wait for
    a round trip through the queue. ``batch`` may be a bind parameter (statements built once):
    an expanding one, or a PostgreSQL array."""
    p = deliveries_t.alias("earlier")
    conditions = [
        p.c.target == d.c.target,
        p.c.ordering_key == d.c.ordering_key,
        p.c.id < d.c.id,
        p.c.status != DELIVERED,
    ]
    if isinstance(batch, BindParameter):
        array = isinstance(batch.type, ARRAY)
        conditions.append(p.c.id != all_(batch) if array else p.c.id.not_in(batch))
    elif batch:
        conditions.append(p.c.id.not_in(list(batch)))
    return exists(select(p.c.id).where(*conditions))


@dataclass(frozen=True)
class Blocker:
    """The earliest delivery a delivery waits for."""

    id: int
    status: str
    next_attempt_at: datetime | None

    @property
    def stuck(self) -> bool:
        """True when it will not move without a person (parked or needs_check)."""
        return self.status in STUCK


def blocker_of(
    conn: Connection, *, delivery_id: int, target: str, ordering_key: str
) -> Blocker | None:
    """The earliest undelivered delivery before ``delivery_id`` with the same key, if any."""
    d = deliveries_t
    row = conn.execute(
        select(d.c.id, d.c.status, d.c.next_attempt_at)
        .where(
            d.c.target == target,
            d.c.ordering_key == ordering_key,
            d.c.id < delivery_id,
            d.c.status != "delivered",
        )
        .order_by(d.c.id)
        .limit(1)
    ).first()
    return Blocker(row.id, row.status, row.next_attempt_at) if row else None
