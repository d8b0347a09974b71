"""``report.csv``: every line, one row each, UTF-8 with BOM (so spreadsheet programs read it
as UTF-8); outside text is neutralised against formulas."""

from __future__ import annotations

import csv
from pathlib import Path

from conveyor.quantity import format_quantity
from conveyor.reconcile.reports import (
    Report,
    line_columns,
    neutralise,
    replacing,
    transit_text,
)


def write(report: Report, path: Path) -> None:
    """Write ``report.csv``."""
    with replacing(path, "w", encoding="utf-8-sig", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(line_columns(report))
        rows: list[list[str]] = []
        for line in report.differences():
            resolution = report.resolution(line) or {}
            rows.append(
                [
                    neutralise(line.material),
                    neutralise(line.description),
                    neutralise(line.location),
                    neutralise(line.lot),
                    neutralise(line.uom),
                    *(
                        "" if (q := line.quantities.get(s)) is None else format_quantity(q)
                        for s in report.systems
                    ),
                    line.status,
                    format_quantity(line.variance),
                    "" if line.variance_value is None else format_quantity(line.variance_value),
                    "yes" if line.within_tolerance else "no",
                    line.tolerance,
                    neutralise(transit_text(line)),
                    line.explained_by or "",
                    resolution.get("resolution", ""),
                    neutralise(resolution.get("note")),
                    neutralise(resolution.get("by")),
                ]
            )
            if len(rows) >= 10_000:
                writer.writerows(rows)
                rows.clear()
        if report.exact_line is not None:
            systems = len(report.systems)
            for row in report.exact():  # exact matches, straight from their brief rows
                quantity = format_quantity(row.quantity)
                rows.append(
                    [
                        neutralise(row.material),
                        neutralise(row.description),
                        neutralise(row.location),
                        neutralise(row.lot),
                        neutralise(row.uom),
                        *([quantity] * systems),
                        "match",
                        "0",
                        "0" if row.costed else "",
                        "yes",
                        "0",
                        "",
                        "",
                        "",
                        "",
                        "",
                    ]
                )
                if len(rows) >= 10_000:
                    writer.writerows(rows)
                    rows.clear()
        writer.writerows(rows)
