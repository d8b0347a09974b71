"""Source: a connector's ``snapshot()``: raw rows of its system through its mapping, or rows
that are already canonical when the system has no mapping."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

from conveyor.errors import MappingError, Problem
from conveyor.reconcile.sources.base import (
    CANONICAL_CSV_REQUIRED,
    CHUNK_ROWS,
    Chunk,
    Progress,
    Snapshot,
    record_text,
)
from conveyor.reconcile.sources.mapped import MappedSnapshot
from conveyor.reconcile.sources.store import SnapshotStore

if TYPE_CHECKING:
    from conveyor.connector import Connector
    from conveyor.reconcile.reference import Reference


def connector_snapshot(
    system: str,
    connector: Connector,
    *,
    reference: Reference,
    tracks_lots: bool | None = None,
    as_of: datetime | None = None,
) -> Snapshot:
    """The snapshot a connector gives (raw rows of its system, through its mapping)."""

    def records() -> Iterator[tuple[int | None, Any]]:
        try:
            for record in connector.snapshot():
                yield record.line, record.data
        finally:
            connector.close()

    if not reference.has_mapping(system):
        return CanonicalRowsSnapshot(
            system,
            f"connector:{connector.kind}",
            records,
            reference=reference,
            tracks_lots=tracks_lots,
            as_of=as_of,
        )
    return MappedSnapshot(
        system,
        f"connector:{connector.kind}",
        records,
        reference=reference,
        tracks_lots=tracks_lots,
        as_of=as_of,
        kind="connector",
    )


class CanonicalRowsSnapshot(Snapshot):
    """Rows that are already canonical dicts (a connector of a system without a mapping)."""

    kind = "connector"

    def __init__(
        self,
        system: str,
        source: str,
        records: Callable[[], Iterator[tuple[int | None, Any]]],
        *,
        reference: Reference | None,
        tracks_lots: bool | None = None,
        as_of: datetime | None = None,
    ) -> None:
        super().__init__(system, source, canonical=True, tracks_lots=tracks_lots, as_of=as_of)
        self.records = records
        self.reference = reference

    def chunks(
        self, progress: Progress | None = None, store: SnapshotStore | None = None
    ) -> Iterator[Chunk]:
        sha = hashlib.sha256()
        capture = store.capture(".jsonl") if store is not None else None
        rows: list[tuple[Any, ...]] = []
        lines: list[int | None] = []
        for line, raw in self.records():
            self.rows += 1
            encoded = (record_text(raw) + "\n").encode()
            sha.update(encoded)
            if capture is not None:
                capture.write(encoded)
            if progress is not None:
                progress(1)
            if not isinstance(raw, dict) or not all(k in raw for k in CANONICAL_CSV_REQUIRED):
                self._reject(
                    line,
                    "map",
                    MappingError(
                        [
                            Problem(
                                "$",
                                None,
                                "mapping.missing",
                                f"no mapping for system {self.system!r} and the row is not "
                                "canonical (material, location, quantity, uom)",
                                line=line,
                            )
                        ]
                    ),
                    raw,
                )
                continue
            rows.append(
                (
                    raw["material"],
                    raw["location"],
                    raw.get("lot") or "",
                    raw["quantity"],
                    raw["uom"],
                    str(raw.get("description") or ""),
                )
            )
            lines.append(line)
            if len(rows) >= CHUNK_ROWS:
                yield from self._emit(rows, lines)
                rows, lines = [], []
        if rows:
            yield from self._emit(rows, lines)
        self.sha256 = sha.hexdigest()
        if capture is not None:
            self.stored_path = str(capture.finish(self.sha256))

    def _emit(self, rows: list[tuple[Any, ...]], lines: list[int | None]) -> Iterator[Chunk]:
        # values of a connector may be numbers or anything: validate them row by row
        chunk = self._valid_rows(Chunk(rows, lines=lines))
        chunk = self._valid(chunk, self.reference, text=False)
        if len(chunk):
            yield chunk
