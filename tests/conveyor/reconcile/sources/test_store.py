"""The content-addressed snapshot store."""

from __future__ import annotations

import gzip
from pathlib import Path

from conveyor.reconcile.sources import (
    CanonicalCsvSnapshot,
    SnapshotStore,
)

from .helpers import CSV_HEADER, rows_of


def test_store_keeps_one_compressed_copy_per_content(tmp_path: Path) -> None:
    path = tmp_path / "erp.csv"
    path.write_text(CSV_HEADER + "M1,L1,,1,KG,\n", encoding="utf-8")
    store = SnapshotStore(tmp_path / "store")
    first = CanonicalCsvSnapshot("erp", path)
    rows_of(first, store)
    again = CanonicalCsvSnapshot("erp", path)
    rows_of(again, store)
    assert first.stored_path == again.stored_path
    assert first.sha256 is not None
    stored = Path(first.stored_path or "")
    assert first.sha256 in stored.name
    assert gzip.decompress(stored.read_bytes()) == path.read_bytes()
    assert len(list((tmp_path / "store").rglob("*.gz"))) == 1
