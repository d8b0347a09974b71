"""``report.xlsx``: a Summary sheet (run, totals, inputs, accuracy by location) and a Lines sheet
(frozen header, filters, number formats), plus Unmapped rows. Written in openpyxl's write-only
mode (constant memory). Lines come largest variance value first; past ``max_lines`` (default
100,000 — openpyxl writes some thousands of rows a second, far below Excel's 1,048,576-row limit)
the sheet stops and says so: ``report.csv`` and ``report.json`` always hold every line.

Outside text is written as a string cell with Excel's quote prefix when it starts like a formula:
the cell shows the text and never evaluates it.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import Cell
from openpyxl.styles import Font, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.worksheet._write_only import WriteOnlyWorksheet

from conveyor.quantity import parse_quantity
from conveyor.reconcile.reports import (
    Report,
    line_columns,
    needs_neutralising,
    replacing,
    tolerance_text,
    transit_text,
)

QUANTITY_FORMAT = "#,##0.######"
VALUE_FORMAT = "#,##0.00"
PERCENT_FORMAT = '0.00" %"'
MAX_LINES = 100_000
EXCEL_ROWS = 1_048_576


HEADER_FONT = Font(bold=True, color="FFFFFF")
HEADER_FILL = PatternFill("solid", fgColor="1F4E79")
BOLD = Font(bold=True)
NUMBER_FORMATS = {"quantity": QUANTITY_FORMAT, "value": VALUE_FORMAT, "percent": PERCENT_FORMAT}


class _Cells:
    """Cell factory for one write-only sheet."""

    def __init__(self, ws: WriteOnlyWorksheet) -> None:
        self.ws = ws

    def styled(self, value: Any, style: str) -> Cell:
        """A cell with a number format (quantity, value, percent), or a header or bold label."""
        cell = WriteOnlyCell(self.ws, value=value)
        if style in NUMBER_FORMATS:
            cell.number_format = NUMBER_FORMATS[style]
        elif style == "header":
            cell.font = HEADER_FONT
            cell.fill = HEADER_FILL
        else:
            cell.font = BOLD
        return cell

    def text(self, value: str | None) -> Any:
        """Outside text: plain, or a quote-prefixed string cell when it looks like a formula."""
        if not value:
            return value or None
        if not needs_neutralising(value):
            return value
        cell = WriteOnlyCell(self.ws, value=value)
        cell.data_type = "s"  # never "f": the text is shown, not evaluated
        cell.quotePrefix = True
        return cell

    def number(self, value: Decimal | None, style: str = "quantity") -> Any:
        """A number cell (None stays empty)."""
        return None if value is None else self.styled(value, style)


def write(report: Report, path: Path, *, max_lines: int = MAX_LINES) -> None:
    """Write ``report.xlsx``."""
    max_lines = min(max_lines, EXCEL_ROWS - 2)
    wb = Workbook(write_only=True)
    listed = min(report.line_count, max_lines)
    _summary_sheet(wb, report, listed)
    _lines_sheet(wb, report, listed)
    _unmapped_sheet(wb, report)
    with replacing(path, "wb") as fh:
        wb.save(fh)


def _summary_sheet(wb: Workbook, report: Report, listed: int) -> None:
    ws = wb.create_sheet("Summary")
    cells = _Cells(ws)
    ws.column_dimensions["A"].width = 28
    ws.column_dimensions["B"].width = 22
    for letter in "CDEFG":
        ws.column_dimensions[letter].width = 16
    ws.freeze_panes = "A2"
    summary = report.summary
    ws.append([cells.styled("Stock reconciliation", "header"), cells.styled("", "header")])
    rows: list[tuple[str, Any]] = [
        ("run", report.run_id),
        ("as of", report.as_of.isoformat()),
        ("systems", ", ".join(report.systems)),
        ("reference system", report.reference),
        (
            "compared per",
            "material × location × lot" if report.lot_level else "material × location",
        ),
        ("tolerance", tolerance_text(report.tolerance)),
        ("run by", report.runner or ""),
        ("generated at", report.generated_at.isoformat()),
        ("lines", summary["lines"]),
        ("matched", summary["matched"]),
        ("  of which exact", summary.get("exact")),
        ("  of which within tolerance", summary.get("within_tolerance")),
        ("quantity_mismatch", summary["quantity_mismatch"]),
    ]
    rows += [(f"missing_in:{s}", n) for s, n in summary["missing"].items()]
    rows += [
        ("explained by in-transit movements", summary.get("explained_in_transit")),
        ("unexplained differences", summary.get("unexplained")),
    ]
    for label, value in rows:
        ws.append(
            [cells.styled(label, "bold"), cells.text(value) if isinstance(value, str) else value]
        )
    ws.append(
        [
            cells.styled("accuracy_pct", "bold"),
            None
            if summary["accuracy_pct"] is None
            else cells.styled(summary["accuracy_pct"], "percent"),
        ]
    )
    ws.append(
        [
            cells.styled("variance_value", "bold"),
            cells.styled(parse_quantity(summary["variance_value"]), "value"),
        ]
    )
    ws.append([cells.styled("unmapped rows", "bold"), len(report.unmapped)])
    ws.append([cells.styled("lines listed in this workbook", "bold"), listed])
    if listed < report.line_count:
        ws.append(
            [
                None,
                f"the other {report.line_count - listed} lines (smallest variance) are "
                "in report.csv and report.json",
            ]
        )
    if report.omitted_exact:
        ws.append(
            [
                None,
                f"{report.omitted_exact} exact matches are listed in the run's original "
                "report files",
            ]
        )
    for approval in report.approvals:
        ws.append(
            [
                cells.styled("approved by", "bold"),
                cells.text(approval.get("approver")),
                approval.get("at"),
                cells.text(approval.get("note")),
            ]
        )
    ws.append([])
    ws.append(
        [
            cells.styled(h, "header")
            for h in (
                "location",
                "lines",
                "matched",
                "mismatch",
                "missing",
                "accuracy_pct",
                "variance_value",
            )
        ]
    )
    for loc in report.by_location:
        ws.append(
            [
                cells.text(loc["location"]),
                loc["lines"],
                loc["matched"],
                loc["quantity_mismatch"],
                loc["missing"],
                None
                if loc["accuracy_pct"] is None
                else cells.styled(loc["accuracy_pct"], "percent"),
                cells.styled(parse_quantity(loc["variance_value"]), "value"),
            ]
        )
    ws.append([])
    ws.append(
        [
            cells.styled(h, "header")
            for h in ("input system", "source", "sha256", "rows", "unmapped", "as_of")
        ]
    )
    for item in report.inputs:
        ws.append(
            [
                cells.text(item.get("system")),
                cells.text(item.get("source")),
                item.get("sha256"),
                item.get("rows"),
                item.get("unmapped"),
                item.get("as_of"),
            ]
        )


def _lines_sheet(wb: Workbook, report: Report, listed: int) -> None:
    ws = wb.create_sheet("Lines")
    cells = _Cells(ws)
    columns = line_columns(report)
    widths = {
        "material": 16,
        "description": 30,
        "location": 14,
        "lot": 12,
        "uom": 6,
        "status": 22,
        "in_transit": 20,
        "resolution_note": 30,
    }
    for index, name in enumerate(columns, start=1):
        ws.column_dimensions[get_column_letter(index)].width = widths.get(name, 14)
    ws.freeze_panes = "A2"
    ws.auto_filter.ref = f"A1:{get_column_letter(len(columns))}{listed + 1}"
    ws.append([cells.styled(name, "header") for name in columns])
    for count, line in enumerate(report.lines()):
        if count >= listed:
            break
        resolution = report.resolution(line) or {}
        ws.append(
            [
                cells.text(line.material),
                cells.text(line.description),
                cells.text(line.location),
                cells.text(line.lot),
                cells.text(line.uom),
                *(cells.number(line.quantities.get(s)) for s in report.systems),
                line.status,
                cells.number(line.variance),
                cells.number(line.variance_value, "value"),
                "yes" if line.within_tolerance else "no",
                line.tolerance,
                cells.text(transit_text(line)),
                line.explained_by,
                resolution.get("resolution"),
                cells.text(resolution.get("note")),
                cells.text(resolution.get("by")),
            ]
        )


def _unmapped_sheet(wb: Workbook, report: Report) -> None:
    ws = wb.create_sheet("Unmapped")
    cells = _Cells(ws)
    ws.freeze_panes = "A2"
    for letter, width in zip("ABCDEF", (12, 30, 8, 10, 60, 60), strict=True):
        ws.column_dimensions[letter].width = width
    ws.append(
        [
            cells.styled(h, "header")
            for h in ("system", "source", "line", "stage", "reason", "record")
        ]
    )
    for item in report.unmapped:
        ws.append(
            [
                cells.text(item.get("system")),
                cells.text(item.get("source")),
                item.get("line"),
                item.get("stage"),
                cells.text(item.get("reason")),
                cells.text(item.get("record")),
            ]
        )
