"""Ingest raw records of one system: map each one, park what cannot be mapped (stage ``map``, with
the raw record and the precise reason, replayable), accept the rest into the ledger in batches.

Stock rows (``stock_snapshot``) are gathered into snapshot messages per file and ``as_of``, at most
``SNAPSHOT_ROWS`` rows each. The engine is asked to reload between batches, so a long-running
ingestion picks up a fixed mapping.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor.errors import ConfigError, MappingError, Problem
from conveyor.ledger import Origin

if TYPE_CHECKING:
    from connectors.base import RawRecord
    from conveyor.config import Project
    from conveyor.ledger import Ledger
    from conveyor.mapping.engine import MappedRow, MappingEngine

BATCH = 1000
SNAPSHOT_ROWS = 5000
"""Rows per snapshot message: big enough for a warehouse, small enough for one ledger row."""

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
    ``rejected`` (refused by the ledger, parked there) and ``parked`` (unmappable, parked here)."""
    if not engine.has_direction(system, message_type, "in"):
        raise ConfigError(f"system {system!r} has no inbound mapping for {message_type}")
    if message_type == "stock_snapshot":
        return _ingest_snapshot(ledger, engine, system, records, on_problem=on_problem)
    counts = {"accepted": 0, "duplicate": 0, "rejected": 0, "parked": 0}
    batch: list[Any] = []
    origins: list[Origin | None] = []
    unmapped: list[tuple[RawRecord, str, str, list[Problem]]] = []

    def flush() -> None:
        _park(ledger, system, message_type, unmapped, counts, on_problem)
        if batch:
            for result in ledger.accept_batch(batch, origins):
                counts[result.status] = counts.get(result.status, 0) + 1  # conflict: only when seen
                if result.status in ("rejected", "conflict") and on_problem is not None:
                    on_problem(result.as_dict())
        batch.clear()
        origins.clear()
        unmapped.clear()
        engine.reload_if_changed()

    for raw in records:
        if isinstance(raw.data, Exception):
            problem = Problem("$", None, "parse", str(raw.data), file=raw.file, line=raw.line)
            unmapped.append((raw, "parse", str(problem), [problem]))
        else:
            try:
                message = engine.map_inbound(
                    system, message_type, raw.data, file=raw.file, line=raw.line
                )
            except MappingError as exc:
                unmapped.append((raw, "map", str(exc), exc.problems))
            else:
                batch.append(message)
                origins.append(Origin(file=raw.file, line=raw.line, system=system))
        if len(batch) + len(unmapped) >= batch_size:
            flush()
    flush()
    return counts


def _park(
    ledger: Ledger,
    system: str,
    message_type: str,
    unmapped: list[tuple[RawRecord, str, str, list[Problem]]],
    counts: dict[str, int],
    on_problem: Listener | None,
) -> None:
    """Park unmappable records in one transaction (the same record offered twice is kept once)."""
    if not unmapped:
        return
    with ledger.engine.begin() as conn:
        for raw, stage, reason, problems in unmapped:
            parked_id = ledger.park(
                stage=stage,
                reason=reason,
                record=str(raw.data) if isinstance(raw.data, Exception) else raw.data,
                problems=problems,
                system=system,
                message_type=message_type,
                file=raw.file,
                line=raw.line,
                conn=conn,
            )
            counts["parked"] += 1
            if on_problem is not None:
                on_problem(
                    {
                        "status": "parked",
                        "file": raw.file,
                        "line": raw.line,
                        "reason": reason,
                        "parked_id": parked_id,
                        "problems": [p.as_dict() for p in problems],
                    }
                )


def _ingest_snapshot(
    ledger: Ledger,
    engine: MappingEngine,
    system: str,
    records: Iterable[RawRecord],
    *,
    on_problem: Listener | None,
) -> dict[str, int]:
    counts = {"accepted": 0, "duplicate": 0, "rejected": 0, "parked": 0}
    started = datetime.now(UTC).replace(microsecond=0).isoformat()
    groups: dict[tuple[str, str], list[MappedRow]] = {}
    parts: dict[tuple[str, str], int] = {}
    unmapped: list[tuple[RawRecord, str, str, list[Problem]]] = []

    def emit(group: tuple[str, str]) -> None:
        rows = groups.pop(group, [])
        if not rows:
            return
        parts[group] = parts.get(group, 0) + 1
        file_name, as_of = group
        key = f"{as_of}/{file_name[-120:]}/{parts[group]}"
        message = engine.snapshot_message(system, rows, as_of=as_of, key=key)
        result = ledger.accept(message, Origin(file=file_name, system=system))
        counts[result.status] = counts.get(result.status, 0) + 1  # conflict: only when seen
        if result.status in ("rejected", "conflict") and on_problem is not None:
            on_problem(result.as_dict())

    for raw in records:
        if isinstance(raw.data, Exception):
            problem = Problem("$", None, "parse", str(raw.data), file=raw.file, line=raw.line)
            unmapped.append((raw, "parse", str(problem), [problem]))
            continue
        try:
            row = engine.map_snapshot_row(system, raw.data, file=raw.file, line=raw.line)
            as_of = engine.snapshot_as_of(system, raw.data) or started
        except MappingError as exc:
            unmapped.append((raw, "map", str(exc), exc.problems))
        else:
            group = (Path(raw.file).name if raw.file else "snapshot", as_of)
            groups.setdefault(group, []).append(row)
            if len(groups[group]) >= SNAPSHOT_ROWS:
                emit(group)
        if len(unmapped) >= BATCH:
            _park(ledger, system, "stock_snapshot", unmapped, counts, on_problem)
            unmapped.clear()
    _park(ledger, system, "stock_snapshot", unmapped, counts, on_problem)
    for group in list(groups):
        emit(group)
    return counts
