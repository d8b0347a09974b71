"""``report.xlsx``: Summary, Lines and Unmapped sheets, number formats, frozen headers, filters,
formula-looking text kept as text, and a line limit that says where the rest is."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from openpyxl import load_workbook

from conveyor.reconcile.compare import Comparison
from conveyor.reconcile.reports import Report, report_from_result
from conveyor.reconcile.reports.xlsx_report import write
from conveyor.reconcile.sources import Chunk, Unmapped


def _report(rows: int = 6) -> Report:
    comparison = Comparison(["erp", "wms"])
    comparison.add(
        "erp",
        Chunk(
            [(f"M{i}", "L1", "", f"{i}.5", "KG", "@SUM(A1)" if i == 0 else "") for i in range(rows)]
        ),
    )
    comparison.add("wms", Chunk([(f"M{i}", "L1", "", f"{i % 3}.5", "KG", "") for i in range(rows)]))
    comparison.unmapped.append(
        Unmapped("wms", "wms.csv", 9, "validate", "bad", [], '{"material": "=cmd|x"}')
    )
    return report_from_result(
        comparison.result(),
        run_id="run-x",
        as_of=datetime(2026, 11, 21, 10, tzinfo=UTC),
        inputs=[{"system": "erp", "source": "+erp.csv", "sha256": "ab" * 32, "rows": rows}],
        generated_at=datetime.now(UTC),
        runner="-alice",
    )


def _cells(sheet: Any) -> dict[str, Any]:
    return {row[0].value: row[1] for row in sheet.iter_rows() if row[0].value}


def test_workbook_sheets_formats_and_totals(tmp_path: Path) -> None:
    report = _report()
    write(report, tmp_path / "r.xlsx")
    book = load_workbook(tmp_path / "r.xlsx")
    assert book.sheetnames == ["Summary", "Lines", "Unmapped"]
    summary = _cells(book["Summary"])
    assert summary["lines"].value == 6
    assert summary["matched"].value == report.summary["matched"]
    assert summary["accuracy_pct"].value == report.summary["accuracy_pct"]
    assert summary["accuracy_pct"].number_format == '0.00" %"'
    assert summary["run by"].value == "-alice"
    assert summary["run by"].data_type == "s"
    assert book["Summary"].freeze_panes == "A2"
    lines = book["Lines"]
    assert lines.freeze_panes == "A2"
    assert lines.auto_filter.ref.startswith("A1:")
    header = [c.value for c in lines[1]]
    assert header[:7] == ["material", "description", "location", "lot", "uom", "qty_erp", "qty_wms"]
    first = {h: c for h, c in zip(header, lines[2], strict=True)}
    assert first["qty_erp"].number_format == "#,##0.######"
    assert isinstance(first["variance"].value, int | float)
    m0 = next(r for r in lines.iter_rows(min_row=2) if r[0].value == "M0")
    assert m0[1].value == "@SUM(A1)"
    assert m0[1].data_type == "s"
    assert m0[1].quotePrefix
    unmapped = book["Unmapped"]
    record = [c for c in unmapped[2]]
    assert record[5].value == '{"material": "=cmd|x"}'
    assert record[5].data_type == "s"
    inputs = [r for r in book["Summary"].iter_rows() if r[0].value == "erp"]
    assert inputs[0][1].value == "+erp.csv"
    assert inputs[0][1].data_type == "s"


def test_line_limit_lists_the_largest_and_says_where_the_rest_is(tmp_path: Path) -> None:
    report = _report(rows=30)
    write(report, tmp_path / "r.xlsx", max_lines=5)
    book = load_workbook(tmp_path / "r.xlsx")
    lines = list(book["Lines"].iter_rows(min_row=2, values_only=True))
    assert len(lines) == 5
    summary = _cells(book["Summary"])
    assert summary["lines listed in this workbook"].value == 5
    texts = [r[1] for r in book["Summary"].iter_rows(values_only=True) if r[0] is None and r[1]]
    assert any("25 lines" in str(t) and "report.csv" in str(t) for t in texts)
    variances = [abs(Decimal(str(r[8]))) for r in lines]
    assert variances == sorted(variances, reverse=True)


def test_full_width_and_spaced_formulas_stay_text_in_xlsx(tmp_path: Path) -> None:
    texts = ["＝HYPERLINK(1)", "＋1", "－2", "＠SUM(A1)", " =1", "\u3000＝1", "\t@x"]
    comparison = Comparison(["erp", "wms"])
    comparison.add(
        "erp", Chunk([(f"M{i}", "L1", "", "1", "KG", text) for i, text in enumerate(texts)])
    )
    report = report_from_result(
        comparison.result(),
        run_id="r",
        as_of=datetime(2026, 11, 21, tzinfo=UTC),
        inputs=[],
        generated_at=datetime.now(UTC),
        runner="＝alice",
    )
    write(report, tmp_path / "r.xlsx")
    book = load_workbook(tmp_path / "r.xlsx")
    cells = {r[0].value: r[1] for r in book["Lines"].iter_rows(min_row=2)}
    for i, text in enumerate(texts):
        cell = cells[f"M{i}"]
        assert (cell.value, cell.data_type, cell.quotePrefix) == (text, "s", True)
    run_by = _cells(book["Summary"])["run by"]
    assert (run_by.value, run_by.quotePrefix) == ("＝alice", True)
