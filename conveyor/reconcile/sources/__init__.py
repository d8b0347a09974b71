"""Stock snapshots: one system's on-hand stock, read as canonical rows in chunks. One module per
source, each complete on its own, over the shared ``base`` (``Chunk``, ``Snapshot``, the row
checks) and ``store`` (content-addressed copies, hashing):

- ``canonical_csv``: a canonical CSV (header ``material,location,lot,quantity,uom[,description]``);
- ``canonical_json``: canonical ``stock_snapshot`` messages (JSON or JSON lines);
- ``mapped``: a file in the system's own format (CSV, JSON, XML — ``xml`` reads the last) through
  the system's mapping;
- ``connector``: a connector's ``snapshot()`` (through the mapping, or canonical rows);
- ``hub``: the hub's own stock positions, optionally as they stood at an earlier time.

Every row that cannot be read, validated, mapped or converted to the base unit is kept in
``Snapshot.unmapped`` with where it came from and why; nothing is left out silently. Every snapshot
has a content hash (sha256 of the file's bytes, or of the JSON lines of the rows a connector or the
hub gave), and ``SnapshotStore`` keeps a compressed copy under that hash.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from conveyor.reconcile.sources.base import (
    CANONICAL_CSV_REQUIRED,
    CHUNK_ROWS,
    LIMITS,
    SEP,
    Chunk,
    Fields,
    Progress,
    Snapshot,
    Unmapped,
    row_problems,
)
from conveyor.reconcile.sources.canonical_csv import (
    CanonicalCsvSnapshot,
    canonical_positions,
    is_canonical_csv,
)
from conveyor.reconcile.sources.canonical_json import CanonicalJsonSnapshot, is_canonical_json
from conveyor.reconcile.sources.connector import CanonicalRowsSnapshot, connector_snapshot
from conveyor.reconcile.sources.hub import HubSnapshot
from conveyor.reconcile.sources.mapped import MappedSnapshot
from conveyor.reconcile.sources.store import SnapshotStore, file_sha256

if TYPE_CHECKING:
    from conveyor.reconcile.reference import Reference

__all__ = [
    "CANONICAL_CSV_REQUIRED",
    "CHUNK_ROWS",
    "LIMITS",
    "SEP",
    "CanonicalCsvSnapshot",
    "CanonicalJsonSnapshot",
    "CanonicalRowsSnapshot",
    "Chunk",
    "Fields",
    "HubSnapshot",
    "MappedSnapshot",
    "Progress",
    "Snapshot",
    "SnapshotStore",
    "Unmapped",
    "canonical_positions",
    "connector_snapshot",
    "file_sha256",
    "open_snapshot_file",
    "row_problems",
]


def open_snapshot_file(
    system: str,
    path: Path,
    *,
    reference: Reference,
    tracks_lots: bool | None = None,
    as_of: datetime | None = None,
) -> Snapshot:
    """A snapshot from a file: canonical (JSON message or canonical CSV, any system name) or
    the system's own format through its mapping. A snapshot's own time (the message's
    ``as_of``, or the ``as_of`` its mapping reads from the rows) wins over ``as_of``, which
    dates a canonical CSV; snapshots left without a time get the run's."""
    if not path.is_file():
        raise FileNotFoundError(f"snapshot file not found: {path}")
    suffix = path.suffix.lower()
    if suffix in (".json", ".jsonl", ".ndjson") and is_canonical_json(path):
        return CanonicalJsonSnapshot(system, path, reference=reference, tracks_lots=tracks_lots)
    if suffix in (".csv", ".tsv", ".txt") and is_canonical_csv(path):
        return CanonicalCsvSnapshot(
            system, path, reference=reference, tracks_lots=tracks_lots, as_of=as_of
        )
    return MappedSnapshot(
        system,
        str(path),
        lambda: reference.read_file(system, path),
        reference=reference,
        tracks_lots=tracks_lots,
        size=path.stat().st_size,
        path=path,
    )
