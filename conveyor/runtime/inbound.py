"""The inbound driver: the same for every connector, so a connector only speaks its system.

``poll_stream`` asks a polling connector for the records of one stream after the stored cursor,
maps and accepts them in batches (``conveyor.mapping.ingest``) and stores the cursor after each
batch in that batch's transaction: a crash repeats at most the batch that was not committed, and
the ledger's dedupe by business key makes the repeat harmless. Unmappable records are parked and
never hold the cursor back. Records are mapped with the system's inbound mapping for their type;
where the system has none, a record that is already a canonical message of that system is taken
as it is (connectors that speak the canonical model, such as the ``fake`` stand-in, need no
mapping file) and anything else is parked, to be replayed once a mapping exists.

``receive_units`` takes what a receiving connector holds (files, AMQP messages, HTTP bodies): each
unit's records are accepted or parked and committed, and only then is the unit acknowledged to its
source (``unit.ack()``). A unit that cannot be read is parked with its reason and handed to
``unit.fail(reason)``; a unit whose records could not be stored (the database refused) is neither
acknowledged nor failed, so its source offers it again. A unit with a ``content_hash`` the ledger
has already taken in is acknowledged unread; the hash is marked in the same transaction as the
unit's last batch. Records of a hashed unit that carry a cursor (a file's rows) have it saved with
each batch, so a unit offered again after a crash resumes after the last committed batch.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from conveyor.errors import ConfigError
from conveyor.ledger import Checkpoint
from conveyor.ledger.core import RECEIVED_PREFIX, received_mark
from conveyor.mapping.ingest import BATCH, Ingestion, Listener
from conveyor.redact import safe_text

if TYPE_CHECKING:
    from conveyor.connector import Connector, RawRecord, ReceivedUnit
    from conveyor.ledger import Ledger
    from conveyor.mapping.engine import MappingEngine

log = logging.getLogger(__name__)


@dataclass
class PollResult:
    """What one poll of one stream did."""

    system: str
    stream: str
    message_type: str
    cursor_before: str | None
    cursor: str | None
    records: int = 0
    counts: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form for ``--json`` output."""
        return {
            "system": self.system,
            "stream": self.stream,
            "type": self.message_type,
            "records": self.records,
            **self.counts,
            "cursor_before": self.cursor_before,
            "cursor": self.cursor,
        }


@dataclass
class ReceiveResult:
    """What one receive pass did: units seen, acknowledged (of which already taken in, unread),
    failed (unreadable, parked) and not acknowledged (``errors``), and the record counts."""

    system: str
    units: int = 0
    acknowledged: int = 0
    already_taken: int = 0
    failed: int = 0
    records: int = 0
    resumed: int = 0
    """Records skipped because a crashed earlier pass had committed them."""
    counts: dict[str, int] = field(default_factory=dict)
    errors: list[dict[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form for ``--json`` output."""
        return {
            "system": self.system,
            "units": self.units,
            "acknowledged": self.acknowledged,
            "already_taken": self.already_taken,
            "failed": self.failed,
            "not_acknowledged": len(self.errors),
            "records": self.records,
            "resumed": self.resumed,
            **self.counts,
            "errors": self.errors,
        }

    def add(self, counts: dict[str, int]) -> None:
        """Add one unit's record counts."""
        for name, value in counts.items():
            self.counts[name] = self.counts.get(name, 0) + value


def poll_stream(
    ledger: Ledger,
    engine: MappingEngine,
    connector: Connector,
    stream: str,
    *,
    batch_size: int = BATCH,
    on_problem: Listener | None = None,
) -> PollResult:
    """Poll one stream of ``connector`` from its stored cursor and accept what it gives."""
    if not connector.supports("poll"):
        raise ConfigError(f"system {connector.name!r} ({connector.kind}) does not poll")
    declared = connector.stream(stream)
    before = ledger.checkpoint(connector.name, declared.name)
    ingestion = Ingestion(
        ledger,
        engine,
        connector.name,
        batch_size=batch_size,
        on_problem=on_problem,
        canonical_without_mapping=True,
    )
    result = PollResult(connector.name, declared.name, declared.message_type, before, before)
    for raw in connector.poll(declared.name, before):
        result.records += 1
        checkpoint = (
            Checkpoint(connector.name, declared.name, raw.cursor)
            if raw.cursor is not None
            else None
        )
        ingestion.add(raw, raw.message_type or declared.message_type, checkpoint=checkpoint)
    result.counts = ingestion.finish()
    if ingestion.committed is not None:
        result.cursor = ingestion.committed.cursor
    return result


def poll_streams(
    ledger: Ledger,
    engine: MappingEngine,
    connector: Connector,
    streams: Sequence[str] = (),
    *,
    batch_size: int = BATCH,
    on_problem: Listener | None = None,
) -> list[PollResult]:
    """Poll ``streams`` of ``connector`` (every declared stream when none are named)."""
    names = list(streams) or [s.name for s in connector.streams]
    return [
        poll_stream(ledger, engine, connector, name, batch_size=batch_size, on_problem=on_problem)
        for name in names
    ]


UNIT_PROBLEMS = 1000
"""Parked records of one unit described in its report (the rest are counted; all are parked)."""


class _Unreadable(Exception):
    """Reading a unit's records failed (not storing them)."""


def _read(unit: ReceivedUnit) -> Iterator[RawRecord]:
    """The unit's records; a failure to read them becomes ``_Unreadable``, so it is told apart
    from a failure to store them."""
    records = iter(unit.records)
    while True:
        try:
            raw = next(records)
        except StopIteration:
            return
        except Exception as exc:  # whatever the reader raised, the unit cannot be read
            raise _Unreadable(f"{unit.name}: cannot be read: {exc}") from exc
        yield raw


def resume_stream(content_hash: str) -> str:
    """The checkpoint stream holding how far a unit with ``content_hash`` was committed (its
    records' cursor). It sorts with the received-unit marks, so cursor listings leave it out."""
    stream = received_mark("", content_hash, "").stream.removeprefix(RECEIVED_PREFIX)
    return f"{RECEIVED_PREFIX}at:{stream}"[:100]


def receive_units(
    ledger: Ledger,
    engine: MappingEngine,
    connector: Connector,
    *,
    batch_size: int = BATCH,
    on_problem: Listener | None = None,
) -> ReceiveResult:
    """One receive pass over ``connector``: every unit it holds now, each acknowledged only after
    its records are committed."""
    from conveyor.connector import RawRecord

    if not connector.supports("receive"):
        raise ConfigError(f"system {connector.name!r} ({connector.kind}) does not receive")
    result = ReceiveResult(connector.name)
    for unit in connector.receive():
        result.units += 1
        if unit.content_hash and ledger.has_received(connector.name, unit.content_hash):
            _acknowledge(unit, result)
            result.already_taken += 1
            continue
        problems: list[dict[str, Any]] = []

        def tell(notice: dict[str, Any], problems: list[dict[str, Any]] = problems) -> None:
            if len(problems) < UNIT_PROBLEMS:
                problems.append(notice)
            if on_problem is not None:
                on_problem(notice)

        ingestion = Ingestion(
            ledger,
            engine,
            connector.name,
            batch_size=batch_size,
            on_problem=tell,
            canonical_without_mapping=True,
        )
        mark = (
            received_mark(connector.name, unit.content_hash, unit.name)
            if unit.content_hash
            else None
        )
        resume = resume_stream(unit.content_hash) if unit.content_hash else None
        done = ledger.checkpoint(connector.name, resume) if resume else None
        resumed_after, skipped, records = done, 0, 0
        unreadable: str | None = None
        try:
            try:
                for raw in _read(unit):
                    if done is not None:  # committed by an earlier, interrupted pass
                        skipped += 1
                        if raw.cursor == done:
                            done = None
                        continue
                    records += 1
                    checkpoint = (
                        Checkpoint(connector.name, resume, raw.cursor)
                        if resume is not None and raw.cursor is not None
                        else None
                    )
                    ingestion.add(raw, raw.message_type or unit.message_type, checkpoint=checkpoint)
            except _Unreadable as exc:
                unreadable = safe_text(exc)
                # parked in the unit's last transaction, with whatever was read before it
                ingestion.add(RawRecord(exc, file=unit.name), unit.message_type)
                mark = None  # a failed unit is not taken in: a corrected one may come again
            counts = ingestion.finish(mark)
        except Exception as exc:  # storing failed: the source keeps the unit and offers it again
            reason = safe_text(exc)
            log.error("unit %s of %s not acknowledged: %s", unit.name, connector.name, reason)
            result.errors.append({"unit": unit.name, "reason": reason})
            continue
        result.add(counts)
        result.records += records
        result.resumed += skipped
        if unit.report is not None:
            try:
                unit.report(
                    {
                        "records": records,
                        "resumed_after": resumed_after,
                        "resumed": skipped,
                        **counts,
                        "problems": problems,
                        "problems_left_out": max(
                            0,
                            sum(counts.get(n, 0) for n in ("parked", "rejected", "conflict"))
                            - len(problems),
                        ),
                        "unreadable": unreadable,
                    }
                )
            except Exception as exc:  # committed already: a report is a courtesy, not the record
                result.errors.append({"unit": unit.name, "reason": f"report: {safe_text(exc)}"})
        if unreadable is not None:
            result.failed += 1
            try:
                unit.fail(unreadable)
            except Exception as exc:  # parked already: the reason is kept whatever the source did
                result.errors.append({"unit": unit.name, "reason": f"fail: {safe_text(exc)}"})
        else:
            _acknowledge(unit, result)
    return result


def _acknowledge(unit: ReceivedUnit, result: ReceiveResult) -> None:
    try:
        unit.ack()
    except Exception as exc:  # committed already: a second offer is a duplicate, not a loss
        result.errors.append({"unit": unit.name, "reason": f"ack failed: {safe_text(exc)}"})
    else:
        result.acknowledged += 1
