"""Canonical files into the ledger: read JSON / JSON-lines records and accept them in batches,
keeping the file and line of every record so a rejected one is parked with where it came from."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from conveyor.ledger import Ledger, Origin
from conveyor.messages import read_records


def accept_files(
    ledger: Ledger, files: Iterable[Path], *, batch_size: int = 1000
) -> tuple[dict[str, int], list[dict[str, Any]]]:
    """Accept every record of ``files``; return counts per status and the records the ledger
    parked (rejected, or in conflict with a stored version of their key)."""
    totals = {"accepted": 0, "duplicate": 0, "conflict": 0, "rejected": 0}
    rejected: list[dict[str, Any]] = []
    batch: list[Any] = []
    origins: list[Origin | None] = []

    def flush() -> None:
        for result in ledger.accept_batch(batch, origins):
            totals[result.status] += 1
            if result.status in ("rejected", "conflict"):
                rejected.append(result.as_dict())
        batch.clear()
        origins.clear()

    for path in files:
        for line, record in read_records(path):
            batch.append(record)
            origins.append(Origin(file=str(path), line=line))
            if len(batch) >= batch_size:
                flush()
    if batch:
        flush()
    return totals, rejected
