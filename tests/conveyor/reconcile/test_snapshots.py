"""Snapshots: canonical CSV and JSON, a system's own files through its mapping, XML records,
connectors, the hub's ledger (also rolled back to an earlier ``as_of``), hashes and the store."""

from __future__ import annotations

import gzip
import hashlib
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from conveyor.config import Project
from conveyor.errors import ValidationError
from conveyor.ledger import Ledger
from conveyor.messages import new_message
from conveyor.reconcile.reference import NoReference, Reference
from conveyor.reconcile.snapshots import (
    CHUNK_ROWS,
    CanonicalCsvSnapshot,
    CanonicalJsonSnapshot,
    Chunk,
    HubSnapshot,
    MappedSnapshot,
    Snapshot,
    SnapshotStore,
    connector_snapshot,
    open_snapshot_file,
    xml_records,
)

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


def _message(rows: list[dict[str, Any]], as_of: str = "2026-11-21T18:00:00+08:00") -> str:
    message = new_message("stock_snapshot", "mes", "SNAP-1", {"as_of": as_of, "rows": rows})
    return json.dumps(message)


def test_canonical_json_message_of_any_system_name(tmp_path: Path) -> None:
    path = tmp_path / "mes.json"
    path.write_text(
        _message(
            [
                {"material": "M1", "location": "L1", "lot": "A", "quantity": "2.5", "uom": "KG"},
                {"material": "M2", "location": "L1", "quantity": 3, "uom": "PCS"},
                {"material": "M3", "location": "L1", "quantity": "x", "uom": "PCS"},
            ]
        ),
        encoding="utf-8",
    )
    snapshot = open_snapshot_file("line_scanner", path, reference=NoReference())
    assert isinstance(snapshot, CanonicalJsonSnapshot)
    assert rows_of(snapshot) == [
        ("M1", "L1", "A", Decimal("2.5"), "KG"),
        ("M2", "L1", "", Decimal(3), "PCS"),
    ]
    assert snapshot.as_of == datetime(2026, 11, 21, 10, tzinfo=UTC)
    assert snapshot.rows == 3
    (bad,) = snapshot.unmapped
    assert bad.problems[0]["field"] == "$.payload.rows[2].quantity"


def test_canonical_json_lines_of_several_messages(tmp_path: Path) -> None:
    path = tmp_path / "mes.jsonl"
    first = _message([{"material": "M1", "location": "L1", "quantity": "1", "uom": "KG"}])
    second = _message(
        [{"material": "M2", "location": "L1", "quantity": "2", "uom": "KG"}],
        as_of="2026-11-21T19:00:00+08:00",
    )
    path.write_text(first + "\n" + second + "\nnot json\n", encoding="utf-8")
    snapshot = open_snapshot_file("mes", path, reference=NoReference())
    assert [r[0] for r in rows_of(snapshot)] == ["M1", "M2"]
    assert snapshot.as_of == datetime(2026, 11, 21, 11, tzinfo=UTC)  # the latest
    assert [(u.line, u.stage) for u in snapshot.unmapped] == [(3, "parse")]


def test_canonical_json_with_a_bad_envelope_lists_all_its_rows(tmp_path: Path) -> None:
    message = json.loads(
        _message([{"material": "M1", "location": "L1", "quantity": "1", "uom": "KG"}])
    )
    message["source"] = "Not A Name"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(message), encoding="utf-8")
    snapshot = open_snapshot_file("mes", path, reference=NoReference())
    assert rows_of(snapshot) == []
    assert snapshot.rows == 1
    assert len(snapshot.unmapped) == 2  # the envelope and its one row


def test_system_files_go_through_the_mapping(plant: Project, reference: Reference) -> None:
    path = plant.root / "files" / "sap_mard.csv"
    snapshot = open_snapshot_file("sap", path, reference=reference)
    assert isinstance(snapshot, MappedSnapshot)
    rows = rows_of(snapshot)
    assert ("RM-1001", "1000/RM", "", Decimal("1250.5"), "KG") in rows
    assert ("RM-2001", "1000/WIP-ASSY", "", Decimal(10000), "PCS") in rows  # 10.000 ST
    assert snapshot.mapping_version == reference.version("sap")
    assert snapshot.as_of is not None  # STICHTAG, read by the mapping
    (bad,) = snapshot.unmapped
    assert (bad.line, bad.stage, bad.problems[0]["rule"]) == (13, "map", "lookup")


def test_wms_export_in_grams_is_converted_by_the_mapping(
    tmp_path: Path, reference: Reference
) -> None:
    path = tmp_path / "onhand.csv"
    path.write_text(
        "SKU,LOC,LOT,QTY,UOM\nSKU-1002,WH1-RM,L7,300000,G\nSKU-9999,WH1-RM,,1,KG\n",
        encoding="utf-8",
    )
    snapshot = open_snapshot_file("wms", path, reference=reference)
    assert rows_of(snapshot) == [("RM-1002", "1000/RM", "L7", Decimal(300), "KG")]
    assert [u.stage for u in snapshot.unmapped] == ["map"]


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


def test_xml_records_one_per_material_lot(tmp_path: Path) -> None:
    path = tmp_path / "lots.xml"
    path.write_text(
        """<?xml version="1.0"?>
<!DOCTYPE x [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<MaterialInformation xmlns="http://www.mesa.org/xml/B2MML">
  <MaterialLot>
    <ID>L-1</ID><MaterialDefinitionID>P-1001</MaterialDefinitionID>
    <Quantity><QuantityString>12.5</QuantityString><UnitOfMeasure>kg</UnitOfMeasure></Quantity>
    <Description>&secret;</Description>
  </MaterialLot>
  <MaterialLot><ID>L-2</ID><Quantity unit="kg">3</Quantity></MaterialLot>
</MaterialInformation>
""",
        encoding="utf-8",
    )
    records = list(xml_records(path))
    assert [line for line, _ in records] == [4, 9]
    first = records[0][1]
    assert first["ID"] == "L-1"
    assert first["Quantity"] == {"QuantityString": "12.5", "UnitOfMeasure": "kg"}
    assert "root:" not in json.dumps(first)  # the external entity was not resolved
    assert records[1][1]["Quantity"] == {"@unit": "kg", "#text": "3"}
    broken = tmp_path / "broken.xml"
    broken.write_text("<a><b></a>", encoding="utf-8")
    ((_, error),) = list(xml_records(broken))
    assert isinstance(error, ValueError)


def test_connector_snapshot_through_mapping_and_without(
    plant: Project, reference: Reference
) -> None:
    from connectors.fake import FakeConnector

    mapped = FakeConnector(
        "wms",
        {
            "snapshot_rows": [
                {"SKU": "SKU-1001", "LOC": "WH1-RM", "LOT": "L1", "QTY": "5", "UOM": "KG"},
                {"SKU": "nope", "LOC": "WH1-RM", "LOT": "", "QTY": "5", "UOM": "KG"},
            ]
        },
    )
    snapshot = connector_snapshot("wms", mapped, reference=reference)
    assert snapshot.kind == "connector"
    assert rows_of(snapshot) == [("RM-1001", "1000/RM", "L1", Decimal(5), "KG")]
    assert snapshot.rows == 2
    assert len(snapshot.unmapped) == 1
    assert snapshot.sha256 is not None
    canonical = FakeConnector(
        "scale",
        {
            "snapshot_rows": [
                {"material": "M1", "location": "L1", "quantity": 2, "uom": "KG"},
                {"sku": "M2"},
            ]
        },
    )
    plain = connector_snapshot("scale", canonical, reference=NoReference())
    assert rows_of(plain) == [("M1", "L1", "", Decimal(2), "KG")]
    assert [u.stage for u in plain.unmapped] == ["map"]


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


def test_hub_snapshot_now_and_as_it_stood_before(ledger: Ledger, tmp_path: Path) -> None:
    def adjust(key: str, quantity: str) -> None:
        payload = {
            "material": "M1",
            "location": "L1",
            "quantity": quantity,
            "uom": "KG",
            "reason": "count",
        }
        assert ledger.accept(new_message("stock_adjustment", "mes", key, payload)).status == (
            "accepted"
        )

    adjust("A-1", "10")
    between = datetime.now(UTC)
    adjust("A-2", "5")
    now = HubSnapshot(ledger.engine)
    store = SnapshotStore(tmp_path / "store")
    assert rows_of(now, store) == [("M1", "L1", "", Decimal(15), "KG")]
    assert now.kind == "hub"
    assert now.stored_path is not None
    before = HubSnapshot(ledger.engine, as_of=between)
    assert rows_of(before) == [("M1", "L1", "", Decimal(10), "KG")]
    earlier = HubSnapshot(ledger.engine, as_of=between - timedelta(days=1))
    assert rows_of(earlier) == []  # a zero position is no row
    assert now.sha256 != before.sha256


def test_chunk_select_and_record() -> None:
    chunk = Chunk(
        [("M1", "L1", "", "1", "KG", ""), ("M2", "L2", "B", Decimal("2.50"), "KG", "x")],
        first_line=10,
    )
    picked = chunk.select([1])
    assert len(picked) == 1
    assert picked.line(0) == 11
    assert json.loads(picked.record(0)) == {
        "material": "M2",
        "location": "L2",
        "lot": "B",
        "quantity": "2.5",
        "uom": "KG",
    }
    assert chunk.keys(lot_level=False) == ["M1\x1fL1\x1f", "M2\x1fL2\x1f"]
    assert chunk.descriptions() == {"M2": "x"}
