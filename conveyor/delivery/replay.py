"""Replay parked deliveries: re-map them first (so a fixed mapping applies), then put them back in
the queue — the delivery row to ``pending`` with its attempts reset, its outbox row unpublished
(which the relay publishes again, or the embedded transport fetches).

Deliveries held behind a replayed one (``blocked_by``, same ordering key) are replayed with it,
and the ordering check sends them after it. Replaying is safe to repeat: only rows still parked
are touched, in one transaction per chunk, so a second run (or one interrupted and run again)
re-queues nothing twice. Replaying a ``needs_check`` delivery means a person checked that the
target does not have the document: it is posted again without a lookup.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import Engine, Table, case, false, select, update

from conveyor import messages as canonical
from conveyor.delivery.batch_sql import message_of
from conveyor.ledger.models import DeliveryRow, MessageRow, OutboxRow, utcnow
from conveyor.redact import safe_text
from conveyor.transport.notify import notify_outbox

deliveries_t = cast(Table, DeliveryRow.__table__)
messages_t = cast(Table, MessageRow.__table__)
outbox_t = cast(Table, OutboxRow.__table__)
PARKED = ("parked", "needs_check")


@dataclass
class ReplayResult:
    """What a replay did."""

    requeued: int = 0
    still_failing: int = 0
    """Re-mapping failed again: still parked, with the new reason."""
    selected: int = 0
    failures: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {
            "selected": self.selected,
            "requeued": self.requeued,
            "still_failing": self.still_failing,
            "failures": self.failures,
        }


def select_parked(
    engine: Engine,
    *,
    target: str | None = None,
    ids: Sequence[int] = (),
    everything: bool = False,
) -> list[int]:
    """Ids of parked deliveries to replay, plus those held behind them, in id order."""
    if not (target or ids or everything):
        raise ValueError("say which deliveries: ids, a target, or everything")
    d = deliveries_t
    query = select(d.c.id).where(d.c.status.in_(PARKED))
    if target:
        query = query.where(d.c.target == target)
    if ids:
        query = query.where(d.c.id.in_(list(ids)))
    with engine.connect() as conn:
        chosen = set(conn.execute(query).scalars())
        frontier = set(chosen)
        while frontier:  # deliveries held behind the chosen ones come along
            held = set(
                conn.execute(
                    select(d.c.id).where(
                        d.c.blocked_by.in_(sorted(frontier)), d.c.status.in_(PARKED)
                    )
                ).scalars()
            )
            frontier = held - chosen
            chosen |= held
    return sorted(chosen)


def replay_deliveries(
    engine: Engine,
    ids: Sequence[int],
    *,
    mapping: Any = None,
    chunk_size: int = 500,
    progress: Callable[[int], None] | None = None,
) -> ReplayResult:
    """Re-map and re-queue the parked deliveries ``ids`` (see the module docstring)."""
    result = ReplayResult(selected=len(ids))
    d, m, o = deliveries_t, messages_t, outbox_t
    for start in range(0, len(ids), chunk_size):
        chunk = list(ids[start : start + chunk_size])
        now = utcnow()
        with engine.begin() as conn:
            rows = conn.execute(
                select(d.c.id, d.c.target, m)
                .select_from(d.join(m, m.c.id == d.c.message_pk))
                .where(d.c.id.in_(chunk), d.c.status.in_(PARKED))
            ).all()
            ready: list[int] = []
            for r in rows:
                error = _remap_error(mapping, r.target, r)
                if error is None:
                    ready.append(r.id)
                    continue
                error = safe_text(error)  # stored and printed: no secret, no 50 MB reason
                result.still_failing += 1
                result.failures.append({"id": r.id, "target": r.target, "reason": error})
                conn.execute(
                    update(d)
                    .where(d.c.id == r.id, d.c.status.in_(PARKED))
                    .values(last_error=f"replay: {error}", updated_at=now)
                )
            if ready:
                requeued = conn.execute(
                    update(d)
                    .where(d.c.id.in_(ready), d.c.status.in_(PARKED))
                    .values(
                        status="pending",
                        attempts=0,
                        next_attempt_at=None,
                        claimed_by=None,
                        blocked_by=None,
                        needs_lookup=case(
                            (d.c.status == "needs_check", false()), else_=d.c.needs_lookup
                        ),
                        updated_at=now,
                    )
                ).rowcount
                conn.execute(
                    update(o)
                    .where(o.c.delivery_id.in_(ready))
                    .values(published_at=None, available_at=None, claimed_by=None)
                )
                notify_outbox(conn)
                result.requeued += requeued
        if progress is not None:
            progress(len(chunk))
    return result


def _remap_error(mapping: Any, target: str, row: Any) -> str | None:
    """Why the message still cannot be mapped for ``target``, or None when it can."""
    message = message_of(row)
    try:
        if mapping is not None and mapping.has_direction(target, row.type, "out"):
            mapping.map_outbound(target, message)
        else:
            canonical.validate(message)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None
