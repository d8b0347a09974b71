"""Keeping the delivery tables healthy: republish deliveries that went quiet, prune the outbox.

**Stuck deliveries.** An open delivery (``pending``, ``retrying`` or ``in_flight``) is moved on by
its transport message: the outbox row (embedded transport) or the broker message the relay
published (RabbitMQ). If that message is gone — a queue purged or deleted by hand, a broker
restored from an old backup — the delivery would wait forever. ``stuck_deliveries`` finds open
deliveries nobody has touched for ``older_than`` (a ``retrying`` one counts from when its retry
was due) whose outbox row counts as published, and ``republish_stuck`` marks those outbox rows
unpublished again so the relay publishes them once more. A delivery whose broker message was in
fact still queued then has two; the worker claims a delivery only while it is open, so the second
copy is dropped (see ``conveyor.delivery.relay``) — republishing is safe, merely wasteful, and the
default age (an hour) keeps it rare.

**Outbox retention.** Outbox rows are the hand-over to the transport; once their delivery is
``delivered`` they serve nothing (the ``deliveries`` row keeps status, attempts, reference and
times for the audit). ``prune_outbox`` deletes rows published before a cutoff whose delivery is
delivered, in chunks, each its own short transaction. Rows of deliveries that are parked or still
open are kept, since replaying them unpublishes the same row.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import Engine, Table, and_, delete, func, or_, select, update

from conveyor.ledger.models import DeliveryRow, OutboxRow, utcnow
from conveyor.transport.notify import notify_outbox

deliveries_t = cast(Table, DeliveryRow.__table__)
outbox_t = cast(Table, OutboxRow.__table__)
OPEN = ("pending", "in_flight", "retrying")
DEFAULT_STUCK_AFTER = timedelta(hours=1)
CHUNK = 5_000


def _stuck_query(older_than: timedelta, targets: Sequence[str]) -> Any:
    d, o = deliveries_t, outbox_t
    cutoff = utcnow() - older_than
    quiet = and_(
        d.c.status.in_(OPEN),
        d.c.updated_at < cutoff,
        or_(d.c.status != "retrying", d.c.next_attempt_at.is_(None), d.c.next_attempt_at < cutoff),
    )
    query = (
        select(d.c.id, d.c.target, d.c.status, d.c.updated_at, o.c.id.label("outbox_id"))
        .select_from(d.join(o, o.c.delivery_id == d.c.id))
        .where(quiet, o.c.published_at.is_not(None))
        .order_by(d.c.id)
    )
    if targets:
        query = query.where(d.c.target.in_(list(targets)))
    return query


def stuck_deliveries(
    engine: Engine,
    *,
    older_than: timedelta = DEFAULT_STUCK_AFTER,
    targets: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """Open deliveries untouched for ``older_than`` whose transport message was handed over
    (oldest first): ``id``, ``target``, ``status``, ``updated_at``."""
    with engine.connect() as conn:
        return [
            {"id": r.id, "target": r.target, "status": r.status, "updated_at": r.updated_at}
            for r in conn.execute(_stuck_query(older_than, targets))
        ]


def republish_stuck(
    engine: Engine,
    *,
    older_than: timedelta = DEFAULT_STUCK_AFTER,
    targets: Sequence[str] = (),
) -> int:
    """Mark the outbox rows of stuck deliveries unpublished (the relay publishes them again, the
    embedded transport fetches them); how many. Safe to repeat."""
    o = outbox_t
    with engine.begin() as conn:
        rows = [r.outbox_id for r in conn.execute(_stuck_query(older_than, targets))]
        republished = 0
        for start in range(0, len(rows), CHUNK):
            chunk = rows[start : start + CHUNK]
            republished += conn.execute(
                update(o)
                .where(o.c.id.in_(chunk), o.c.published_at.is_not(None))
                .values(published_at=None, available_at=None, claimed_by=None)
            ).rowcount
        if republished:
            notify_outbox(conn)
    return republished


def prune_outbox(engine: Engine, *, older_than: timedelta, chunk_size: int = CHUNK) -> int:
    """Delete outbox rows published more than ``older_than`` ago whose delivery is delivered;
    how many. Each chunk is its own transaction, so an interrupted prune keeps what it did."""
    if older_than < timedelta(0):
        raise ValueError("older_than must not be negative")
    d, o = deliveries_t, outbox_t
    cutoff = utcnow() - older_than
    candidates = (
        select(o.c.id)
        .select_from(o.join(d, d.c.id == o.c.delivery_id))
        .where(o.c.published_at < cutoff, d.c.status == "delivered")
        .order_by(o.c.id)
        .limit(chunk_size)
    )
    pruned = 0
    while True:
        with engine.begin() as conn:
            ids = list(conn.execute(candidates).scalars())
            if not ids:
                return pruned
            pruned += conn.execute(delete(o).where(o.c.id.in_(ids))).rowcount


def outbox_size(engine: Engine) -> dict[str, int]:
    """Outbox rows: ``total``, ``unpublished``, and ``prunable`` (published, delivery
    delivered)."""
    d, o = deliveries_t, outbox_t
    with engine.connect() as conn:
        total = conn.execute(select(func.count()).select_from(o)).scalar_one()
        unpublished = conn.execute(
            select(func.count()).where(o.c.published_at.is_(None))
        ).scalar_one()
        prunable = conn.execute(
            select(func.count())
            .select_from(o.join(d, d.c.id == o.c.delivery_id))
            .where(o.c.published_at.is_not(None), d.c.status == "delivered")
        ).scalar_one()
    return {"total": int(total), "unpublished": int(unpublished), "prunable": int(prunable)}
