"""Embedded transport: the ledger's outbox table is the queue. No broker to run.

URL: none (``CONVEYOR_BROKER_URL`` unset) or ``embedded://``.

Features:
- an outbox row with ``published_at IS NULL`` is a queued job; it is settled (acked) by setting
  ``published_at``; rows are fetched oldest first;
- claims use row locks: ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so many workers compete for the
  same target without waiting on each other; SQLite has a single writer (``BEGIN IMMEDIATE``),
  which serialises claims;
- a claimed row names its consumer (``claimed_by``); a consumer registers in ``delivery_workers``
  and keeps a heartbeat, and rows held by a consumer that died or stopped are fetched again;
- ``retry_later`` sets ``available_at``, the retry delay, to the millisecond;
- on PostgreSQL consumers wake on ``NOTIFY conveyor_outbox`` (see ``conveyor.transport.notify``),
  otherwise they poll (``poll_s``, default 0.2 s on SQLite, 1 s on PostgreSQL).

Options (``transport:`` in ``conveyor.yaml``, or ``options=``): ``poll_s``, ``stale_after_s``,
``heartbeat_s``; ``liveness`` (a running ``Liveness`` to share with the worker).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import Engine, Table, bindparam, case, func, or_, select, update

from conveyor.config import RetryPolicy
from conveyor.ledger.models import OutboxRow, utcnow
from conveyor.transport.base import Depth, Envelope, Job
from conveyor.transport.liveness import DEFAULT_STALE_AFTER_S, Liveness, alive_clause, new_worker_id
from conveyor.transport.notify import OutboxSignal, notify_outbox

outbox_t = cast(Table, OutboxRow.__table__)


class EmbeddedTransport:
    """The outbox table as a queue (see the module docstring)."""

    name = "embedded"
    needs_relay = False

    def __init__(
        self,
        url: str = "embedded://",
        *,
        engine: Engine,
        consumer_id: str | None = None,
        policy: RetryPolicy | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        options = dict(options or {})
        self.url = url
        self.engine = engine
        self.policy = policy or RetryPolicy()
        self.consumer_id = consumer_id or new_worker_id()
        sqlite = engine.dialect.name == "sqlite"
        self.poll_s = float(options.get("poll_s", 0.2 if sqlite else 1.0))
        self.stale_after_s = float(options.get("stale_after_s", DEFAULT_STALE_AFTER_S))
        self.heartbeat_s = float(options.get("heartbeat_s", self.stale_after_s / 6))
        self._liveness: Liveness | None = options.get("liveness")
        self._own_liveness = False
        self._targets: tuple[str, ...] = ()
        self._signal = OutboxSignal(engine)

    # ------------------------------------------------------------------ lifecycle
    def start(self, targets: Sequence[str], *, consume: bool = True) -> None:
        """Remember the targets; a consumer registers its heartbeat and starts listening."""
        self._targets = tuple(targets)
        if not consume:
            return
        if self._liveness is None:
            self._liveness = Liveness(
                self.engine,
                self.consumer_id,
                transport=self.name,
                targets=self._targets,
                interval_s=self.heartbeat_s,
                stale_after_s=self.stale_after_s,
            )
            self._liveness.start()
            self._own_liveness = True
        self._signal.start()

    def close(self) -> None:
        """Give back every row this consumer still holds, then stop."""
        self._signal.stop()
        if self._targets:
            with self.engine.begin() as conn:
                conn.execute(
                    update(outbox_t)
                    .where(
                        outbox_t.c.claimed_by == self.consumer_id,
                        outbox_t.c.published_at.is_(None),
                    )
                    .values(claimed_by=None)
                )
        if self._own_liveness and self._liveness is not None:
            self._liveness.stop()
            self._liveness = None
            self._own_liveness = False

    # ------------------------------------------------------------------ queue operations
    def publish(self, envelopes: Sequence[Envelope]) -> None:
        """The outbox rows already are the queue: make these deliveries fetchable (again)."""
        if not envelopes:
            return
        with self.engine.begin() as conn:
            conn.execute(
                update(outbox_t)
                .where(outbox_t.c.delivery_id.in_([e.delivery_id for e in envelopes]))
                .values(published_at=None, available_at=None, claimed_by=None)
            )
            notify_outbox(conn)
        self._signal.poke()

    def fetch(self, max_jobs: int, timeout: float) -> list[Job]:
        """Claim up to ``max_jobs`` due rows of the targets, waiting up to ``timeout``."""
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            token = self._signal.token()
            jobs = self._claim(max_jobs)
            if jobs:
                return jobs
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            self._signal.wait(token, min(remaining, self._wait_hint()))

    def _claim(self, max_jobs: int) -> list[Job]:
        if not self._targets:
            return []
        now = utcnow()
        o = outbox_t
        due = (
            select(o.c.id)
            .where(
                o.c.published_at.is_(None),
                o.c.target.in_(self._targets),
                or_(o.c.available_at.is_(None), o.c.available_at <= now),
                or_(
                    o.c.claimed_by.is_(None),
                    ~alive_clause(o.c.claimed_by, self.stale_after_s),
                ),
            )
            .order_by(o.c.id)
            .limit(max_jobs)
            .with_for_update(skip_locked=True)
        )
        stmt = (
            update(o)
            .where(o.c.id.in_(due.scalar_subquery()))
            .values(claimed_by=self.consumer_id)
            .returning(o.c.id, o.c.delivery_id, o.c.target)
        )
        with self.engine.begin() as conn:
            rows = sorted(conn.execute(stmt).all(), key=lambda r: int(r.id))
        return [Job(r.delivery_id, r.target, token=r.id) for r in rows]

    def _wait_hint(self) -> float:
        """How long to sleep before looking again: the poll interval, or less when a delayed
        row falls due sooner."""
        now = utcnow()
        with self.engine.connect() as conn:
            soonest = conn.execute(
                select(func.min(outbox_t.c.available_at)).where(
                    outbox_t.c.published_at.is_(None),
                    outbox_t.c.target.in_(self._targets),
                    outbox_t.c.available_at > now,
                    outbox_t.c.claimed_by.is_(None),
                )
            ).scalar_one_or_none()
        if soonest is None:
            return self.poll_s
        wait: float = (soonest - now).total_seconds()
        return max(0.005, min(self.poll_s, wait))

    def ack(self, jobs: Sequence[Job]) -> None:
        """Settle the rows this consumer holds: they leave the queue (the table keeps them)."""
        self._unclaim(jobs, published_at=utcnow())

    def retry_later(self, jobs: Sequence[tuple[Job, float]]) -> None:
        """Unclaim the rows and make them due after their delays."""
        if not jobs:
            return
        now = utcnow()
        with self.engine.begin() as conn:
            conn.execute(
                update(outbox_t)
                .where(
                    outbox_t.c.id == bindparam("row_id"),
                    outbox_t.c.claimed_by == self.consumer_id,
                )
                .values(claimed_by=None, available_at=bindparam("due")),
                [
                    {"row_id": job.token, "due": now + timedelta(seconds=max(0.0, delay))}
                    for job, delay in jobs
                ],
            )

    def release(self, jobs: Sequence[Job]) -> None:
        """Unclaim the rows at once."""
        self._unclaim(jobs)

    def _unclaim(self, jobs: Sequence[Job], **values: Any) -> None:
        """Drop this consumer's claim on the rows of ``jobs``, setting ``values`` with it."""
        if not jobs:
            return
        with self.engine.begin() as conn:
            conn.execute(
                update(outbox_t)
                .where(
                    outbox_t.c.id.in_([j.token for j in jobs]),
                    outbox_t.c.claimed_by == self.consumer_id,
                )
                .values(claimed_by=None, **values)
            )
        self._signal.poke()

    def depths(self, targets: Sequence[str]) -> dict[str, Depth]:
        """Per target: ready, delayed (retry backoff) and held (claimed) outbox rows."""
        now = utcnow()
        o = outbox_t
        claimed = o.c.claimed_by.is_not(None)
        later = o.c.available_at > now
        query = (
            select(
                o.c.target,
                func.sum(case((claimed, 1), else_=0)),
                func.sum(case((~claimed & later, 1), else_=0)),
                func.count(),
            )
            .where(o.c.published_at.is_(None))
            .group_by(o.c.target)
        )
        if targets:
            query = query.where(o.c.target.in_(list(targets)))
        out: dict[str, Depth] = {target: Depth(target) for target in targets}
        with self.engine.connect() as conn:
            for target, held, delayed, total in conn.execute(query):
                held, delayed = int(held or 0), int(delayed or 0)
                out[target] = Depth(
                    target, ready=int(total) - held - delayed, delayed=delayed, held=held
                )
        return out
