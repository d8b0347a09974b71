"""Helpers shared by the source tests."""

from __future__ import annotations

from typing import Any

from conveyor.reconcile.sources import Snapshot, SnapshotStore

CSV_HEADER = "material,location,lot,quantity,uom,description\n"


def rows_of(snapshot: Snapshot, store: SnapshotStore | None = None) -> list[tuple[Any, ...]]:
    """Every valid row as ``(material, location, lot, quantity, uom)``."""
    out = []
    for chunk in snapshot.chunks(store=store):
        for index in range(len(chunk)):
            out.append(
                tuple(
                    chunk.value(index, name)
                    for name in ("material", "location", "lot", "quantity", "uom")
                )
            )
    return out
