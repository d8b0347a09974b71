"""Snapshots in the encodings factory PCs save (GBK, GB18030, UTF-8 with a BOM) read as ingest
reads them; bytes that are not text, and JSON nested too deeply to read, are listed with their
file and line (or end the run with an error naming them) — never a bare decoding error or a
traceback."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from conveyor.messages import new_message
from conveyor.reconcile.reference import NoReference
from conveyor.reconcile.service import compare_snapshots
from conveyor.reconcile.sources import (
    CanonicalCsvSnapshot,
    CanonicalJsonSnapshot,
    MappedSnapshot,
    open_snapshot_file,
)
from conveyor.reconcile.tolerance import Tolerance

from .helpers import CSV_HEADER, rows_of

CHINESE_ROWS = "原料-001,成品仓/A区,批次1,12.5,KG,不锈钢板\n原料-002,成品仓/A区,,3,PCS,螺栓𠀀\n"
"""Chinese codes and descriptions; ``𠀀`` is outside GBK (GB18030 writes it in four bytes)."""


def _canonical(tmp_path: Path, name: str, encoding: str) -> Path:
    path = tmp_path / name
    text = CSV_HEADER + CHINESE_ROWS
    if encoding == "gbk":
        text = text.replace("𠀀", "")
    path.write_bytes(text.encode(encoding))
    return path


@pytest.mark.parametrize(
    ("encoding", "detected"),
    [("gbk", "gb18030"), ("gb18030", "gb18030"), ("utf-8-sig", "utf-8-sig")],
)
def test_canonical_csv_in_a_factory_encoding(tmp_path: Path, encoding: str, detected: str) -> None:
    path = _canonical(tmp_path, f"erp-{encoding}.csv", encoding)
    snapshot = open_snapshot_file("erp", path, reference=NoReference())
    assert isinstance(snapshot, CanonicalCsvSnapshot)
    rows = rows_of(snapshot)
    assert rows[0] == ("原料-001", "成品仓/A区", "批次1", "12.5", "KG")
    assert rows[1][0] == "原料-002"
    assert snapshot.unmapped == []
    assert snapshot.encoding == detected


def test_a_gbk_snapshot_reconciles_against_a_utf8_one(tmp_path: Path) -> None:
    gbk = _canonical(tmp_path, "erp.csv", "gbk")
    utf8 = tmp_path / "wms.csv"
    utf8.write_text(CSV_HEADER + CHINESE_ROWS.replace("𠀀", ""), encoding="utf-8")
    reference = NoReference()
    snapshots = [
        open_snapshot_file("erp", gbk, reference=reference),
        open_snapshot_file("wms", utf8, reference=reference),
    ]
    result, _ = compare_snapshots(
        snapshots, systems=["erp", "wms"], tolerance=Tolerance(), reference=reference
    )
    assert (result.summary.lines, result.summary.exact) == (2, 2)
    assert result.summary.unmapped == 0
    assert result.comparison.descriptions["原料-001"] == "不锈钢板"


def test_bytes_that_are_not_text_park_their_row_with_file_and_line(tmp_path: Path) -> None:
    # past the first megabyte the encoding detection looks at: the file reads as UTF-8
    good = "".join(f"M{i:06d},L1,,1,KG,\n" for i in range(70_000))
    path = tmp_path / "erp.csv"
    path.write_bytes((CSV_HEADER + good).encode() + b"M\xff\xfe,L1,,2,KG,\nLAST,L1,,3,KG,\n")
    reference = NoReference()
    snapshot = open_snapshot_file("erp", path, reference=reference)
    other = open_snapshot_file("wms", path, reference=reference)
    result, _ = compare_snapshots(
        [snapshot, other], systems=["erp", "wms"], tolerance=Tolerance(), reference=reference
    )
    assert result.summary.rows == {"erp": 70_001, "wms": 70_001}
    (bad, _) = result.unmapped
    assert (bad.system, bad.source, bad.line, bad.stage) == ("erp", str(path), 70_002, "parse")
    assert "not utf-8 text" in bad.reason
    assert f"{path}:70002" in bad.reason
    assert json.loads(bad.record)[0] == "M\\xff\\xfe"  # the bytes shown, not lost


def test_canonical_json_in_gbk(tmp_path: Path) -> None:
    message = new_message(
        "stock_snapshot",
        "wms",
        "SNAP-1",
        {
            "as_of": "2026-11-21T18:00:00+08:00",
            "rows": [{"material": "原料-001", "location": "成品仓", "quantity": "2", "uom": "KG"}],
        },
    )
    path = tmp_path / "wms.json"
    path.write_bytes(json.dumps(message, ensure_ascii=False).encode("gbk"))
    snapshot = open_snapshot_file("wms", path, reference=NoReference())
    assert isinstance(snapshot, CanonicalJsonSnapshot)
    assert rows_of(snapshot) == [("原料-001", "成品仓", "", Decimal(2), "KG")]


def _message_line(rows: list[dict[str, Any]]) -> bytes:
    message = new_message(
        "stock_snapshot", "wms", "SNAP-1", {"as_of": "2026-11-21T18:00:00+08:00", "rows": rows}
    )
    return json.dumps(message).encode() + b"\n"


ROW = {"material": "M1", "location": "L1", "quantity": "2", "uom": "KG"}


def test_json_lines_with_bytes_that_are_not_text_park_that_line(tmp_path: Path) -> None:
    path = tmp_path / "wms.jsonl"
    bad = _message_line([{**ROW, "material": "M\udcff"}]).replace(b"\\udcff", b"\xff")
    # a blank line past the first megabyte the encoding detection looks at: it reads UTF-8
    path.write_bytes(_message_line([ROW]) + b" " * (1 << 20) + b"\n" + bad + b"{not json\n")
    snapshot = open_snapshot_file("wms", path, reference=NoReference())
    assert rows_of(snapshot) == [("M1", "L1", "", Decimal(2), "KG")]
    reasons = {u.line: u.reason for u in snapshot.unmapped}
    assert f"{path}:3: " in reasons[3]
    assert "not utf-8 text" in reasons[3]
    assert 4 in reasons  # the next line is no JSON: listed too, and the reading went on


def test_json_nested_ten_thousand_levels_is_listed_not_a_traceback(tmp_path: Path) -> None:
    deep = "[" * 10_000 + "]" * 10_000
    lines = tmp_path / "wms.jsonl"
    lines.write_bytes(
        _message_line([ROW]) + f'{{"type": "stock_snapshot", "x": {deep}}}\n'.encode()
    )
    snapshot = open_snapshot_file("wms", lines, reference=NoReference())
    assert rows_of(snapshot) == [("M1", "L1", "", Decimal(2), "KG")]
    (parked,) = snapshot.unmapped
    assert (parked.line, parked.stage) == (2, "parse")
    assert "nested too deeply" in parked.reason

    document = tmp_path / "erp.json"  # one pretty-printed document, far too deep
    document.write_text('{"rows":\n' + "[\n" * 10_000 + "]\n" * 10_000 + "}\n")
    snapshot = open_snapshot_file("erp", document, reference=NoReference())
    assert isinstance(snapshot, MappedSnapshot)
    assert rows_of(snapshot) == []
    (parked,) = snapshot.unmapped  # one error for the document, not one per line
    assert (parked.source, parked.line, parked.stage) == (str(document), 1, "parse")
    assert "nested too deeply" in parked.reason


def test_a_system_export_with_bytes_that_are_not_text_parks_that_row_with_its_line(
    tmp_path: Path,
) -> None:
    path = tmp_path / "sap.csv"
    good = "".join(f"M{i:06d},1000,1\n" for i in range(90_000))
    path.write_bytes(("Material,Plant,Qty\n" + good).encode() + b"M\xff,1000,1\n")
    snapshot = open_snapshot_file("sap", path, reference=NoReference())
    assert isinstance(snapshot, MappedSnapshot)
    rows_of(snapshot)
    (bad,) = [u for u in snapshot.unmapped if u.stage == "parse"]
    assert bad.line == 90_002
    assert bad.source == str(path)
    assert "0xff" in bad.reason
    assert snapshot.rows == 90_001
