"""Ingesting raw records into a real ledger (SQLite and PostgreSQL): unmappable records are parked
with their reason, nothing is lost, nothing is stored twice."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

from conveyor.config import Project
from conveyor.ledger import Ledger
from conveyor.mapping import MappingEngine
from conveyor.mapping.ingest import ingest_records
from conveyor.mapping.readers import read_raw

from .conftest import DATA


def test_mes_csv_is_accepted_and_the_unknown_material_parked(
    project: Project, mapping_engine: MappingEngine, ledger: Ledger
) -> None:
    records = list(read_raw(DATA / "mes_consumption.csv"))
    counts = ingest_records(project, ledger, mapping_engine, "mes", "material_consumption", records)
    assert counts == {"accepted": 4, "duplicate": 0, "rejected": 0, "parked": 1}
    (parked,) = ledger.parked_records(stage="map")
    assert parked.system == "mes"
    assert parked.message_type == "material_consumption"
    assert parked.line == 5
    assert parked.file is not None
    assert parked.file.endswith("mes_consumption.csv")
    assert "P-9999" in parked.reason
    assert json.loads(parked.record)["part_no"] == "P-9999"
    (problem,) = json.loads(parked.problems)
    assert problem["table"] == "materials"
    assert problem["code"] == "P-9999"
    assert problem["mapping_file"] == "mappings/mes.yaml"
    stock = {(p.material, p.location): (p.quantity, p.uom) for p in ledger.positions()}
    assert stock[("FG-5001", "1000/WIP-ASSY")] == (Decimal(-24), "PCS")
    assert stock[("RM-1003", "1000/WIP-MOLD")] == (Decimal("-1.5"), "KG")
    found = ledger.trace("C-1002/1")["messages"]
    assert found[0]["mapping_version"] == mapping_engine.version("mes")

    again = ingest_records(project, ledger, mapping_engine, "mes", "material_consumption", records)
    assert again == {"accepted": 0, "duplicate": 4, "rejected": 0, "parked": 1}
    assert len(ledger.parked_records()) == 1  # the same bad record is parked once


def test_parse_errors_and_rejections_are_kept(
    project: Project, mapping_engine: MappingEngine, ledger: Ledger
) -> None:
    records = list(read_raw(DATA / "wms_moves.jsonl"))
    counts = ingest_records(project, ledger, mapping_engine, "wms", "stock_transfer", records)
    assert counts == {"accepted": 2, "duplicate": 0, "rejected": 0, "parked": 2}
    stages = sorted((p.stage, p.line) for p in ledger.parked_records())
    assert stages == [("map", 3), ("parse", 4)]


def test_snapshot_rows_become_one_message(
    project: Project, mapping_engine: MappingEngine, ledger: Ledger
) -> None:
    records = list(read_raw(DATA / "kingdee_stock_gbk.csv"))
    counts = ingest_records(project, ledger, mapping_engine, "kingdee", "stock_snapshot", records)
    assert counts == {"accepted": 1, "duplicate": 0, "rejected": 0, "parked": 0}
    (message,) = ledger.trace("2026-11-21T00:00:00+08:00/kingdee_stock_gbk.csv/1")["messages"]
    assert message["type"] == "stock_snapshot"
    assert len(message["payload"]["rows"]) == 3
    assert ledger.positions() == []  # a snapshot moves no stock


def test_a_file_that_changes_encoding_part_way_is_ingested_whole(
    project: Project, mapping_engine: MappingEngine, ledger: Ledger, tmp_path: Path
) -> None:
    header = "doc_no,line_no,order_no,part_no,area,lot,qty,unit,posted_at,operation,note\n"

    def row(doc: str, line: int, lot: str = "L1") -> str:
        return f"{doc},{line},MO-1,P-1001,MOLD-1,{lot},1,kg,2026/11/21 08:30,0010,{'原料' * 600}\n"

    utf8 = header + "".join(row("U", i) for i in range(1, 301))
    assert len(utf8.encode()) > 1 << 20
    path = tmp_path / "mixed.csv"
    path.write_bytes(utf8.encode() + row("G", 1, "批次").encode("gbk") + row("T", 1).encode())
    counts = ingest_records(
        project, ledger, mapping_engine, "mes", "material_consumption", read_raw(path)
    )
    assert counts == {"accepted": 301, "duplicate": 0, "rejected": 0, "parked": 1}
    (parked,) = ledger.parked_records(stage="parse")
    assert parked.line == 302
    assert parked.file == str(path)
    assert "not utf-8" in parked.reason
    assert parked.record.startswith("G,1,MO-1")
    assert len(parked.record) < 20_000  # the row, not the rest of the file
    (problem,) = json.loads(parked.problems)
    assert problem["rule"] == "encoding"
    stock = {(p.material, p.location): p.quantity for p in ledger.positions()}
    assert stock[("RM-1001", "1000/WIP-MOLD")] == Decimal(-301)


def test_unreadable_json_records_are_parked_beside_the_mapped_ones(
    project: Project, mapping_engine: MappingEngine, ledger: Ledger, tmp_path: Path
) -> None:
    move = (
        '{"type": "MOVE", "taskId": "%s", "sku": "SKU-1001", "fromLoc": "WH1-RM", '
        '"toLoc": "WH1-L1", "qty": "5", "uom": "KG", "doneAt": "2026-11-21T07:45:00+08:00"}'
    )
    deep = '{"a":' * 10_000 + "1" + "}" * 10_000
    path = tmp_path / "moves.jsonl"
    path.write_text("\n".join([move % "T-1", deep, move % "T-\\ud800", move % "T-4"]) + "\n")
    counts = ingest_records(
        project, ledger, mapping_engine, "wms", "stock_transfer", read_raw(path)
    )
    assert counts == {"accepted": 2, "duplicate": 0, "rejected": 0, "parked": 2}
    parked = ledger.parked_records(stage="parse")
    assert [p.line for p in parked] == [2, 3]
    assert "nested 10,000 levels deep" in parked[0].reason
    assert "unpaired surrogate" in parked[1].reason
    assert len(parked[0].record) <= (1 << 20) + 100
