"""``report.json``: the documented shape, decimals as exact text, streamed and still valid."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from conveyor.reconcile.compare import Comparison
from conveyor.reconcile.reports import report_from_result
from conveyor.reconcile.reports.json_report import write
from conveyor.reconcile.sources import Chunk


def test_shape_and_exact_decimals(tmp_path: Path) -> None:
    comparison = Comparison(["erp", "wms", "hub"])
    rows = [(f"M{i}", "L1", "A", f"{i}.000000000001", "KG", "") for i in range(25_000)]
    comparison.add("erp", Chunk(rows))
    comparison.add("wms", Chunk(rows[:-1]))
    comparison.add("hub", Chunk([*rows[:-2], ("M1", "L1", "B", "0.1", "KG", "")]))
    report = report_from_result(
        comparison.result(),
        run_id="run-1",
        as_of=datetime(2026, 11, 21, 10, tzinfo=UTC),
        inputs=[{"system": "erp", "source": "erp.csv", "sha256": "0" * 64, "rows": 25_000}],
        generated_at=datetime.now(UTC),
    )
    path = tmp_path / "report.json"
    write(report, path)
    data = json.loads(path.read_text(encoding="utf-8"))
    for key in (
        "run_id",
        "as_of",
        "systems",
        "tolerance",
        "summary",
        "lines",
        "unmapped",
        "inputs",
    ):
        assert key in data
    assert data["systems"] == ["erp", "wms", "hub"]
    summary = data["summary"]
    for key in (
        "lines",
        "matched",
        "quantity_mismatch",
        "missing",
        "accuracy_pct",
        "variance_value",
    ):
        assert key in summary
    assert summary["lines"] == len(data["lines"]) == 25_001
    assert summary["missing"] == {"erp": 1, "wms": 2, "hub": 2}
    line = data["lines"][-1]
    assert set(line) >= {
        "material",
        "location",
        "lot",
        "uom",
        "quantities",
        "status",
        "variance",
        "variance_value",
    }
    assert line["quantities"]["erp"] == line["quantities"]["hub"]
    assert line["quantities"]["erp"].endswith(".000000000001")  # no float anywhere
    assert data["inputs"][0]["sha256"] == "0" * 64
