"""What the delivery side is doing: counts per target and status, the relay's backlog, messages
that matched no route (visible, never silent), live workers, and the parked deliveries."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import Engine, Table, case, func, select

from conveyor.ledger.models import DeliveryRow, MessageRow, OutboxRow, utcnow
from conveyor.transport.liveness import DEFAULT_STALE_AFTER_S
from conveyor.transport.models import workers_t

deliveries_t = cast(Table, DeliveryRow.__table__)
messages_t = cast(Table, MessageRow.__table__)
outbox_t = cast(Table, OutboxRow.__table__)
STATUSES = ("pending", "in_flight", "retrying", "delivered", "parked", "needs_check")
OPEN = ("pending", "in_flight", "retrying")
"""Deliveries still on their way (neither delivered nor parked)."""


def delivery_counts(engine: Engine, targets: Sequence[str] = ()) -> dict[str, dict[str, int]]:
    """Per target: how many deliveries are in each status (every status present, 0 if none),
    and ``unpublished`` outbox rows (the relay's backlog, or the embedded queue)."""
    d, o = deliveries_t, outbox_t
    out: dict[str, dict[str, int]] = defaultdict(
        lambda: dict.fromkeys((*STATUSES, "unpublished"), 0)
    )
    by_status = select(d.c.target, d.c.status, func.count()).group_by(d.c.target, d.c.status)
    backlog = (
        select(o.c.target, func.count()).where(o.c.published_at.is_(None)).group_by(o.c.target)
    )
    if targets:
        by_status = by_status.where(d.c.target.in_(list(targets)))
        backlog = backlog.where(o.c.target.in_(list(targets)))
    with engine.connect() as conn:
        for target, status, count in conn.execute(by_status):
            out[target][status] = int(count)
        for target, count in conn.execute(backlog):
            out[target]["unpublished"] = int(count)
    for target in targets:
        out[target]
    return dict(sorted(out.items()))


def delivery_times(engine: Engine) -> dict[str, dict[str, Any]]:
    """Per target: when its oldest open delivery (pending, in flight, retrying) was created, and
    when its last delivery succeeded (None when there is none)."""
    d = deliveries_t
    query = select(
        d.c.target,
        func.min(case((d.c.status.in_(OPEN), d.c.created_at))),
        func.max(d.c.delivered_at),
    ).group_by(d.c.target)
    with engine.connect() as conn:
        return {
            target: {"oldest_open_at": oldest, "last_delivered_at": last}
            for target, oldest, last in conn.execute(query)
        }


def parked_reasons(engine: Engine, *, limit: int = 1000) -> list[dict[str, Any]]:
    """Parked and needs-check deliveries counted per target and reason (the most frequent
    first, at most ``limit`` groups), with the oldest and newest time one was parked."""
    d = deliveries_t
    count = func.count()
    query = (
        select(
            d.c.target,
            d.c.last_error,
            count,
            func.min(d.c.updated_at),
            func.max(d.c.updated_at),
        )
        .where(d.c.status.in_(("parked", "needs_check")))
        .group_by(d.c.target, d.c.last_error)
        .order_by(d.c.target, count.desc(), d.c.last_error)
        .limit(limit)
    )
    with engine.connect() as conn:
        return [
            {"target": t, "reason": r, "count": int(c), "oldest_at": first, "newest_at": last}
            for t, r, c, first, last in conn.execute(query)
        ]


def unrouted(engine: Engine, *, examples: int = 5) -> dict[str, Any]:
    """Messages that matched no route: how many, by type and source, and the latest few."""
    m = messages_t
    with engine.connect() as conn:
        groups = conn.execute(
            select(m.c.type, m.c.source, func.count())
            .where(m.c.routes == 0)
            .group_by(m.c.type, m.c.source)
            .order_by(m.c.type, m.c.source)
        ).all()
        latest = conn.execute(
            select(m.c.message_id, m.c.type, m.c.source, m.c.key, m.c.accepted_at)
            .where(m.c.routes == 0)
            .order_by(m.c.id.desc())
            .limit(examples)
        ).all()
    return {
        "count": sum(int(c) for _, _, c in groups),
        "by_type_source": [{"type": t, "source": s, "count": int(c)} for t, s, c in groups],
        "latest": [dict(r._mapping) for r in latest],
    }


def workers(
    engine: Engine, *, stale_after_s: float = DEFAULT_STALE_AFTER_S
) -> list[dict[str, Any]]:
    """Workers that have not stopped, with whether their heartbeat is fresh."""
    cutoff = utcnow() - timedelta(seconds=stale_after_s)
    w = workers_t
    with engine.connect() as conn:
        rows = conn.execute(
            select(w).where(w.c.stopped_at.is_(None)).order_by(w.c.started_at)
        ).all()
    return [
        {
            "id": r.id,
            "transport": r.transport,
            "targets": r.targets,
            "started_at": r.started_at,
            "heartbeat_at": r.heartbeat_at,
            "alive": r.heartbeat_at > cutoff,
        }
        for r in rows
    ]


def parked_deliveries(
    engine: Engine,
    *,
    target: str | None = None,
    reason_like: str | None = None,
    ids: Sequence[int] = (),
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Parked and needs-check deliveries with their reasons, oldest first."""
    d, m = deliveries_t, messages_t
    query = (
        select(
            d.c.id,
            d.c.target,
            d.c.status,
            d.c.attempts,
            d.c.last_error,
            d.c.blocked_by,
            d.c.updated_at,
            m.c.message_id,
            m.c.type,
            m.c.source,
            m.c.key,
        )
        .select_from(d.join(m, m.c.id == d.c.message_pk))
        .where(d.c.status.in_(("parked", "needs_check")))
        .order_by(d.c.id)
    )
    if target:
        query = query.where(d.c.target == target)
    if reason_like:
        query = query.where(
            func.lower(d.c.last_error).contains(reason_like.lower(), autoescape=True)
        )
    if ids:
        query = query.where(d.c.id.in_(list(ids)))
    if limit:
        query = query.limit(limit)
    with engine.connect() as conn:
        return [
            {
                "id": r.id,
                "target": r.target,
                "status": r.status,
                "type": r.type,
                "source": r.source,
                "key": r.key,
                "message_id": r.message_id,
                "attempts": r.attempts,
                "reason": r.last_error,
                "blocked_by": r.blocked_by,
                "updated_at": r.updated_at,
            }
            for r in conn.execute(query)
        ]


def as_json(data: Any) -> str:
    """Compact JSON for logs."""
    return json.dumps(data, default=str)
