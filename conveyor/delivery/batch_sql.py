"""The delivery worker's ledger statements, built once per worker and run once per batch.

A batch of jobs costs two statements whatever its size:

- **claim** — one ``UPDATE … RETURNING`` over the batch (only deliveries that are claimable and not
  waiting behind an earlier one of their ordering key; attempts counted here, before sending).
  On PostgreSQL the claim is a data-modifying CTE that also returns each claimed delivery's
  message, so claiming and loading are one round trip; on SQLite the messages are read in the
  same transaction right after.
- **record** — the delivered ones, with their external document numbers and notes, in one
  ``UPDATE … FROM unnest(…)`` on PostgreSQL (an ``executemany`` on SQLite); the rarer other
  outcomes (retrying, parked, …) in one ``executemany``.

On PostgreSQL each statement runs on its own (autocommit): a single statement is atomic, and the
batch saves the ``BEGIN``/``COMMIT`` round trips. Statements are built once with bind parameters,
so SQLAlchemy compiles them once and psycopg can prepare them on the server; ids travel as one
array parameter (constant SQL text), not as an expanded ``IN`` list.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    Boolean,
    Connection,
    Engine,
    Integer,
    String,
    Table,
    Text,
    and_,
    any_,
    bindparam,
    case,
    func,
    or_,
    select,
    true,
    update,
)
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects.postgresql import ARRAY

from conveyor import messages as canonical
from conveyor.delivery.ordering import earlier_open
from conveyor.ledger.models import DeliveryRow, MessageRow, UTCDateTime
from conveyor.transport.liveness import alive_clause

deliveries_t = cast(Table, DeliveryRow.__table__)
messages_t = cast(Table, MessageRow.__table__)
DUE_SLACK = timedelta(milliseconds=20)
"""A retry that is due within this slack is taken now rather than sent round the delay again."""

CLAIMED = (
    "id",
    "message_pk",
    "target",
    "ordering_key",
    "attempts",
    "needs_lookup",
    "last_error",
    "next_attempt_at",
)
MESSAGE = (
    "message_id",
    "type",
    "source",
    "key",
    "occurred_at",
    "schema_version",
    "payload",
    "mapping_version",
    "correlation_id",
)


@dataclass
class Recorded:
    """One outcome to write: ``delivered`` (with ``external_ref`` and ``notes``, the JSON text of
    ``conveyor.delivery.notes``) or another status."""

    delivery_id: int
    status: str
    external_ref: str | None = None
    notes: str | None = None
    error: str | None = None
    due: datetime | None = None
    needs_lookup: bool = False
    blocked_by: int | None = None
    undo_attempt: bool = False


def message_of(row: Any) -> dict[str, Any]:
    """The canonical message of a ledger row (``messages`` columns by name)."""
    message: dict[str, Any] = {
        "message_id": row.message_id,
        "type": row.type,
        "source": row.source,
        "key": row.key,
        "occurred_at": row.occurred_at.isoformat(),
        "schema_version": row.schema_version,
        "payload": canonical.loads(row.payload),
    }
    if row.mapping_version:
        message["mapping_version"] = row.mapping_version
    if row.correlation_id:
        message["correlation_id"] = row.correlation_id
    return message


class BatchStatements:
    """Claim and record statements for one worker (thread-safe: they are immutable)."""

    def __init__(self, engine: Engine, *, worker_id: str, stale_after_s: float) -> None:
        self.engine = engine
        self.worker_id = worker_id
        self.stale_after_s = stale_after_s
        self.postgresql = engine.dialect.name == "postgresql"
        self._engine = (
            engine.execution_options(isolation_level="AUTOCOMMIT") if self.postgresql else engine
        )
        d, m = deliveries_t, messages_t
        if self.postgresql:
            ids: Any = bindparam("ids", type_=ARRAY(BigInteger))
            in_batch = d.c.id == any_(ids)
        else:
            ids = bindparam("ids", expanding=True)
            in_batch = d.c.id.in_(ids)
        now = bindparam("now", type_=UTCDateTime())
        claimable = or_(
            d.c.status == "pending",
            and_(
                d.c.status == "retrying",
                or_(
                    d.c.next_attempt_at.is_(None),
                    d.c.next_attempt_at <= bindparam("due", type_=UTCDateTime()),
                ),
            ),
            and_(
                d.c.status == "in_flight",
                or_(
                    d.c.claimed_by.is_(None),
                    d.c.claimed_by == bindparam("worker", type_=String()),
                    ~alive_clause(
                        d.c.claimed_by,
                        stale_after_s,
                        cutoff=bindparam("cutoff", type_=UTCDateTime()),
                    ),
                ),
            ),
        )
        claim = (
            update(d)
            .where(in_batch, claimable, ~earlier_open(d, ids))
            .values(
                status="in_flight",
                attempts=d.c.attempts + 1,
                claimed_by=bindparam("worker", type_=String()),
                updated_at=now,
                # taking over from a worker that died mid-call: it may have posted
                needs_lookup=case((d.c.status == "in_flight", true()), else_=d.c.needs_lookup),
            )
            .returning(*(d.c[name] for name in CLAIMED))
        )
        if self.postgresql:
            claimed = claim.cte("claimed")
            self._claim: Any = select(claimed, *(m.c[name] for name in MESSAGE)).select_from(
                claimed.outerjoin(m, m.c.id == claimed.c.message_pk)
            )
            self._load: Any = None
            batch = (
                func.unnest(
                    sql_cast(bindparam("b_ids"), ARRAY(BigInteger)),
                    sql_cast(bindparam("b_refs"), ARRAY(Text)),
                    sql_cast(bindparam("b_notes"), ARRAY(Text)),
                )
                .table_valued("id", "ref", "notes")
                .render_derived(name="v")
            )
            self._delivered: Any = (
                update(d)
                .where(d.c.id == batch.c.id, d.c.status != "delivered")
                .values(
                    external_ref=batch.c.ref,
                    notes=batch.c.notes,
                    **self._delivered_values(now),
                )
            )
        else:
            self._claim = claim
            self._load = select(m.c.id, *(m.c[name] for name in MESSAGE)).where(
                m.c.id.in_(bindparam("pks", expanding=True))
            )
            self._delivered = (
                update(d)
                .where(d.c.id == bindparam("b_id"), d.c.status != "delivered")
                .values(
                    external_ref=bindparam("b_ref"),
                    notes=bindparam("b_notes"),
                    **self._delivered_values(now),
                )
            )
        self._others = (
            update(d)
            .where(
                d.c.id == bindparam("b_id", type_=BigInteger()),
                d.c.status == "in_flight",
                d.c.claimed_by == bindparam("worker", type_=String()),
            )
            .values(
                status=bindparam("b_status", type_=String()),
                last_error=bindparam("b_error", type_=Text()),
                next_attempt_at=bindparam("b_due", type_=UTCDateTime()),
                needs_lookup=bindparam("b_lookup", type_=Boolean()),
                blocked_by=bindparam("b_blocked", type_=BigInteger()),
                attempts=d.c.attempts - bindparam("b_undo", type_=Integer()),
                claimed_by=None,
                updated_at=now,
            )
        )

    @staticmethod
    def _delivered_values(now: Any) -> dict[str, Any]:
        return {
            "status": "delivered",
            "delivered_at": now,
            "updated_at": now,
            "claimed_by": None,
            "needs_lookup": False,
            "next_attempt_at": None,
            "blocked_by": None,
        }

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """A connection for one step (autocommit on PostgreSQL)."""
        with self._engine.connect() as conn:
            yield conn

    def claim(
        self, ids: Sequence[int], now: datetime
    ) -> tuple[dict[int, dict[str, Any]], dict[int, dict[str, Any]]]:
        """Claim what can be claimed of ``ids``: the claimed rows by delivery id, and their
        messages by message pk (a claimed delivery whose message is missing has none)."""
        params = {
            "ids": list(ids),
            "now": now,
            "due": now + DUE_SLACK,
            "worker": self.worker_id,
            "cutoff": now - timedelta(seconds=self.stale_after_s),
        }
        claimed: dict[int, dict[str, Any]] = {}
        messages: dict[int, dict[str, Any]] = {}
        with self.connect() as conn, conn.begin():
            rows = conn.execute(self._claim, params).all()
            for row in rows:  # the claimed columns come first, in ``CLAIMED`` order
                claimed[row.id] = dict(zip(CLAIMED, row, strict=False))
            if self.postgresql:
                for row in rows:
                    if row.message_id is not None:
                        messages[row.message_pk] = message_of(row)
            elif claimed:
                pks = list({row["message_pk"] for row in claimed.values()})
                for row in conn.execute(self._load, {"pks": pks}):
                    messages[row.id] = message_of(row)
        return claimed, messages

    def record(self, outcomes: Sequence[Recorded], now: datetime) -> None:
        """Write the outcomes of a batch (delivered ones never go back to another status)."""
        delivered = [o for o in outcomes if o.status == "delivered"]
        others = [o for o in outcomes if o.status != "delivered"]
        with self.connect() as conn, conn.begin():
            if delivered and self.postgresql:
                conn.execute(
                    self._delivered,
                    {
                        "now": now,
                        "b_ids": [o.delivery_id for o in delivered],
                        "b_refs": [o.external_ref for o in delivered],
                        "b_notes": [o.notes for o in delivered],
                    },
                )
            elif delivered:
                conn.execute(
                    self._delivered,
                    [
                        {
                            "now": now,
                            "b_id": o.delivery_id,
                            "b_ref": o.external_ref,
                            "b_notes": o.notes,
                        }
                        for o in delivered
                    ],
                )
            if others:
                conn.execute(
                    self._others,
                    [
                        {
                            "now": now,
                            "worker": self.worker_id,
                            "b_id": o.delivery_id,
                            "b_status": o.status,
                            "b_error": o.error,
                            "b_due": o.due,
                            "b_lookup": o.needs_lookup,
                            "b_blocked": o.blocked_by,
                            "b_undo": 1 if o.undo_attempt else 0,
                        }
                        for o in others
                    ],
                )
