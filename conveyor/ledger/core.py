"""``Ledger``: accept (batch, idempotent), park, stock positions, trace, checkpoints.

The rules of the accept transaction, each refused with a clear reason and parked:

- **Duplicate or conflict.** The business key ``(source, key)`` is unique. The same key offered
  again with the same content (``content_hash``: type, occurred_at and payload — not message_id,
  mapping_version or correlation_id) is a ``duplicate`` and changes nothing; with another content
  it is a ``conflict``: the stored message stands, the new version is parked (stage ``accept``,
  rule ``conflict``) with the fields that differ, so an operator sees both (``conveyor trace``).
- **Reversals.** ``reversal_of`` names an earlier message of the same source and type (stored, or
  earlier in the batch) and undoes exactly its stock effect, at most once: material, location(s),
  lot, uom, order_id and quantity must equal the original's (an adjustment's reversal carries the
  original's signed quantity). A reversal is never reversed itself (book the movement again as a
  new message); a partial reversal is an ordinary opposite movement without ``reversal_of``. The
  unique index ``(source, reversal_of)`` makes "at most once" hold between concurrent writers.
- **Range.** A movement that would take a position beyond NUMERIC(38, 12) is refused, never
  rounded (``conveyor.quantity``).
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal, cast

from sqlalchemy import Connection, Engine, Table, or_, select, text, tuple_
from sqlalchemy.dialects import postgresql, sqlite

from conveyor import events
from conveyor import messages as canonical
from conveyor.delivery.notes import decode_notes
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
from conveyor.limits import current as current_limits
from conveyor.quantity import (
    CONTEXT,
    INTEGER_DIGITS,
    QuantityError,
    add,
    format_quantity,
    parse_quantity,
)
from conveyor.redact import clip, safe_text
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

Status = Literal["accepted", "duplicate", "conflict", "rejected"]
"""``conflict``: the business key is stored with another content (the new version is parked)."""

PARKED_STATUSES = ("rejected", "conflict")
"""Results whose record the ledger parks."""

_REVERSAL_FIELDS = (
    "material",
    "location",
    "from_location",
    "to_location",
    "lot",
    "uom",
    "order_id",
    "quantity",
)
"""What a reversal must repeat of its original: everything that says which stock it moved."""

RECEIVED_PREFIX = "received:"
"""Checkpoint rows whose stream starts with this mark a received unit (by content hash) as
taken in; they are not cursors, so listing and clearing cursors leaves them alone."""


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
class Checkpoint:
    """A connector's position in one of its streams: saved with the records it covers."""

    system: str
    stream: str
    cursor: str


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

        ledger = cls(make_engine(url or project.db_url), project.router)
        events.attach(ledger.engine, project)
        return ledger

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
        self,
        records: Sequence[Any],
        origins: Sequence[Origin | None] | None = None,
        *,
        checkpoint: Checkpoint | None = None,
        conn: Connection | None = None,
    ) -> list[AcceptResult]:
        """Validate and store ``records`` in one transaction; one result per record, in order.

        Duplicates (same source + key and the same content as a stored message, or one earlier in
        the batch) change nothing; the same key with another content is a ``conflict``, parked.
        Invalid records (and refused reversals or overflowing movements) are parked with their
        problems. Valid ones update stock positions and get one delivery + outbox row per route
        target. See the module docstring for the rules.

        ``checkpoint`` (a connector's cursor after these records) is saved in the same transaction,
        so a crash loses the batch and its cursor together, never one without the other. Pass
        ``conn`` to run inside a caller's transaction (the inbound driver parks unmappable records
        of the batch in it too); without it the ledger opens and commits its own.
        """
        origins = list(origins) if origins is not None else [None] * len(records)
        results: list[AcceptResult] = [AcceptResult("rejected") for _ in records]
        valid: dict[int, canonical.Message] = {}
        hashes: dict[int, str] = {}
        seen: dict[tuple[str, str], int] = {}
        for index, record in enumerate(records):
            result = results[index]
            result.origin = origins[index]
            if isinstance(record, RecordError):  # a record a reader could not read
                result.error = record
                continue
            if isinstance(record, Exception):  # a parse error handed through by a reader
                result.error = ValidationError([Problem("$", None, "json", str(record))])
                continue
            try:
                message = canonical.validate(record)
            except ValidationError as exc:
                result.error = exc
                if isinstance(record, dict):
                    result.source, result.key = _text_or_none(record, "source", "key")
                continue
            result.source, result.key = message["source"], message["key"]
            result.message_id = message["message_id"]
            identity = (message["source"], message["key"])
            hashes[index] = content_hash(message)
            first = seen.get(identity)
            if first is not None:
                if hashes[first] == hashes[index]:
                    result.status = "duplicate"
                else:
                    result.status = "conflict"
                    result.error = _conflict_error(
                        message,
                        valid[first],
                        f"message {valid[first]['message_id']}, earlier in this batch",
                    )
                continue
            seen[identity] = index
            valid[index] = message

        if conn is None:
            with self.engine.begin() as own:
                self._write_batch(own, records, valid, hashes, results, checkpoint)
        else:
            self._write_batch(conn, records, valid, hashes, results, checkpoint)
        return results

    def _write_batch(
        self,
        conn: Connection,
        records: Sequence[Any],
        valid: dict[int, canonical.Message],
        hashes: dict[int, str],
        results: list[AcceptResult],
        checkpoint: Checkpoint | None,
    ) -> None:
        if valid:
            self._store(conn, valid, hashes, results)
        parked = [(i, records[i]) for i, r in enumerate(results) if r.status in PARKED_STATUSES]
        if parked:
            ids = self._park_rejected(conn, parked, results)
            for (index, _), parked_id in zip(parked, ids, strict=True):
                results[index].parked_id = parked_id
        if checkpoint is not None:
            self.save_checkpoint(checkpoint.system, checkpoint.stream, checkpoint.cursor, conn)

    def _store(
        self,
        conn: Connection,
        valid: dict[int, canonical.Message],
        hashes: dict[int, str],
        results: list[AcceptResult],
    ) -> None:
        # Known keys first: a re-sent file costs one indexed lookup, and a duplicate is never
        # rejected by the checks below. The unique constraint still decides races (see below).
        known = self._stored_hashes(conn, [(m["source"], m["key"]) for m in valid.values()])
        conflicts = []
        for index in [i for i, m in valid.items() if (m["source"], m["key"]) in known]:
            message = valid.pop(index)
            if known[(message["source"], message["key"])] == hashes[index]:
                results[index].status = "duplicate"
            else:
                conflicts.append((index, message))
        self._mark_conflicts(conn, conflicts, results)
        self._check_reversals(conn, valid, results)
        changes = {i: movements(m) for i, m in valid.items()}
        self._check_units(conn, valid, changes, results)
        current = self._check_range(conn, valid, changes, results)
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
                    "content_hash": hashes[index],
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
            self._classify_conflicts(conn, lost, by_identity, valid, hashes, results)
        new = {by_identity[ident]: pk for ident, pk in stored.items()}
        for index in new:
            results[index].status = "accepted"
        self._apply_movements(conn, {new[i]: (changes[i], occurred[i]) for i in new}, now, current)
        self._route(conn, {i: valid[i] for i in new}, new, results, now)

    def _stored_hashes(
        self, conn: Connection, identities: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], str]:
        """The content hash of each (source, key) the ledger already holds (rows stored before
        the hash existed are hashed from their columns)."""
        if not identities:
            return {}
        found: dict[tuple[str, str], str | None] = {}
        if self.dialect == "postgresql":
            rows = conn.execute(
                text(
                    "SELECT m.source, m.key, m.content_hash FROM messages m"
                    " JOIN json_to_recordset(CAST(:rows AS json)) AS r(source text, key text)"
                    " ON m.source = r.source AND m.key = r.key"
                ),
                {"rows": json.dumps([{"source": s, "key": k} for s, k in identities])},
            )
            found.update(((r.source, r.key), r.content_hash) for r in rows)
        else:
            for chunk in _chunks(identities, 400):
                query = select(
                    messages_t.c.source, messages_t.c.key, messages_t.c.content_hash
                ).where(tuple_(messages_t.c.source, messages_t.c.key).in_(chunk))
                found.update(((r.source, r.key), r.content_hash) for r in conn.execute(query))
        legacy = [ident for ident, digest in found.items() if digest is None]
        for chunk in _chunks(legacy, 400):
            query = select(
                messages_t.c.source,
                messages_t.c.key,
                messages_t.c.type,
                messages_t.c.occurred_at,
                messages_t.c.payload,
            ).where(tuple_(messages_t.c.source, messages_t.c.key).in_(chunk))
            for r in conn.execute(query):
                found[(r.source, r.key)] = content_hash(
                    {
                        "type": r.type,
                        "occurred_at": r.occurred_at,
                        "payload": canonical.loads(r.payload),
                    }
                )
        return {ident: digest for ident, digest in found.items() if digest is not None}

    def _insert(self, table: Any) -> Any:
        dialect = postgresql if self.dialect == "postgresql" else sqlite
        return dialect.insert(table)

    def _mark_conflicts(
        self,
        conn: Connection,
        conflicts: list[tuple[int, canonical.Message]],
        results: list[AcceptResult],
    ) -> None:
        """Results for messages whose key is stored with another content: ``conflict``, with the
        fields that differ from the stored version (which stands)."""
        if not conflicts:
            return
        identities = [(m["source"], m["key"]) for _, m in conflicts]
        stored: dict[tuple[str, str], Any] = {}
        for chunk in _chunks(identities, 400):
            query = select(
                messages_t.c.source,
                messages_t.c.key,
                messages_t.c.message_id,
                messages_t.c.type,
                messages_t.c.occurred_at,
                messages_t.c.payload,
            ).where(tuple_(messages_t.c.source, messages_t.c.key).in_(chunk))
            stored.update({(r.source, r.key): r for r in conn.execute(query)})
        for index, message in conflicts:
            row = stored[(message["source"], message["key"])]
            other = {
                "type": row.type,
                "occurred_at": row.occurred_at,
                "payload": canonical.loads(row.payload),
            }
            results[index].status = "conflict"
            results[index].error = _conflict_error(message, other, f"message {row.message_id}")

    def _classify_conflicts(
        self,
        conn: Connection,
        lost: list[tuple[str, str]],
        by_identity: dict[tuple[str, str], int],
        valid: dict[int, canonical.Message],
        hashes: dict[int, str],
        results: list[AcceptResult],
    ) -> None:
        """Rows not inserted, because another writer committed first: a stored (source, key) is a
        duplicate (same content) or a conflict (other content); a stored reversal of the same
        original means this one comes second; otherwise the message_id was already used by
        another message — an error."""
        existing = self._stored_hashes(conn, lost)
        reversals = {
            (m["source"], m["payload"]["reversal_of"]): m["key"]
            for ident in lost
            if (m := valid[by_identity[ident]])["payload"].get("reversal_of")
        }
        taken = self._reversed_by(conn, list(reversals)) if reversals else {}
        conflicts = []
        for ident in lost:
            index = by_identity.pop(ident)
            message = valid.pop(index)
            reversed_ident = (message["source"], message["payload"].get("reversal_of"))
            if ident in existing:
                if existing[ident] == hashes[index]:
                    results[index].status = "duplicate"
                else:
                    conflicts.append((index, message))
            elif reversed_ident in taken:
                results[index].error = _reversal_error(
                    message, "reversal_of.once", f"already reversed by {taken[reversed_ident]}"
                )
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
        self._mark_conflicts(conn, conflicts, results)

    def _reversed_by(
        self, conn: Connection, originals: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], str]:
        """For each (source, original key): the key of the stored message that reverses it."""
        out: dict[tuple[str, str], str] = {}
        for chunk in _chunks(originals, 400):
            query = select(messages_t.c.source, messages_t.c.reversal_of, messages_t.c.key).where(
                tuple_(messages_t.c.source, messages_t.c.reversal_of).in_(chunk)
            )
            out.update({(r.source, r.reversal_of): r.key for r in conn.execute(query)})
        return out

    def _check_reversals(
        self, conn: Connection, valid: dict[int, canonical.Message], results: list[AcceptResult]
    ) -> None:
        """The reversal rule (see the module docstring): a reversal names a stored or earlier
        message of the same source and type, which is not itself a reversal and is not reversed
        yet, and repeats what it moved (``_REVERSAL_FIELDS``) exactly."""
        wanted = sorted(
            {(m["source"], m["payload"]["reversal_of"]) for m in valid.values() if _reverses(m)}
        )
        if not wanted:
            return
        originals: dict[tuple[str, str], dict[str, Any]] = {}
        for chunk in _chunks(wanted, 400):
            query = select(
                messages_t.c.source, messages_t.c.key, messages_t.c.type, messages_t.c.payload
            ).where(tuple_(messages_t.c.source, messages_t.c.key).in_(chunk))
            for r in conn.execute(query):
                originals[(r.source, r.key)] = {
                    "type": r.type,
                    "payload": canonical.loads(r.payload),
                }
        reversed_by = self._reversed_by(conn, wanted)
        for index in sorted(valid):  # batch order: an original counts once it has been seen
            message = valid[index]
            if _reverses(message):
                ident = (message["source"], message["payload"]["reversal_of"])
                refusal = _reversal_refusal(message, originals.get(ident), reversed_by.get(ident))
                if refusal is not None:
                    results[index].error = _reversal_error(message, *refusal)
                    del valid[index]
                    continue
                reversed_by[ident] = message["key"]
            originals.setdefault((message["source"], message["key"]), message)

    def _check_range(
        self,
        conn: Connection,
        valid: dict[int, canonical.Message],
        changes: dict[int, list[Movement]],
        results: list[AcceptResult],
    ) -> dict[tuple[str, str, str], Decimal]:
        """Refuse a message that would take a position beyond NUMERIC(38, 12) (in batch order,
        from the stored positions); returns the positions as read."""
        keys = sorted({mv.position for i in valid for mv in changes[i]})
        current = self._read_positions(conn, keys)
        running = dict(current)
        for index in sorted(valid):
            after: dict[tuple[str, str, str], Decimal] = {}
            problem = None
            for mv in changes[index]:
                before = after.get(mv.position, running.get(mv.position, Decimal(0)))
                # both sides have at most 12 decimals, so only the integer digits can overflow;
                # CONTEXT's 80 digits keep the sum exact (the default 28 would round it)
                total = CONTEXT.add(before, mv.quantity)
                if total.adjusted() >= INTEGER_DIGITS:
                    problem = Problem(
                        "$.payload.quantity",
                        format_quantity(mv.quantity),
                        "quantity.range",
                        f"stock of {mv.material} at {mv.location}"
                        + (f" lot {mv.lot}" if mv.lot else "")
                        + f" would be {format_quantity(total)}, more than {INTEGER_DIGITS} integer"
                        " digits (NUMERIC(38, 12)): refused, never rounded",
                    )
                    break
                after[mv.position] = total
            if problem is not None:
                results[index].error = ValidationError([problem])
                del valid[index]
                continue
            running.update(after)
        return current

    def _read_positions(
        self, conn: Connection, keys: Sequence[tuple[str, str, str]]
    ) -> dict[tuple[str, str, str], Decimal]:
        """Stored quantities of the positions ``keys`` (absent ones are left out)."""
        current: dict[tuple[str, str, str], Decimal] = {}
        if not keys:
            return current
        if self.dialect == "postgresql":
            rows = conn.execute(
                text(
                    "SELECT p.material, p.location, p.lot, p.quantity FROM stock_positions p"
                    " JOIN json_to_recordset(CAST(:rows AS json))"
                    " AS r(material text, location text, lot text)"
                    " ON p.material = r.material AND p.location = r.location AND p.lot = r.lot"
                ),
                {
                    "rows": json.dumps(
                        [{"material": m, "location": loc, "lot": lot} for m, loc, lot in keys]
                    )
                },
            )
            return {(r.material, r.location, r.lot): r.quantity for r in rows}
        for chunk in _chunks(keys, 500):
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
        return current

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
        current: dict[tuple[str, str, str], Decimal],
    ) -> None:
        """Store the movements and add them to their positions. ``current`` holds the positions
        as ``_check_range`` read them (SQLite adds in Python; PostgreSQL in SQL, exactly)."""
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
        deltas: dict[tuple[str, str, str], Decimal] = {}
        uoms: dict[tuple[str, str, str], str] = {}
        for mvs, _ in changes.values():
            for mv in mvs:
                deltas[mv.position] = CONTEXT.add(deltas.get(mv.position, Decimal(0)), mv.quantity)
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
        # (BEGIN IMMEDIATE) makes this read-modify-write safe (``current`` was read under it).
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
                    "quantity": add(current.get(k, Decimal(0)), deltas[k]),
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
            message_type = _text_or_none(record, "type")[0] if isinstance(record, dict) else None
            rows.append(
                _parked_row(
                    stage=(
                        "parse"
                        if isinstance(record, Exception)
                        else "accept"
                        if result.status == "conflict"
                        else "validate"
                    ),
                    reason=str(error),
                    record=_exception_text(record) if isinstance(record, Exception) else record,
                    problems=error.problems if isinstance(error, RecordError) else [],
                    system=result.source or origin.system,
                    message_type=message_type,
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
            events.note_records(conn, fresh, [r.id for r in returned])
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
                            "notes": decode_notes(r.notes),
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

    def has_received(self, system: str, content_hash: str) -> bool:
        """True when a unit with ``content_hash`` of ``system`` was already taken in."""
        return self.checkpoint(system, received_mark(system, content_hash, "").stream) is not None

    def checkpoints(self, system: str) -> dict[str, str]:
        """Every saved cursor of ``system`` by stream (received-unit marks left out)."""
        with read_connection(self.engine) as conn:
            rows = conn.execute(
                select(checkpoints_t.c.stream, checkpoints_t.c.cursor)
                .where(
                    checkpoints_t.c.system == system,
                    ~checkpoints_t.c.stream.startswith(RECEIVED_PREFIX, autoescape=True),
                )
                .order_by(checkpoints_t.c.stream)
            ).all()
        return {r.stream: r.cursor for r in rows}

    def clear_checkpoint(self, system: str, stream: str | None = None) -> int:
        """Forget the cursor of one stream of ``system`` (every stream when ``stream`` is None):
        the next poll starts from the connector's configured start. Returns how many were
        cleared. Received-unit marks are kept (they are no cursor)."""
        condition = checkpoints_t.c.system == system
        if stream is not None:
            condition = condition & (checkpoints_t.c.stream == stream)
        condition = condition & ~checkpoints_t.c.stream.startswith(RECEIVED_PREFIX, autoescape=True)
        with self.engine.begin() as conn:
            return conn.execute(checkpoints_t.delete().where(condition)).rowcount

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


def received_mark(system: str, content_hash: str, unit: str) -> Checkpoint:
    """The checkpoint row that marks a received unit as taken in (its cursor names the unit).

    A hash too long for the stream column is hashed again: the mark only has to be stable."""
    stream = RECEIVED_PREFIX + content_hash
    if len(stream) > 100:
        stream = RECEIVED_PREFIX + "sha256:" + hashlib.sha256(content_hash.encode()).hexdigest()
    return Checkpoint(system, stream, unit or "-")


_OBSERVED = {"stock_alert": frozenset({"as_of", "run_id"})}
"""Types the hub raises again on every check, whose key already carries their figures: the moment
(``occurred_at`` and these payload fields) is not content, so a re-raised alert is a duplicate."""
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def content_hash(message: dict[str, Any]) -> str:
    """sha256 of what a message says: its type, the instant it occurred (UTC) and its payload
    (keys sorted, numbers as canonical decimal text). ``message_id``, ``mapping_version`` and
    ``correlation_id`` are not content: the same record mapped again is the same message. For a
    ``stock_alert`` the moment it was raised is not content either (``_OBSERVED``)."""
    kind = message["type"]
    payload = message["payload"]
    if kind in _OBSERVED:  # when it was observed is not what it says
        micros: int | str = "-"
        payload = {k: v for k, v in payload.items() if k not in _OBSERVED[kind]}
    else:
        when = message["occurred_at"]
        instant = canonical.occurred_at(message) if isinstance(when, str) else when
        micros = (instant - _EPOCH) // _MICROSECOND  # the instant, whatever offset it was in
    head = f"{kind}\x1e{micros}\x1e"
    flat = []
    for name, value in payload.items():
        cls = value.__class__
        if cls is str:
            flat.append(f"{name}\x1d{value}")
        elif cls is Decimal:
            flat.append(f"{name}\x1d{format_quantity(value)}")
        elif cls is int or cls is float:
            flat.append(f"{name}\x1d{_normal(value)}")
        else:  # lists, objects, booleans: the general (JSON) form below
            break
    else:
        # Flat payloads (every movement): separators no validated code or text may contain
        flat.sort()
        return hashlib.sha256((head + "\x1f".join(flat)).encode()).hexdigest()
    body = {name: _normal(value) for name, value in payload.items()}
    text_ = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256((head + text_).encode()).hexdigest()


def _normal(value: Any) -> Any:
    """``value`` with every number as canonical decimal text (``5``, ``5.0`` and ``"5"`` are one
    quantity, whichever JSON parser read it)."""
    if isinstance(value, dict):
        return {k: _normal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normal(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float | Decimal):
        try:
            return format_quantity(parse_quantity(value))
        except QuantityError:
            return repr(value)
    return str(value)


def _shown(value: Any) -> str:
    return clip(json.dumps(_normal(value), ensure_ascii=False), 60)


def _differences(new: dict[str, Any], old: dict[str, Any]) -> list[str]:
    """What differs between two versions of one message: type, occurred_at, payload fields."""
    out = []
    if new["type"] != old["type"]:
        out.append(f"type {old['type']} → {new['type']}")
    instants = [
        (canonical.occurred_at(m) if isinstance(m["occurred_at"], str) else m["occurred_at"])
        for m in (old, new)
    ]
    if instants[0] != instants[1]:
        out.append(f"occurred_at {instants[0].isoformat()} → {instants[1].isoformat()}")
    a, b = old["payload"], new["payload"]
    for name in sorted(set(a) | set(b)):
        if _normal(a.get(name)) != _normal(b.get(name)):
            out.append(f"payload.{name} {_shown(a.get(name))} → {_shown(b.get(name))}")
    return out


def _conflict_error(message: dict[str, Any], other: dict[str, Any], what: str) -> ValidationError:
    """The reason a message is a conflict: its key is taken by ``other`` (``what``) with another
    content."""
    differences = _differences(message, other) or ["content"]
    return ValidationError(
        [
            Problem(
                "$.key",
                message["key"],
                "conflict",
                f"{message['source']}:{message['key']} is already accepted ({what}) with other "
                f"content: {'; '.join(differences[:8])}; the stored version stands, this one is "
                "kept for an operator",
            )
        ]
    )


def _reverses(message: dict[str, Any]) -> bool:
    return bool(message["payload"].get("reversal_of"))


def _reversal_refusal(
    message: dict[str, Any], original: dict[str, Any] | None, reversed_by: str | None
) -> tuple[str, str] | None:
    """Why ``message`` may not reverse ``original`` (rule, reason), or None when it may."""
    target = message["payload"]["reversal_of"]
    if original is None:
        return (
            "reversal_of.exists",
            "reverses a message the ledger does not have (from the same source, stored or "
            "earlier in this batch)",
        )
    if original["type"] != message["type"]:
        return "reversal_of.type", f"reverses a {original['type']}, not a {message['type']}"
    first = original["payload"].get("reversal_of")
    if first:
        return (
            "reversal_of.reversal",
            f"{target} is itself a reversal (of {first}); a reversal is not reversed: book the "
            "movement again as a new message",
        )
    if reversed_by is not None:
        return "reversal_of.once", f"{target} is already reversed by {reversed_by}"
    mismatches = []
    for name in _REVERSAL_FIELDS:
        mine, theirs = message["payload"].get(name), original["payload"].get(name)
        if name == "lot":
            mine, theirs = mine or NO_LOT, theirs or NO_LOT
        if name == "quantity" and mine is not None and theirs is not None:
            same = parse_quantity(mine) == parse_quantity(theirs)
        else:
            same = mine == theirs
        if not same:
            mismatches.append(f"{name} {_shown(mine)}, the original's {_shown(theirs)}")
    if mismatches:
        return (
            "reversal_of.match",
            f"a reversal undoes exactly what {target} moved: {'; '.join(mismatches)} (a partial "
            "reversal is an ordinary movement without reversal_of)",
        )
    return None


def _reversal_error(message: dict[str, Any], rule: str, reason: str) -> ValidationError:
    return ValidationError(
        [Problem("$.payload.reversal_of", message["payload"]["reversal_of"], rule, reason)]
    )


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
    limits = current_limits()
    # a rejected 50 MB line is kept as its first megabyte (the reason says how much was cut), and
    # lone surrogates become escapes: neither the database nor a terminal takes them
    text = clip(_record_text(record), limits.max_stored_record_chars)
    # file and line are part of the identity: two identical bad rows of one file are two records
    identity = "\x1f".join([stage, system or "", file or "", str(line or ""), text])
    digest = hashlib.sha256(identity.encode()).hexdigest()
    return {
        "stage": stage,
        # cut to their columns' sizes: a rejected record's claimed source may be any length
        "system": _fit(system, 64),
        "message_type": _fit(message_type, 40),
        "file": file,
        "line": line,
        # the one place a parked reason is stored: redacted and clipped here
        "reason": safe_text(reason, limits.max_echo_chars * 8),
        "problems": json.dumps([p.as_dict() for p in problems], ensure_ascii=False),
        "record": text,
        "fingerprint": digest,
        "status": "parked",
        "created_at": utcnow(),
    }


def _text_or_none(record: dict[str, Any], *names: str) -> tuple[str | None, ...]:
    """Envelope fields of a rejected record, kept only when they are text (a ``source`` of 5
    or a ``type`` that is a list is part of why it was rejected, not a name to store)."""
    values = (record.get(name) for name in names)
    return tuple(v if isinstance(v, str) else None for v in values)


def _fit(value: str | None, size: int) -> str | None:
    """``value`` cut to a column of ``size`` characters, printable (see ``clip``)."""
    return clip(value, size)[:size] if value else value


def _exception_text(error: Exception) -> str:
    """What to keep of a record a reader could not read: its source text when it has it."""
    text = getattr(error, "text", None)
    return text if isinstance(text, str) else str(error)


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
        return format_quantity(value)
    raise TypeError(f"cannot store {type(value).__name__}")


def _chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


__all__ = [
    "NO_LOT",
    "RECEIVED_PREFIX",
    "AcceptResult",
    "Checkpoint",
    "Ledger",
    "Origin",
    "Position",
    "received_mark",
]
