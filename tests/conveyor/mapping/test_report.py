"""The unmapped-codes report: parked records grouped by table and code, with counts."""

from __future__ import annotations

from conveyor.config import Project
from conveyor.connector import RawRecord
from conveyor.ledger import Ledger
from conveyor.mapping import MappingEngine
from conveyor.mapping.ingest import ingest_records
from conveyor.mapping.report import unmapped_report


def _row(doc: str, part: str, unit: str = "pcs", area: str = "ASSY-1", qty: str = "1") -> RawRecord:
    data = {
        "doc_no": doc,
        "line_no": "1",
        "order_no": "MO-1",
        "part_no": part,
        "area": area,
        "lot": "",
        "qty": qty,
        "unit": unit,
        "posted_at": "2026/11/21 08:30",
    }
    return RawRecord(data, file="consumption.csv", line=int(doc.split("-")[1]) + 1)


def test_codes_grouped_with_counts(
    project: Project, mapping_engine: MappingEngine, ledger: Ledger
) -> None:
    records = [
        _row("C-1", "P-9999"),
        _row("C-2", "P-9999"),
        _row("C-3", "P-9999", unit="crate"),
        _row("C-4", "P-8888", area="ASSY-9"),
        _row("C-5", "P-1001", unit="kg", qty="1.2.3"),
        _row("C-6", "P-1001", unit="kg"),
    ]
    counts = ingest_records(project, ledger, mapping_engine, "mes", "material_consumption", records)
    assert counts == {"accepted": 1, "duplicate": 0, "rejected": 0, "parked": 5}
    report = unmapped_report(ledger)
    assert report.parked_records == 5
    table = [(c.table, c.column, c.code, c.system, c.count) for c in report.codes]
    assert table == [
        ("materials", "mes_part", "P-9999", "mes", 3),
        ("locations", "mes_area", "ASSY-9", "mes", 1),
        ("materials", "mes_part", "P-8888", "mes", 1),
        ("unit_codes", "system+code", "crate", "mes", 1),
    ]
    first = report.codes[0]
    assert first.examples == ["consumption.csv:2", "consumption.csv:3", "consumption.csv:4"]
    assert first.message_types == {"material_consumption"}
    assert "materials.csv" in first.hint
    assert "P-9999" in first.hint
    assert [(o.field, o.rule, o.count) for o in report.other] == [("quantity", "parse.decimal", 1)]
    assert unmapped_report(ledger, system="sap").codes == []
    assert report.as_dict()["codes"][0]["count"] == 3
