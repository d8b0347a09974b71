"""Replay parked input records: map again the ones parked at stage ``map`` (after the integrator
added the missing crosswalk row or fixed the mapping), offer again the canonical ones parked at
``validate``/``parse``, and accept what now passes.

Each replayed record is resolved (``status = replayed``, with the message id it became); a record
that still fails stays parked as the one row it was, with its reason brought up to date — it is
never parked twice. Running a replay again is safe: resolved rows are not picked up, and the
ledger's business key makes an already accepted record a duplicate, not a second posting.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select, tuple_, update

from conveyor import messages as canonical
from conveyor.errors import MappingError, Problem
from conveyor.ledger import Origin
from conveyor.ledger.models import MessageRow, ParkedRecordRow

if TYPE_CHECKING:
    from conveyor.config import Project
    from conveyor.ledger import Ledger
    from conveyor.mapping.engine import MappingEngine

BATCH = 1000
REPLAYABLE_STAGES = ("map", "validate", "parse")

messages_t = MessageRow.__table__


def replay_parked(
    project: Project,
    ledger: Ledger,
    *,
    ids: Sequence[int] | None = None,
    system: str | None = None,
    engine: MappingEngine | None = None,
) -> dict[str, int]:
    """Map and accept parked input records again; returns counts ``replayed``, ``still_parked``
    and ``duplicate``. ``ids`` limits the replay to those parked records, ``system`` to one
    source."""
    from conveyor.mapping.engine import MappingEngine

    engine = engine or MappingEngine.load(project)
    wanted = set(ids) if ids is not None else None
    counts = {"replayed": 0, "still_parked": 0, "duplicate": 0}
    candidates: list[tuple[ParkedRecordRow, dict[str, Any]]] = []
    for row in ledger.parked_records(system=system):
        if wanted is not None and row.id not in wanted:
            continue
        if row.stage not in REPLAYABLE_STAGES:
            continue
        message = _remap(ledger, engine, row)
        if message is None:
            counts["still_parked"] += 1
            continue
        candidates.append((row, message))
    for start in range(0, len(candidates), BATCH):
        _offer(ledger, candidates[start : start + BATCH], counts)
    return counts


def _remap(ledger: Ledger, engine: MappingEngine, row: ParkedRecordRow) -> dict[str, Any] | None:
    """The message a parked record gives now, or None (its parked row updated when the reason
    changed)."""
    try:
        record = canonical.loads(row.record)
    except ValueError:
        return None  # a line that is not JSON cannot be replayed; it waits for a person
    if row.stage != "map":
        if isinstance(record, dict) and record.get("type") in canonical.MESSAGE_TYPES:
            return record
        return None
    if not row.system or not row.message_type:
        return None
    if not engine.has_direction(row.system, row.message_type, "in"):
        _update(
            ledger,
            row.id,
            f"system {row.system!r} has no inbound mapping for {row.message_type}",
            [],
        )
        return None
    try:
        return engine.map_inbound(
            row.system, row.message_type, record, file=row.file, line=row.line
        )
    except MappingError as exc:
        _update(ledger, row.id, str(exc), exc.problems)
        return None


def _offer(
    ledger: Ledger,
    chunk: list[tuple[ParkedRecordRow, dict[str, Any]]],
    counts: dict[str, int],
) -> None:
    origins: list[Origin | None] = [
        Origin(file=row.file, line=row.line, system=row.system) for row, _ in chunk
    ]
    results = ledger.accept_batch([message for _, message in chunk], origins)
    duplicates = [
        (row, result)
        for (row, _), result in zip(chunk, results, strict=True)
        if result.status == "duplicate"
    ]
    stored = _stored_ids(ledger, [(r.source or "", r.key or "") for _, r in duplicates])
    for (row, _), result in zip(chunk, results, strict=True):
        if result.status == "accepted":
            ledger.resolve_parked(row.id, message_id=result.message_id)
            counts["replayed"] += 1
        elif result.status == "duplicate":
            ledger.resolve_parked(
                row.id, message_id=stored.get((result.source or "", result.key or ""))
            )
            counts["duplicate"] += 1
        else:
            counts["still_parked"] += 1
            error = result.error
            problems = list(getattr(error, "problems", []))
            if result.parked_id is not None and result.parked_id != row.id:
                _drop(ledger, result.parked_id)
            _update(ledger, row.id, str(error) if error else "rejected", problems)


def _stored_ids(ledger: Ledger, identities: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
    if not identities:
        return {}
    with ledger.engine.connect() as conn:
        return {
            (r.source, r.key): r.message_id
            for r in conn.execute(
                select(messages_t.c.source, messages_t.c.key, messages_t.c.message_id).where(
                    tuple_(messages_t.c.source, messages_t.c.key).in_(identities)
                )
            )
        }


def _update(ledger: Ledger, parked_id: int, reason: str, problems: list[Problem]) -> None:
    """Bring a still-parked row's reason up to date (the record itself is left as received)."""
    text = json.dumps([p.as_dict() for p in problems], ensure_ascii=False, default=str)
    with ledger.engine.begin() as conn:
        conn.execute(
            update(ParkedRecordRow)
            .where(ParkedRecordRow.id == parked_id, ParkedRecordRow.status == "parked")
            .values(reason=reason, problems=text)
        )


def _drop(ledger: Ledger, parked_id: int) -> None:
    """Remove the row the ledger parked for a replayed record that failed again: the original
    parked row stays the one place that record waits."""
    with ledger.engine.begin() as conn:
        conn.execute(
            delete(ParkedRecordRow).where(
                ParkedRecordRow.id == parked_id, ParkedRecordRow.status == "parked"
            )
        )
