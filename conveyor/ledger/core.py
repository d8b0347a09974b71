"""``Ledger``: accept (batch, idempotent), park, stock positions, trace, checkpoints."""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal, cast

from sqlalchemy import Connection, Engine, Table, or_, select, text, tuple_
from sqlalchemy.dialects import postgresql, sqlite

from conveyor import messages as canonical
from conveyor.errors import ConveyorError, Problem, RecordError, ValidationError
from conveyor.ledger.db import read_connection
from conveyor.ledger.models import (
    CheckpointRow,
    DeliveryRow,
    MessageRow,
    OutboxRow,
    ParkedRecordRow,
    StockMovementRow,
    StockPositionRow,
    utcnow,
)
from conveyor.redact import safe_text
from conveyor.routing import Router, ordering_key
from conveyor.stock import NO_LOT, Movement, movements

if TYPE_CHECKING:
    from conveyor.config import Project

messages_t = cast(Table, MessageRow.__table__)
movements_t = cast(Table, StockMovementRow.__table__)
positions_t = cast(Table, StockPositionRow.__table__)
deliveries_t = cast(Table, DeliveryRow.__table__)
outbox_t = cast(Table, OutboxRow.__table__)
parked_t = cast(Table, ParkedRecordRow.__table__)
checkpoints_t = cast(Table, CheckpointRow.__table__)

Status = Literal["accepted", "duplicate", "rejected"]


@dataclass(frozen=True)
class Origin:
    """Where a record came from, for error messages and parking: file and line, or a system."""

    file: str | None = None
    line: int | None = None
    system: str | None = None

    def __str__(self) -> str:
        if self.file:
            return f"{self.file}:{self.line}" if self.line else self.file
        return self.system or "-"


@dataclass
class AcceptResult:
    """What happened to one record offered to the ledger."""

    status: Status
    source: str | None = None
    key: str | None = None
    message_id: str | None = None
    targets: list[str] = field(default_factory=list)
    error: ConveyorError | None = None
    origin: Origin | None = None
    parked_id: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form for ``--json`` output."""
        d: dict[str, Any] = {"status": self.status, "source": self.source, "key": self.key}
        if self.message_id:
            d["message_id"] = self.message_id
        if self.targets:
            d["targets"] = self.targets
        if self.origin:
            d["file"], d["line"] = self.origin.file, self.origin.line
        if self.error:
            d["reason"] = str(self.error)
            d["error"] = self.error.as_dict()
        if self.parked_id is not None:
            d["parked_id"] = self.parked_id
        return d


@dataclass(frozen=True)
class Position:
    """One stock position."""

    material: str
    location: str
    lot: str
    quantity: Decimal
    uom: str
    updated_at: datetime


def _record_text(record: Any) -> str:
    if isinstance(record, str):
        return record
    try:
        return canonical.dumps(record)
    except TypeError:
        return repr(record)


class Ledger:
    """The hub's database. Thread-safe; one instance per process is enough."""

    def __init__(self, engine: Engine, router: Router | None = None) -> None:
        self.engine = engine
        self.router = router or Router()

    @classmethod
    def open(cls, project: Project, *, url: str | None = None) -> Ledger:
        """The ledger of a project (its URL and routes)."""
        from conveyor.ledger.db import make_engine

        return cls(make_engine(url or project.db_url), project.router)

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.engine.dialect.name

    def upgrade(self) -> None:
        """Create or migrate the schema."""
        from conveyor.ledger.db import upgrade

        upgrade(self.engine)

    # ------------------------------------------------------------------ accept
    def accept(self, record: Any, origin: Origin | None = None) -> AcceptResult:
        """Accept one record (see ``accept_batch``)."""
        return self.accept_batch([record], [origin])[0]

    def accept_batch(
        self, records: Sequence[Any], origins: Sequence[Origin | None] | None = None
    ) -> list[AcceptResult]:
        """Validate and store ``records`` in one transaction; one result per record, in order.

        Duplicates (same source + key as a stored message, or earlier in the batch) change nothing.
        Invalid records are parked with their problems. Valid ones update stock positions and get
        one
        delivery + outbox row per route target.
        """
        origins = list(origins) if origins is not None else [None] * len(records)
        results: list[AcceptResult] = [AcceptResult("rejected") for _ in records]
        valid: dict[int, canonical.Message] = {}
        seen: set[tuple[str, str]] = set()
        for index, record in enumerate(records):
            result = results[index]
            result.origin = origins[index]
            if isinstance(record, Exception):  # a parse error handed through by a reader
                result.error = ValidationError([Problem("$", None, "json", str(record))])
                continue
            try:
                message = canonical.validate(record)
            except ValidationError as exc:
                result.error = exc
                if isinstance(record, dict):
                    result.source, result.key = record.get("source"), record.get("key")
                continue
            result.source, result.key = message["source"], message["key"]
            result.message_id = message["message_id"]
            identity = (message["source"], message["key"])
            if identity in seen:
                result.status = "duplicate"
                continue
            seen.add(identity)
            valid[index] = message

        with self.engine.begin() as conn:
            if valid:
                self._store(conn, valid, results)
            rejected = [(i, records[i]) for i, r in enumerate(results) if r.status == "rejected"]
            if rejected:
                ids = self._park_rejected(conn, rejected, results)
                for (index, _), parked_id in zip(rejected, ids, strict=True):
                    results[index].parked_id = parked_id
        return results

    def _store(
        self, conn: Connection, valid: dict[int, canonical.Message], results: list[AcceptResult]
    ) -> None:
        # Known keys first: a re-sent file costs one indexed lookup, and a duplicate is never
        # rejected by the checks below. The unique constraint still decides races (see below).
        known = self._existing_keys(conn, [(m["source"], m["key"]) for m in valid.values()])
        for index in [i for i, m in valid.items() if (m["source"], m["key"]) in known]:
            results[index].status = "duplicate"
            del valid[index]
        self._check_reversals(conn, valid, results)
        changes = {i: movements(m) for i, m in valid.items()}
        self._check_units(conn, valid, changes, results)
        if not valid:
            return
        now = utcnow()
        occurred = {i: canonical.occurred_at(m) for i, m in valid.items()}
        rows = []
        for index, m in valid.items():
            payload = m["payload"]
            targets = results[index].targets = self.router.targets(m)
            rows.append(
                {
                    "message_id": m["message_id"],
                    "type": m["type"],
                    "source": m["source"],
                    "key": m["key"],
                    "occurred_at": occurred[index],
                    "accepted_at": now,
                    "schema_version": m["schema_version"],
                    "mapping_version": m.get("mapping_version"),
                    "correlation_id": m.get("correlation_id"),
                    "order_id": payload.get("order_id"),
                    "reversal_of": payload.get("reversal_of"),
                    "routes": len(targets),
                    "payload": canonical.dumps(payload),
                }
            )
        if self.dialect == "postgresql":
            returned = _pg_bulk_insert(
                conn,
                messages_t,
                rows,
                suffix="ON CONFLICT DO NOTHING",
                returning=("id", "source", "key"),
            )
        else:
            insert = self._insert(messages_t).on_conflict_do_nothing()
            returned = conn.execute(
                insert.returning(messages_t.c.id, messages_t.c.source, messages_t.c.key), rows
            ).all()
        stored = {(r.source, r.key): r.id for r in returned}
        by_identity = {(m["source"], m["key"]): i for i, m in valid.items()}
        lost = [ident for ident in by_identity if ident not in stored]
        if lost:
            self._classify_conflicts(conn, lost, by_identity, valid, results)
        new = {by_identity[ident]: pk for ident, pk in stored.items()}
        for index in new:
            results[index].status = "accepted"
        self._apply_movements(conn, {new[i]: (changes[i], occurred[i]) for i in new}, now)
        self._route(conn, {i: valid[i] for i in new}, new, results, now)

    def _existing_keys(
        self, conn: Connection, identities: Sequence[tuple[str, str]]
    ) -> set[tuple[str, str]]:
        """Which (source, key) pairs the ledger already holds."""
        if not identities:
            return set()
        if self.dialect == "postgresql":
            found = conn.execute(
                text(
                    "SELECT m.source, m.key FROM messages m"
                    " JOIN json_to_recordset(CAST(:rows AS json)) AS r(source text, key text)"
                    " ON m.source = r.source AND m.key = r.key"
                ),
                {"rows": json.dumps([{"source": s, "key": k} for s, k in identities])},
            )
            return {(r.source, r.key) for r in found}
        out: set[tuple[str, str]] = set()
        for chunk in _chunks(identities, 400):
            query = select(messages_t.c.source, messages_t.c.key).where(
                tuple_(messages_t.c.source, messages_t.c.key).in_(chunk)
            )
            out.update((r.source, r.key) for r in conn.execute(query))
        return out

    def _insert(self, table: Any) -> Any:
        dialect = postgresql if self.dialect == "postgresql" else sqlite
        return dialect.insert(table)

    def _classify_conflicts(
        self,
        conn: Connection,
        lost: list[tuple[str, str]],
        by_identity: dict[tuple[str, str], int],
        valid: dict[int, canonical.Message],
        results: list[AcceptResult],
    ) -> None:
        """Rows not inserted: a stored (source, key) is a duplicate (another writer won the
        race); otherwise the message_id was already used by another message — an error."""
        existing = self._existing_keys(conn, lost)
        for ident in lost:
            index = by_identity.pop(ident)
            message = valid.pop(index)
            if ident in existing:
                results[index].status = "duplicate"
            else:
                results[index].error = ValidationError(
                    [
                        Problem(
                            "$.message_id",
                            message["message_id"],
                            "unique",
                            "message_id already used by another message",
                        )
                    ]
                )

    def _check_reversals(
        self, conn: Connection, valid: dict[int, canonical.Message], results: list[AcceptResult]
    ) -> None:
        """A reversal must name a stored (or earlier in this batch) message of the same type and
        source."""
        wanted = {
            (m["source"], m["payload"]["reversal_of"]): i
            for i, m in valid.items()
            if m["payload"].get("reversal_of")
        }
        if not wanted:
            return
        found = {
            (r.source, r.key): r.type
            for r in conn.execute(
                select(messages_t.c.source, messages_t.c.key, messages_t.c.type).where(
                    tuple_(messages_t.c.source, messages_t.c.key).in_(list(wanted))
                )
            )
        }
        for m in valid.values():  # an original earlier in the same batch counts
            found.setdefault((m["source"], m["key"]), m["type"])
        for ident, index in wanted.items():
            message = valid[index]
            kind = found.get(ident)
            if kind == message["type"]:
                continue
            rule, text = (
                (
                    "reversal_of.exists",
                    "reverses a message the ledger does not have (from the same source)",
                )
                if kind is None
                else ("reversal_of.type", f"reverses a {kind}, not a {message['type']}")
            )
            results[index].error = ValidationError(
                [Problem("$.payload.reversal_of", ident[1], rule, text)]
            )
            del valid[index]

    def _check_units(
        self,
        conn: Connection,
        valid: dict[int, canonical.Message],
        changes: dict[int, list[Movement]],
        results: list[AcceptResult],
    ) -> None:
        """A position holds one unit (the material's base unit); a message in another unit is
        rejected instead of being added to it wrongly."""
        materials = sorted({mv.material for i in valid for mv in changes[i]})
        if not materials:
            return
        units: dict[str, str] = {}
        for chunk in _chunks(materials, 500):
            query = select(positions_t.c.material, positions_t.c.uom).where(
                positions_t.c.material.in_(chunk)
            )
            units.update((row.material, row.uom) for row in conn.execute(query.distinct()))
        for index in list(valid):
            for mv in changes[index]:
                expected = units.get(mv.material)
                if expected is None:
                    units[mv.material] = mv.uom
                elif expected != mv.uom:
                    results[index].error = ValidationError(
                        [
                            Problem(
                                "$.payload.uom",
                                mv.uom,
                                "uom.base_unit",
                                f"stock of {mv.material} is kept in {expected}; "
                                "convert before accepting",
                            )
                        ]
                    )
                    del valid[index]
                    break

    def _apply_movements(
        self,
        conn: Connection,
        changes: dict[int, tuple[list[Movement], datetime]],
        now: datetime,
    ) -> None:
        rows = [
            {
                "message_pk": pk,
                "material": mv.material,
                "location": mv.location,
                "lot": mv.lot,
                "quantity": mv.quantity,
                "uom": mv.uom,
                "occurred_at": occurred,
            }
            for pk, (mvs, occurred) in changes.items()
            for mv in mvs
        ]
        if not rows:
            return
        if self.dialect == "postgresql":
            _pg_bulk_insert(conn, movements_t, rows)
        else:
            conn.execute(movements_t.insert(), rows)
        deltas: dict[tuple[str, str, str], Decimal] = defaultdict(Decimal)
        uoms: dict[tuple[str, str, str], str] = {}
        for mvs, _ in changes.values():
            for mv in mvs:
                deltas[mv.position] += mv.quantity
                uoms[mv.position] = mv.uom
        ordered = sorted(deltas)  # one lock order for every writer: no deadlocks between batches
        if self.dialect == "postgresql":
            stmt = postgresql.insert(positions_t)
            stmt = stmt.on_conflict_do_update(
                index_elements=[positions_t.c.material, positions_t.c.location, positions_t.c.lot],
                set_={
                    "quantity": positions_t.c.quantity + stmt.excluded.quantity,
                    "updated_at": stmt.excluded.updated_at,
                },
            )
            for chunk in _chunks(ordered, 1000):
                conn.execute(
                    stmt.values(
                        [
                            {
                                "material": k[0],
                                "location": k[1],
                                "lot": k[2],
                                "quantity": deltas[k],
                                "uom": uoms[k],
                                "updated_at": now,
                            }
                            for k in chunk
                        ]
                    )
                )
            return
        # SQLite: text decimals cannot be added in SQL without a float; the writer lock
        # (BEGIN IMMEDIATE) makes this read-modify-write safe.
        current: dict[tuple[str, str, str], Decimal] = {}
        for chunk in _chunks(ordered, 500):
            for r in conn.execute(
                select(
                    positions_t.c.material,
                    positions_t.c.location,
                    positions_t.c.lot,
                    positions_t.c.quantity,
                ).where(
                    tuple_(positions_t.c.material, positions_t.c.location, positions_t.c.lot).in_(
                        chunk
                    )
                )
            ):
                current[(r.material, r.location, r.lot)] = r.quantity
        upsert = sqlite.insert(positions_t)
        upsert = upsert.on_conflict_do_update(
            index_elements=[positions_t.c.material, positions_t.c.location, positions_t.c.lot],
            set_={"quantity": upsert.excluded.quantity, "updated_at": upsert.excluded.updated_at},
        )
        conn.execute(
            upsert,
            [
                {
                    "material": k[0],
                    "location": k[1],
                    "lot": k[2],
                    "quantity": current.get(k, Decimal(0)) + deltas[k],
                    "uom": uoms[k],
                    "updated_at": now,
                }
                for k in ordered
            ],
        )

    def _route(
        self,
        conn: Connection,
        stored: dict[int, canonical.Message],
        new: dict[int, int],
        results: list[AcceptResult],
        now: datetime,
    ) -> None:
        rows = [
            {
                "message_pk": new[index],
                "target": target,
                "status": "pending",
                "attempts": 0,
                "ordering_key": ordering_key(message),
                "created_at": now,
                "updated_at": now,
            }
            for index, message in stored.items()
            for target in results[index].targets
        ]
        if not rows:
            return
        if self.dialect == "postgresql":  # deliveries and their outbox rows in one statement
            _pg_bulk_insert(
                conn,
                deliveries_t,
                rows,
                prefix="WITH d AS (",
                returning=("id", "target", "created_at"),
                suffix="",
                then=") INSERT INTO outbox (delivery_id, target, created_at) "
                "SELECT id, target, created_at FROM d",
            )
            return
        ids = conn.execute(
            deliveries_t.insert().returning(
                deliveries_t.c.id, deliveries_t.c.target, sort_by_parameter_order=True
            ),
            rows,
        ).all()
        conn.execute(
            outbox_t.insert(),
            [{"delivery_id": r.id, "target": r.target, "created_at": now} for r in ids],
        )

    # ------------------------------------------------------------------ parking
    def _park_rejected(
        self, conn: Connection, rejected: list[tuple[int, Any]], results: list[AcceptResult]
    ) -> list[int]:
        rows = []
        for index, record in rejected:
            result = results[index]
            error = result.error or ValidationError([Problem("$", None, "unknown", "rejected")])
            origin = result.origin or Origin()
            rows.append(
                _parked_row(
                    stage="parse" if isinstance(record, Exception) else "validate",
                    reason=str(error),
                    record=str(record) if isinstance(record, Exception) else record,
                    problems=error.problems if isinstance(error, RecordError) else [],
                    system=result.source or origin.system,
                    message_type=record.get("type") if isinstance(record, dict) else None,
                    file=origin.file,
                    line=origin.line,
                )
            )
        return self._insert_parked(conn, rows)

    def _insert_parked(self, conn: Connection, rows: list[dict[str, Any]]) -> list[int]:
        """Insert parked rows, except those already parked (same fingerprint, still parked):
        offering the same bad file twice keeps one row per bad record."""
        known = dict(
            conn.execute(
                select(parked_t.c.fingerprint, parked_t.c.id).where(
                    parked_t.c.status == "parked",
                    parked_t.c.fingerprint.in_({r["fingerprint"] for r in rows}),
                )
            ).all()
        )
        fresh = [r for r in rows if r["fingerprint"] not in known]
        if fresh:
            returned = conn.execute(
                parked_t.insert().returning(
                    parked_t.c.id, parked_t.c.fingerprint, sort_by_parameter_order=True
                ),
                fresh,
            ).all()
            known.update({r.fingerprint: r.id for r in returned})
        return [known[r["fingerprint"]] for r in rows]

    def park(
        self,
        *,
        stage: str,
        reason: str,
        record: Any,
        problems: Iterable[Problem] = (),
        system: str | None = None,
        message_type: str | None = None,
        file: str | None = None,
        line: int | None = None,
        conn: Connection | None = None,
    ) -> int:
        """Keep a record that could not go further (e.g. unmappable), with its exact reason.

        Pass ``conn`` to park inside a caller's transaction. Returns the parked record's id."""
        row = _parked_row(
            stage=stage,
            reason=reason,
            record=record,
            problems=list(problems),
            system=system,
            message_type=message_type,
            file=file,
            line=line,
        )
        if conn is not None:
            return self._insert_parked(conn, [row])[0]
        with self.engine.begin() as own:
            return self._insert_parked(own, [row])[0]

    def parked_records(
        self, *, stage: str | None = None, system: str | None = None, status: str = "parked"
    ) -> list[ParkedRecordRow]:
        """Parked input records, oldest first."""
        from sqlalchemy.orm import Session

        query = (
            select(ParkedRecordRow)
            .where(ParkedRecordRow.status == status)
            .order_by(ParkedRecordRow.id)
        )
        if stage:
            query = query.where(ParkedRecordRow.stage == stage)
        if system:
            query = query.where(ParkedRecordRow.system == system)
        with read_connection(self.engine) as conn, Session(conn, expire_on_commit=False) as session:
            return list(session.scalars(query))

    def resolve_parked(
        self, parked_id: int, *, status: str = "replayed", message_id: str | None = None
    ) -> None:
        """Mark a parked record as replayed (or discarded); it stays in the table for audit."""
        with self.engine.begin() as conn:
            conn.execute(
                parked_t.update()
                .where(parked_t.c.id == parked_id)
                .values(status=status, resolved_at=utcnow(), resolved_message_id=message_id)
            )

    # ------------------------------------------------------------------ reading
    def positions(
        self,
        *,
        material: str | None = None,
        location: str | None = None,
        lot: str | None = None,
        include_zero: bool = False,
    ) -> list[Position]:
        """Current stock positions, filtered; zero positions are left out unless asked for."""
        query = select(positions_t).order_by(
            positions_t.c.material, positions_t.c.location, positions_t.c.lot
        )
        if material:
            query = query.where(positions_t.c.material == material)
        if location:
            query = query.where(positions_t.c.location == location)
        if lot is not None:
            query = query.where(positions_t.c.lot == lot)
        with read_connection(self.engine) as conn:
            rows = [
                Position(r.material, r.location, r.lot, r.quantity, r.uom, r.updated_at)
                for r in conn.execute(query)
            ]
        return rows if include_zero else [p for p in rows if p.quantity != 0]

    def trace(self, term: str) -> dict[str, Any]:
        """Everything known about a message id, business key, order id or lot: the messages, what
        each changed in stock, where each was delivered, and parked records that mention it."""
        with read_connection(self.engine) as conn:
            lot_pks = select(movements_t.c.message_pk).where(movements_t.c.lot == term)
            found = conn.execute(
                select(messages_t)
                .where(
                    or_(
                        messages_t.c.message_id == term,
                        messages_t.c.key == term,
                        messages_t.c.order_id == term,
                        messages_t.c.reversal_of == term,
                        messages_t.c.id.in_(lot_pks),
                    )
                )
                .order_by(messages_t.c.id)
            ).all()
            pks = [r.id for r in found]
            moves: dict[int, list[dict[str, Any]]] = defaultdict(list)
            deliveries: dict[int, list[dict[str, Any]]] = defaultdict(list)
            if pks:
                for r in conn.execute(
                    select(movements_t)
                    .where(movements_t.c.message_pk.in_(pks))
                    .order_by(movements_t.c.id)
                ):
                    moves[r.message_pk].append(
                        {
                            "material": r.material,
                            "location": r.location,
                            "lot": r.lot or None,
                            "quantity": r.quantity,
                            "uom": r.uom,
                        }
                    )
                for r in conn.execute(
                    select(deliveries_t)
                    .where(deliveries_t.c.message_pk.in_(pks))
                    .order_by(deliveries_t.c.id)
                ):
                    deliveries[r.message_pk].append(
                        {
                            "target": r.target,
                            "status": r.status,
                            "attempts": r.attempts,
                            "external_ref": r.external_ref,
                            "last_error": r.last_error,
                            "delivered_at": r.delivered_at,
                            "updated_at": r.updated_at,
                        }
                    )
            like = f"%{_escape_like(term)}%"
            parked = conn.execute(
                select(parked_t)
                .where(parked_t.c.record.like(like, escape="\\"))
                .order_by(parked_t.c.id)
                .limit(100)
            ).all()
        return {
            "term": term,
            "messages": [
                {
                    "message_id": r.message_id,
                    "type": r.type,
                    "source": r.source,
                    "key": r.key,
                    "occurred_at": r.occurred_at,
                    "accepted_at": r.accepted_at,
                    "mapping_version": r.mapping_version,
                    "correlation_id": r.correlation_id,
                    "order_id": r.order_id,
                    "reversal_of": r.reversal_of,
                    "routes": r.routes,
                    "payload": canonical.loads(r.payload),
                    "stock_changes": moves.get(r.id, []),
                    "deliveries": deliveries.get(r.id, []),
                }
                for r in found
            ],
            "parked": [
                {
                    "id": r.id,
                    "stage": r.stage,
                    "system": r.system,
                    "file": r.file,
                    "line": r.line,
                    "reason": r.reason,
                    "status": r.status,
                    "created_at": r.created_at,
                }
                for r in parked
            ],
        }

    # ------------------------------------------------------------------ checkpoints
    def checkpoint(self, system: str, stream: str) -> str | None:
        """A connector's saved cursor, or None."""
        with read_connection(self.engine) as conn:
            return conn.execute(
                select(checkpoints_t.c.cursor).where(
                    checkpoints_t.c.system == system, checkpoints_t.c.stream == stream
                )
            ).scalar_one_or_none()

    def save_checkpoint(
        self, system: str, stream: str, cursor: str, conn: Connection | None = None
    ) -> None:
        """Save a cursor (pass ``conn`` to save it in the same transaction as the accepted
        records)."""
        stmt = self._insert(checkpoints_t).values(
            system=system, stream=stream, cursor=cursor, updated_at=utcnow()
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=[checkpoints_t.c.system, checkpoints_t.c.stream],
            set_={"cursor": stmt.excluded.cursor, "updated_at": stmt.excluded.updated_at},
        )
        if conn is not None:
            conn.execute(stmt)
            return
        with self.engine.begin() as own:
            own.execute(stmt)


def _parked_row(
    *,
    stage: str,
    reason: str,
    record: Any,
    problems: Sequence[Problem],
    system: str | None,
    message_type: str | None,
    file: str | None,
    line: int | None,
) -> dict[str, Any]:
    text = _record_text(record)
    # file and line are part of the identity: two identical bad rows of one file are two records
    identity = "\x1f".join([stage, system or "", file or "", str(line or ""), text])
    digest = hashlib.sha256(identity.encode()).hexdigest()
    return {
        "stage": stage,
        "system": system,
        "message_type": message_type,
        "file": file,
        "line": line,
        "reason": safe_text(reason),  # the one place a parked reason is stored: redacted here
        "problems": json.dumps([p.as_dict() for p in problems], ensure_ascii=False),
        "record": text,
        "fingerprint": digest,
        "status": "parked",
        "created_at": utcnow(),
    }


def _pg_bulk_insert(
    conn: Connection,
    table: Table,
    rows: Sequence[dict[str, Any]],
    *,
    suffix: str = "",
    returning: Sequence[str] = (),
    prefix: str = "",
    then: str = "",
) -> Sequence[Any]:
    """INSERT … SELECT FROM json_to_recordset(one JSON parameter): a short statement and one
    C-speed ``json.dumps`` whatever the batch size. A multi-row VALUES list of 1,000 rows × 13
    columns spends most of its time being parsed and adapted client-side."""
    columns = list(rows[0])
    dialect = conn.dialect
    names = ", ".join(f'"{c}"' for c in columns)
    shape = ", ".join(f'"{c}" {table.c[c].type.compile(dialect=dialect)}' for c in columns)
    # identifiers come from the table definition, never from input; values travel as one parameter
    sql = (
        f'{prefix}INSERT INTO "{table.name}" ({names}) SELECT {names} '  # noqa: S608
        f"FROM json_to_recordset(CAST(:rows AS json)) AS r({shape}) {suffix}"
    )
    if returning:
        sql += " RETURNING " + ", ".join(f'"{c}"' for c in returning)
    sql += then
    payload = json.dumps(rows, default=_json_value, separators=(",", ":"))
    result = conn.execute(text(sql), {"rows": payload})
    return result.all() if returning and not then else []


def _json_value(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__}")


def _chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


__all__ = ["NO_LOT", "AcceptResult", "Ledger", "Origin", "Position"]
