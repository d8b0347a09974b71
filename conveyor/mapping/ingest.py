"""Ingest raw records of one system: map each one, park what cannot be mapped (stage ``map``, with
the raw record and the precise reason, replayable), accept the rest into the ledger in batches.

This is the one path from raw records to the ledger: ``conveyor ingest`` (files) and the inbound
driver (``conveyor.runtime.inbound``: polls and receives) both feed an ``Ingestion``. Each batch —
its parked records, its accepted messages and the connector's checkpoint after it — is written in
one database transaction, so a crash repeats at most the batch that was not committed.

A record of a message type the system has no inbound mapping for is accepted as it is when it is
already a canonical message of that system (``canonical_without_mapping``: connectors that speak
the canonical model, such as the ``fake`` stand-in, need no mapping file); otherwise it is parked.

Stock rows (``stock_snapshot``) are gathered into snapshot messages per file and ``as_of``, at most
``SNAPSHOT_ROWS`` rows each; a checkpoint is written only once the rows before it are stored. The
engine is asked to reload between batches, so a long-running ingestion picks up a fixed mapping.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor.errors import ConfigError, MappingError, Problem, RecordError
from conveyor.ledger import Checkpoint, Origin

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from conveyor.config import Project
    from conveyor.connector import RawRecord
    from conveyor.ledger import Ledger
    from conveyor.mapping.engine import MappedRow, MappingEngine

BATCH = 1000
SNAPSHOT_ROWS = 5000
"""Rows per snapshot message: big enough for a warehouse, small enough for one ledger row."""
SNAPSHOT = "stock_snapshot"

Listener = Callable[[dict[str, Any]], None]
"""Called with a description of every parked or rejected record (for CLI output)."""


def ingest_records(
    project: Project,
    ledger: Ledger,
    engine: MappingEngine,
    system: str,
    message_type: str,
    records: Iterable[RawRecord],
    *,
    batch_size: int = BATCH,
    on_problem: Listener | None = None,
) -> dict[str, int]:
    """Map and accept ``records`` of ``system``; returns counts ``accepted``, ``duplicate``,
    ``rejected`` (refused by the ledger, parked there) and ``parked`` (unmappable, parked here).

    ``ConfigError`` when the system has no inbound mapping for ``message_type``."""
    if not engine.has_direction(system, message_type, "in"):
        raise ConfigError(f"system {system!r} has no inbound mapping for {message_type}")
    ingestion = Ingestion(ledger, engine, system, batch_size=batch_size, on_problem=on_problem)
    for raw in records:
        ingestion.add(raw, message_type)
    return ingestion.finish()


def is_canonical(data: Any) -> bool:
    """True when ``data`` has the shape of a canonical message envelope (validated later)."""
    return isinstance(data, Mapping) and "payload" in data and "type" in data and "key" in data


class Ingestion:
    """Records of one system on their way into the ledger: ``add`` each (with its message type
    and, for a connector's stream, the checkpoint after it), then ``finish``.

    ``counts`` says what happened so far: ``accepted``, ``duplicate``, ``rejected`` (refused by the
    ledger and parked there), ``parked`` (unmappable, parked here) and any other status the ledger
    reports."""

    def __init__(
        self,
        ledger: Ledger,
        engine: MappingEngine,
        system: str,
        *,
        batch_size: int = BATCH,
        on_problem: Listener | None = None,
        canonical_without_mapping: bool = False,
    ) -> None:
        self.ledger = ledger
        self.engine = engine
        self.system = system
        self.batch_size = batch_size
        self.on_problem = on_problem
        self.canonical_without_mapping = canonical_without_mapping
        self.counts: dict[str, int] = {"accepted": 0, "duplicate": 0, "rejected": 0, "parked": 0}
        self.committed: Checkpoint | None = None
        """The last checkpoint written (with its batch)."""
        self._batch: list[Any] = []
        self._origins: list[Origin | None] = []
        self._unmapped: list[tuple[RawRecord, str | None, str, str, list[Problem]]] = []
        self._pending: Checkpoint | None = None
        self._groups: dict[tuple[str, str], list[MappedRow]] = {}
        self._parts: dict[tuple[str, str], int] = {}
        self._started = datetime.now(UTC).replace(microsecond=0).isoformat()

    # ------------------------------------------------------------------ adding
    def add(
        self,
        raw: RawRecord,
        message_type: str | None,
        *,
        checkpoint: Checkpoint | None = None,
    ) -> None:
        """Map ``raw`` as ``message_type`` (None: a canonical record says its own type) into the
        current batch, or set it aside for parking; ``checkpoint`` is the position after it."""
        self._take(raw, message_type)
        if checkpoint is not None:
            self._pending = checkpoint
        if len(self._batch) + len(self._unmapped) >= self.batch_size:
            self.flush()

    def _take(self, raw: RawRecord, message_type: str | None) -> None:
        if isinstance(raw.data, Exception):
            error = raw.data
            problems = error.problems if isinstance(error, RecordError) else []
            rule = problems[0].rule if problems else "parse"
            problem = Problem("$", None, rule, str(error), file=raw.file, line=raw.line)
            self._unmapped.append((raw, message_type, "parse", str(problem), [problem]))
            return
        if message_type is None and is_canonical(raw.data):
            message_type = str(raw.data["type"])
        if message_type is None:
            self._park_later(raw, None, "the record names no message type and none was given")
            return
        if self.engine.has_direction(self.system, message_type, "in"):
            self._map(raw, message_type)
        elif self.canonical_without_mapping and is_canonical(raw.data):
            self._canonical(raw, message_type)
        else:
            reason = f"system {self.system!r} has no inbound mapping for {message_type}"
            if self.canonical_without_mapping:
                reason += " and the record is not a canonical message"
            self._park_later(raw, message_type, reason)

    def _map(self, raw: RawRecord, message_type: str) -> None:
        try:
            if message_type == SNAPSHOT:
                row = self.engine.map_snapshot_row(
                    self.system, raw.data, file=raw.file, line=raw.line
                )
                as_of = self.engine.snapshot_as_of(self.system, raw.data) or self._started
            else:
                message = self.engine.map_inbound(
                    self.system, message_type, raw.data, file=raw.file, line=raw.line
                )
        except MappingError as exc:
            self._unmapped.append((raw, message_type, "map", str(exc), exc.problems))
            return
        if message_type == SNAPSHOT:
            group = (Path(raw.file).name if raw.file else "snapshot", as_of)
            self._groups.setdefault(group, []).append(row)
            if len(self._groups[group]) >= SNAPSHOT_ROWS:
                self._emit(group)
            return
        self._batch.append(message)
        self._origins.append(Origin(file=raw.file, line=raw.line, system=self.system))

    def _canonical(self, raw: RawRecord, message_type: str) -> None:
        data = raw.data
        if data.get("type") != message_type:
            self._park_later(
                raw, message_type, f"a {data.get('type')} message where {message_type} is expected"
            )
        elif data.get("source") != self.system:
            # a connector speaks for its own system only: it cannot inject another's messages
            self._park_later(
                raw,
                message_type,
                f"a message of source {data.get('source')!r} offered by system {self.system!r}",
            )
        else:
            self._batch.append(dict(data))
            self._origins.append(Origin(file=raw.file, line=raw.line, system=self.system))

    def _park_later(self, raw: RawRecord, message_type: str | None, reason: str) -> None:
        problem = Problem("$", None, "map", reason, file=raw.file, line=raw.line)
        self._unmapped.append((raw, message_type, "map", reason, [problem]))

    def _emit(self, group: tuple[str, str]) -> None:
        rows = self._groups.pop(group, [])
        if not rows:
            return
        self._parts[group] = self._parts.get(group, 0) + 1
        file_name, as_of = group
        key = f"{as_of}/{file_name[-120:]}/{self._parts[group]}"
        self._batch.append(self.engine.snapshot_message(self.system, rows, as_of=as_of, key=key))
        self._origins.append(Origin(file=file_name, system=self.system))

    # ------------------------------------------------------------------ writing
    def flush(self, *, final: Checkpoint | None = None) -> None:
        """Write the current batch — parked records, accepted messages and the pending checkpoint
        (or ``final``) — in one transaction. A checkpoint waits while stock rows before it are
        still gathered into a snapshot message."""
        if final is not None:
            self._pending = final
        checkpoint = None if self._groups else self._pending
        if self._batch or self._unmapped or checkpoint is not None:
            with self.ledger.engine.begin() as conn:
                parked = self._park(conn)
                results = self.ledger.accept_batch(
                    self._batch, self._origins, checkpoint=checkpoint, conn=conn
                )
            # counted and told only once committed: a failed batch changed nothing
            self.counts["parked"] += len(parked)
            if self.on_problem is not None:
                for notice in parked:
                    self.on_problem(notice)
            for result in results:
                self.counts[result.status] = self.counts.get(result.status, 0) + 1
                if result.status in ("rejected", "conflict") and self.on_problem is not None:
                    self.on_problem(result.as_dict())
            if checkpoint is not None:
                self.committed = checkpoint
                self._pending = None
        self._batch.clear()
        self._origins.clear()
        self._unmapped.clear()
        self.engine.reload_if_changed()

    def finish(self, checkpoint: Checkpoint | None = None) -> dict[str, int]:
        """Emit gathered snapshot rows and write what is left (with ``checkpoint``, if given);
        returns the counts."""
        for group in list(self._groups):
            self._emit(group)
        self.flush(final=checkpoint)
        return self.counts

    def _park(self, conn: Connection) -> list[dict[str, Any]]:
        """Park unmappable records in the batch's transaction (the same record offered twice is
        kept once); returns a description of each."""
        notices = []
        for raw, message_type, stage, reason, problems in self._unmapped:
            parked_id = self.ledger.park(
                stage=stage,
                reason=reason,
                record=_record_of(raw.data),
                problems=problems,
                system=self.system,
                message_type=message_type,
                file=raw.file,
                line=raw.line,
                conn=conn,
            )
            notices.append(
                {
                    "status": "parked",
                    "file": raw.file,
                    "line": raw.line,
                    "reason": reason,
                    "parked_id": parked_id,
                    "problems": [p.as_dict() for p in problems],
                }
            )
        return notices


def _record_of(data: Any) -> Any:
    """What to keep of a parked record: the record, or the source text of one that could not be
    read (its error otherwise)."""
    if isinstance(data, Exception):
        text = getattr(data, "text", None)
        return text if isinstance(text, str) else str(data)
    return data
