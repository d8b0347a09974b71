"""The seeded scenario end to end: SAP's own export through its mapping, a canonical WMS snapshot
and the hub's ledger; the report's counts are exactly the seeded ones, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import hashlib
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from openpyxl import load_workbook

from conveyor.config import Project
from conveyor.ledger import Ledger
from conveyor.reconcile.reference import Reference
from conveyor.reconcile.runs import RunStore
from conveyor.reconcile.service import RunOptions, RunOutcome, run_reconciliation

from .scenario import EXPECTED


def _run(plant: Project, hub: Ledger, reference: Reference, out: Path, **extra: Any) -> RunOutcome:
    files = plant.root / "files"
    options = RunOptions(
        systems=["sap", "wms", "hub"],
        out=out,
        snapshots={"sap": files / "sap_mard.csv", "wms": files / "wms_snapshot.json"},
        runner="alice",
        **extra,
    )
    return run_reconciliation(plant, hub, options, reference=reference)


def _lines(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f"{line['material']}@{line['location']}": line for line in report["lines"]}


def test_seeded_scenario_counts_are_exactly_the_seeded_ones(
    plant: Project, hub: Ledger, reference: Reference, tmp_path: Path
) -> None:
    outcome = _run(plant, hub, reference, tmp_path / "out")
    report = json.loads((tmp_path / "out" / "report.json").read_text(encoding="utf-8"))
    summary = report["summary"]
    for name, expected in EXPECTED.items():
        assert summary[name] == expected, name
    assert report["systems"] == ["sap", "wms", "hub"]
    assert report["lot_level"] is False  # sap does not track lots: material × location
    assert len(report["lines"]) == EXPECTED["lines"]
    lines = _lines(report)
    status = {key: line["status"] for key, line in lines.items()}
    assert status == {
        "RM-1001@1000/RM": "match",
        "RM-1002@1000/RM": "match",
        "RM-1003@1000/RM": "match",
        "RM-1004@1000/RM": "match",
        "RM-2001@1000/WIP-ASSY": "quantity_mismatch",
        "FG-5001@1000/FG": "quantity_mismatch",
        "PK-3001@1000/PK": "match",
        "FG-5002@1000/FG": "missing_in:wms",
        "SF-4001@1000/WIP-MOLD": "missing_in:sap",
        "RM-2002@1000/WIP-ASSY": "missing_in:hub",
        "RM-2003@1000/WIP-ASSY": "quantity_mismatch",
        "RM-1001@1000/WIP-MOLD": "quantity_mismatch",
    }
    assert all(line["lot"] is None for line in report["lines"])
    # lots of the WMS and the hub summed; grams converted to the base unit: no difference
    assert lines["RM-1001@1000/RM"]["quantities"] == {
        "sap": "1250.5",
        "wms": "1250.5",
        "hub": "1250.5",
    }
    assert lines["RM-1002@1000/RM"]["quantities"] == {"sap": "300", "wms": "300", "hub": "300"}
    assert lines["RM-1002@1000/RM"]["uom"] == "KG"
    assert lines["RM-1002@1000/RM"]["variance"] == "0"
    # within tolerance: a match with its variance shown
    assert lines["RM-1003@1000/RM"]["within_tolerance"] is True
    assert lines["RM-1003@1000/RM"]["variance"] == "0.2"
    assert lines["RM-1003@1000/RM"]["variance_value"] == "7"
    # the movement still on its way to the WMS explains the difference beside it
    transit = lines["RM-2003@1000/WIP-ASSY"]
    assert transit["in_transit"] == {"wms": "50"}
    assert transit["explained_by"] == "in_transit"
    assert transit["variance"] == "-50"
    assert lines["RM-2001@1000/WIP-ASSY"]["explained_by"] is None
    # missing rows count as zero for the variance
    assert lines["FG-5002@1000/FG"]["quantities"] == {"sap": "60", "wms": None, "hub": "60"}
    assert lines["FG-5002@1000/FG"]["variance_value"] == "-4320"
    # lines sorted by variance value, largest first
    values = [abs(Decimal(line["variance_value"])) for line in report["lines"]]
    assert values == sorted(values, reverse=True)
    # unmapped rows are listed with where and why, never dropped
    unmapped = {(u["system"], u["line"]): u for u in report["unmapped"]}
    assert set(unmapped) == {("sap", 13), ("wms", 1)}  # file line (the WMS message is line 1)
    assert unmapped[("sap", 13)]["stage"] == "map"
    assert unmapped[("sap", 13)]["problems"][0]["rule"] == "lookup"
    assert "99999999" in unmapped[("sap", 13)]["record"]
    assert unmapped[("wms", 1)]["stage"] == "validate"
    assert unmapped[("wms", 1)]["problems"][0]["field"] == "$.payload.rows[12].quantity"
    assert '"abc"' in unmapped[("wms", 1)]["record"]
    # inputs with their content hashes
    inputs = {i["system"]: i for i in report["inputs"]}
    sap_file = plant.root / "files" / "sap_mard.csv"
    assert inputs["sap"]["sha256"] == hashlib.sha256(sap_file.read_bytes()).hexdigest()
    assert inputs["sap"]["rows"] == 12
    assert inputs["sap"]["mapping_version"]
    assert inputs["wms"]["rows"] == 13
    assert inputs["hub"]["rows"] == 12  # positions, lots apart
    assert outcome.record.summary["lines"] == 12


def test_xlsx_has_the_json_totals_and_formulas_stay_text(
    plant: Project, hub: Ledger, reference: Reference, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    _run(plant, hub, reference, out)
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    summary = report["summary"]
    book = load_workbook(out / "report.xlsx")
    assert book.sheetnames[:2] == ["Summary", "Lines"]
    sheet = book["Summary"]
    values = {row[0].value: row[1].value for row in sheet.iter_rows(min_row=2) if row[0].value}
    assert values["lines"] == summary["lines"]
    assert values["matched"] == summary["matched"]
    assert values["quantity_mismatch"] == summary["quantity_mismatch"]
    for system, count in summary["missing"].items():
        assert values[f"missing_in:{system}"] == count
    assert values["accuracy_pct"] == pytest.approx(summary["accuracy_pct"])
    assert Decimal(str(values["variance_value"])) == Decimal(summary["variance_value"])
    lines = book["Lines"]
    assert lines.freeze_panes == "A2"
    header = [c.value for c in next(lines.iter_rows(max_row=1))]
    rows = [dict(zip(header, (c for c in row), strict=True)) for row in lines.iter_rows(min_row=2)]
    assert len(rows) == summary["lines"]
    by_key = {(r["material"].value, r["location"].value): r for r in rows}
    fg = by_key[("FG-5001", "1000/FG")]
    assert fg["description"].value == '=HYPERLINK("http://evil.example/x","click me")'
    assert fg["description"].data_type == "s"
    assert fg["description"].quotePrefix is True
    assert fg["qty_sap"].value == 120
    assert fg["qty_sap"].number_format == "#,##0.######"
    assert fg["variance_value"].number_format == "#,##0.00"
    total = sum(
        abs(Decimal(str(r["variance_value"].value))) for r in rows if r["variance_value"].value
    )
    assert total == Decimal(summary["variance_value"])


def test_csv_neutralises_formulas_and_html_escapes(
    plant: Project, hub: Ledger, reference: Reference, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    _run(plant, hub, reference, out)
    with (out / "report.csv").open(encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == EXPECTED["lines"]
    fg = next(r for r in rows if r["material"] == "FG-5001")
    assert fg["description"] == '\'=HYPERLINK("http://evil.example/x","click me")'
    assert fg["qty_sap"] == "120"
    assert fg["variance"] == "-2"
    assert not any(
        value.startswith(("=", "+", "@")) for row in rows for value in row.values() if value
    )
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(&#39;carton&#39;)&lt;/script&gt;" in html
    assert "http://" not in html.replace("http://evil.example/x", "")  # nothing loaded from outside
    assert 'http-equiv="Content-Security-Policy"' in html


def test_the_run_is_stored_with_hashes_of_inputs_and_reports(
    plant: Project, hub: Ledger, reference: Reference, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    outcome = _run(plant, hub, reference, out)
    store = RunStore(hub.engine)
    run = store.get(outcome.run_id[:8])
    assert run.run_id == outcome.run_id
    assert run.runner == "alice"
    assert run.accuracy_pct == Decimal("41.67")
    assert run.variance_value == Decimal("7999.7")
    assert run.parameters["tolerance"]["groups"] == {"raw": {"absolute": None, "relative": "1%"}}
    for name, digest in run.reports.items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest
    assert set(run.reports) == {"report.json", "report.csv", "report.xlsx", "report.html"}
    inputs = store.inputs(run)
    assert [i["system"] for i in inputs] == ["sap", "wms", "hub"]
    for item in inputs:
        assert len(item["sha256"]) == 64
        assert item["stored_path"]
        assert Path(item["stored_path"]).is_file()
    # differences stored as lines; exact matches only counted
    lines = store.lines(run)
    assert len(lines) == EXPECTED["lines"] - EXPECTED["exact"]
    assert len(run.unmapped) == 2


def test_lot_level_when_every_system_tracks_lots(
    plant: Project, hub: Ledger, reference: Reference, tmp_path: Path
) -> None:
    options = RunOptions(
        systems=["wms", "hub"],
        out=tmp_path / "out",
        snapshots={"wms": plant.root / "files" / "wms_snapshot.json"},
        runner="alice",
        alerts=False,
    )
    outcome = run_reconciliation(plant, hub, options, reference=reference)
    assert outcome.result.lot_level is True
    lines = {(line.material, line.location, line.lot): line for line in outcome.result.lines()}
    assert lines[("RM-1001", "1000/RM", "L1")].status == "match"
    assert lines[("RM-1001", "1000/RM", "L2")].status == "match"
    assert lines[("FG-5002", "1000/FG", "FG-B2")].status == "missing_in:wms"
    assert lines[("RM-2002", "1000/WIP-ASSY", None)].status == "missing_in:hub"
    transit = lines[("RM-2003", "1000/WIP-ASSY", None)]
    assert transit.in_transit == {"wms": Decimal(50)}
    assert transit.explained_by == "in_transit"
