"""Source: canonical CSV files (rows as text, bad rows listed, chunks)."""

from __future__ import annotations

import hashlib
from decimal import Decimal
from pathlib import Path

import pytest

from conveyor.errors import ValidationError
from conveyor.reconcile.reference import NoReference, Reference
from conveyor.reconcile.sources import (
    CHUNK_ROWS,
    CanonicalCsvSnapshot,
    open_snapshot_file,
)

from .helpers import CSV_HEADER, rows_of


def test_canonical_csv_reads_rows_as_text_and_hashes_the_file(tmp_path: Path) -> None:
    path = tmp_path / "erp.csv"
    path.write_text(CSV_HEADER + "M1,L1,A,10.5,KG,first\nM2,L1,,3,PCS,\n", encoding="utf-8")
    snapshot = open_snapshot_file("erp", path, reference=NoReference())
    assert isinstance(snapshot, CanonicalCsvSnapshot)
    assert rows_of(snapshot) == [("M1", "L1", "A", "10.5", "KG"), ("M2", "L1", "", "3", "PCS")]
    assert snapshot.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert snapshot.rows == 2
    assert snapshot.unmapped == []
    assert snapshot.lots_seen


def test_canonical_csv_lists_every_bad_row_with_line_and_reason(tmp_path: Path) -> None:
    path = tmp_path / "wms.csv"
    path.write_text(
        CSV_HEADER
        + "M1,L1,,1,KG,\n"
        + ",L1,,1,KG,\n"  # no material
        + "M3,L1,,1.2.3,KG,\n"  # not a quantity
        + "M4,L1,,0.0000000000001,KG,\n"  # 13 decimals
        + "M5,L1\n"  # too few columns
        + "M6,"
        + "L" * 101
        + ",,1,KG,\n"  # location too long
        + "M7,L1,,1,,\n"  # no unit
        + "\n"  # a blank line is no row
        + "M8,L1,,-2,KG,\n",
        encoding="utf-8",
    )
    snapshot = open_snapshot_file("wms", path, reference=NoReference())
    assert [r[0] for r in rows_of(snapshot)] == ["M1", "M8"]
    reasons = {u.line: (u.stage, u.problems[0]["rule"]) for u in snapshot.unmapped}
    assert reasons == {
        3: ("validate", "required"),
        4: ("validate", "decimal"),
        5: ("validate", "decimal"),
        6: ("parse", "columns"),
        7: ("validate", "maxLength"),
        8: ("validate", "required"),
    }
    assert snapshot.rows == 8  # valid and unmapped rows: nothing silently left out
    assert all(u.system == "wms" and u.source == str(path) for u in snapshot.unmapped)


def test_canonical_csv_header_is_required(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("material,location,quantity,uom\nM1,L1,1,KG\n", encoding="utf-8")
    snapshot = CanonicalCsvSnapshot("x", path)
    assert rows_of(snapshot) == [("M1", "L1", "", "1", "KG")]  # lot and description optional
    bad = tmp_path / "bad.csv"
    bad.write_text("sku,qty\nA,1\n", encoding="utf-8")
    with pytest.raises(ValidationError, match="canonical CSV"):
        rows_of(CanonicalCsvSnapshot("x", bad))


def test_large_canonical_csv_comes_in_chunks(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    count = CHUNK_ROWS + 10
    with path.open("w", encoding="utf-8") as fh:
        fh.write(CSV_HEADER)
        for i in range(count):
            fh.write(f"M{i},L1,,{i},KG,\n")
    seen: list[int] = []
    snapshot = CanonicalCsvSnapshot("erp", path)
    chunks = list(snapshot.chunks(progress=seen.append))
    assert [len(c) for c in chunks] == [CHUNK_ROWS, 10]
    assert chunks[1].line(0) == CHUNK_ROWS + 2
    assert sum(seen) == path.stat().st_size  # progress in bytes, to the end


def test_canonical_rows_in_another_unit_are_converted_with_master_data(
    tmp_path: Path, reference: Reference
) -> None:
    path = tmp_path / "wms.csv"
    path.write_text(
        CSV_HEADER + "RM-1002,1000/RM,,2500,G,\nRM-2001,1000/RM,,1,KG,\n", encoding="utf-8"
    )
    snapshot = open_snapshot_file("wms", path, reference=reference)
    assert rows_of(snapshot) == [("RM-1002", "1000/RM", "", Decimal("2.5"), "KG")]
    (bad,) = snapshot.unmapped
    assert (bad.line, bad.stage) == (3, "uom")  # pieces cannot be kilograms
