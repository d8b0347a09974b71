"""``report.html``: one self-contained page for an auditor (no external URL, inline CSS, SVG chart
and a few lines of JavaScript for the filters; jinja2 with autoescape, a Content-Security-Policy
that forbids loading anything). The summary sits at the top, then accuracy and variance by
location with a chart, then the lines by variance value (the first ``max_lines``; the CSV and
JSON reports hold every line), unmapped rows and the inputs with their hashes."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape

from conveyor.quantity import format_quantity, parse_quantity
from conveyor.reconcile.reports import Report, replacing, tolerance_text, transit_text

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
CHART_BARS = 12


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["qty"] = format_number
    env.filters["money"] = format_money
    env.filters["pct"] = format_percent
    return env


def format_number(value: Decimal | int | str | None) -> str:
    """``1234.5`` → ``1,234.5`` (exact: no digit is lost)."""
    if value is None or value == "":
        return ""
    number = parse_quantity(value)
    text = format_quantity(number)
    sign = "-" if text.startswith("-") else ""
    whole, _, fraction = text.lstrip("-").partition(".")
    grouped = f"{int(whole):,}"
    return sign + grouped + ("." + fraction if fraction else "")


def format_money(value: Decimal | int | str | None) -> str:
    """A value rounded to cents with thousands separators."""
    if value is None or value == "":
        return "–"
    number = parse_quantity(value)
    return f"{number.quantize(Decimal('0.01'), ROUND_HALF_UP):,}"


def format_percent(value: float | None) -> str:
    """``97.5`` → ``97.50 %``."""
    return "–" if value is None else f"{value:.2f} %"


def chart(report: Report) -> dict[str, Any]:
    """Bars for the locations with the largest variance value (or most differences when no
    value is known), with each location's accuracy."""
    rows = report.by_location
    valued = any(parse_quantity(r["variance_value"]) for r in rows)

    def measure(row: dict[str, Any]) -> Decimal:
        if valued:
            return parse_quantity(row["variance_value"])
        return Decimal(int(row["quantity_mismatch"]) + int(row["missing"]))

    top = sorted(rows, key=lambda r: (-measure(r), r["location"]))[:CHART_BARS]
    peak = max((measure(r) for r in top), default=Decimal(0)) or Decimal(1)
    bars = [
        {
            "label": r["location"],
            "width": float(measure(r) / peak * 100),
            "text": format_money(measure(r)) if valued else f"{measure(r)} lines",
            "accuracy": r["accuracy_pct"],
        }
        for r in top
    ]
    return {"bars": bars, "measure": "variance value" if valued else "differences"}


def write(report: Report, path: Path, *, max_lines: int = 2000) -> None:
    """Write ``report.html``."""
    lines = []
    for index, line in enumerate(report.lines()):
        if index >= max_lines:
            break
        lines.append(
            {
                "line": line,
                "transit": transit_text(line),
                "resolution": report.resolution(line),
                "kind": (
                    "missing"
                    if line.status.startswith("missing_in:")
                    else ("mismatch" if line.status == "quantity_mismatch" else "match")
                ),
            }
        )
    summary = report.summary
    statuses = ["match", "quantity_mismatch"] + [f"missing_in:{s}" for s in report.systems]
    html = (
        _environment()
        .get_template("report.html.j2")
        .render(
            report=report,
            summary=summary,
            lines=lines,
            listed=len(lines),
            statuses=statuses,
            locations=sorted(r["location"] for r in report.by_location),
            chart=chart(report),
            tolerance=tolerance_text(report.tolerance),
        )
    )
    with replacing(path, "w", encoding="utf-8") as fh:
        fh.write(html)
