"""Reconciliation reports: ``report.html``, ``report.xlsx``, ``report.csv`` and ``report.json``.

All four are written from one ``Report`` (a fresh run, or a stored run with its resolutions and
approval). Text that came from outside (codes, descriptions, notes) and starts like a formula —
``=``, ``+``, ``-``, ``@``, their full-width forms (``＝``, ``＋``, ``－``, ``＠``) and small or
minus-sign look-alikes, also after leading whitespace, or a tab / carriage return / line feed —
is neutralised in CSV with a leading apostrophe and kept as a plain, quote-prefixed string cell in
XLSX, so no cell can run a formula; HTML escapes everything (jinja2 autoescape) and loads nothing
from outside the page.

Every file is written under a temporary name in the output folder (created exclusively, never
through a symlink) and moved over the report's name when complete (``os.replace``): a report
being replaced is never seen half written, and a symlink planted at a report's name is replaced,
never followed.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from conveyor.reconcile.lines import ExactRow, Line, Result

FORMULA_SIGNS = "=+-@＝＋－＠﹦﹢﹣﹫−"
"""What starts a formula in some spreadsheet program: ASCII, full-width, small forms, minus."""
_FORMULA = re.compile("^(?:[\t\r\n]|[\\s\u3000\u00a0\ufeff]*[" + re.escape(FORMULA_SIGNS) + "])")
REPORT_FILES = ("report.json", "report.csv", "report.xlsx", "report.html")


def neutralise(text: str | None) -> str:
    """Outside text made safe for a spreadsheet cell (a leading apostrophe when it starts like
    a formula, see ``needs_neutralising``)."""
    if not text:
        return ""
    return "'" + text if _FORMULA.match(text) else text


def needs_neutralising(text: str | None) -> bool:
    """True when ``text`` would start a formula in a spreadsheet: a formula sign (ASCII or
    full-width, see ``FORMULA_SIGNS``) first or after leading whitespace, or a tab, carriage
    return or line feed first."""
    return bool(text) and _FORMULA.match(str(text)) is not None


@contextlib.contextmanager
def replacing(path: Path, mode: str = "w", **options: Any) -> Iterator[IO[Any]]:
    """A file object for a new ``path``: written under a temporary name in the same folder
    (``mkstemp``: created exclusively, never through a symlink) and moved over ``path`` when the
    block ends without an error (``os.replace`` replaces a symlink there, never follows it);
    on an error the temporary file is removed and ``path`` is left as it was."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # as a plain open() would create it
        with os.fdopen(fd, mode, **options) as fh:
            yield fh
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@dataclass
class Report:
    """Everything a report shows."""

    run_id: str
    as_of: datetime
    systems: list[str]
    lot_level: bool
    tolerance: dict[str, Any]
    summary: dict[str, Any]
    by_location: list[dict[str, Any]]
    differences: Callable[[], Iterable[Line]]
    """The lines that are not exact matches, largest variance value first."""
    line_count: int
    unmapped: list[dict[str, Any]]
    inputs: list[dict[str, Any]]
    generated_at: datetime
    runner: str | None = None
    resolutions: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Line key → the line's latest resolution (``resolution``, ``note``, ``by``, ``at``)."""
    approvals: list[dict[str, Any]] = field(default_factory=list)
    omitted_exact: int = 0
    """Exact matches not listed (a stored run keeps only its differences; the original report
    files, whose hashes the run holds, list them all)."""
    report_hashes: dict[str, str] = field(default_factory=dict)
    exact: Callable[[], Iterator[ExactRow]] = field(default=lambda: iter(()))
    """The exact matches in brief, by key (after the differences)."""
    exact_line: Callable[[ExactRow], Line] | None = None

    def lines(self) -> Iterator[Line]:
        """Every line: the differences, then the exact matches."""
        yield from self.differences()
        if self.exact_line is not None:
            for row in self.exact():
                yield self.exact_line(row)

    @property
    def reference(self) -> str:
        """The reference system (the first)."""
        return self.systems[0]

    def resolution(self, line: Line) -> dict[str, Any] | None:
        """The latest resolution of ``line``, if any."""
        return self.resolutions.get(line.key)


def report_from_result(
    result: Result,
    *,
    run_id: str,
    as_of: datetime,
    inputs: list[dict[str, Any]],
    generated_at: datetime,
    runner: str | None = None,
) -> Report:
    """The report of a fresh run."""
    return Report(
        run_id=run_id,
        as_of=as_of,
        systems=list(result.systems),
        lot_level=result.lot_level,
        tolerance=result.tolerance.as_dict(),
        summary=result.summary.as_dict(),
        by_location=[s.as_dict() for s in result.by_location],
        differences=lambda: iter(result.exceptions),
        line_count=result.summary.lines,
        unmapped=[u.as_dict() for u in result.unmapped],
        inputs=inputs,
        generated_at=generated_at,
        runner=runner,
        exact=result.exact_rows,
        exact_line=result.exact_line,
    )


def write_reports(
    report: Report,
    out: Path,
    *,
    html_lines: int = 2000,
    xlsx_lines: int = 100_000,
    formats: tuple[str, ...] = ("json", "csv", "xlsx", "html"),
) -> dict[str, str]:
    """Write the reports into ``out``; returns each file's name → sha256."""
    from conveyor.reconcile.reports import csv_report, html_report, json_report, xlsx_report

    out.mkdir(parents=True, exist_ok=True)
    writers: dict[str, Callable[[], None]] = {
        "json": lambda: json_report.write(report, out / "report.json"),
        "csv": lambda: csv_report.write(report, out / "report.csv"),
        "xlsx": lambda: xlsx_report.write(report, out / "report.xlsx", max_lines=xlsx_lines),
        "html": lambda: html_report.write(report, out / "report.html", max_lines=html_lines),
    }
    hashes: dict[str, str] = {}
    for name in formats:
        writers[name]()
        path = out / f"report.{name}"
        with os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW), "rb") as fh:
            hashes[path.name] = hashlib.file_digest(fh, "sha256").hexdigest()
    return hashes


def line_columns(report: Report) -> list[str]:
    """Column headings of a lines table (CSV, XLSX)."""
    return [
        "material",
        "description",
        "location",
        "lot",
        "uom",
        *(f"qty_{s}" for s in report.systems),
        "status",
        "variance",
        "variance_value",
        "within_tolerance",
        "tolerance",
        "in_transit",
        "explained_by",
        "resolution",
        "resolution_note",
        "resolved_by",
    ]


def tolerance_text(tolerance: dict[str, Any]) -> str:
    """``0.5 or 1% (group raw: 2%; M-1: exact)`` — a tolerance for people."""

    def rule(r: dict[str, Any]) -> str:
        parts = [p for p in (r.get("absolute"), r.get("relative")) if p]
        return " or ".join(parts) or "exact"

    text = rule(tolerance.get("default", {}))
    scoped = [f"group {name}: {rule(r)}" for name, r in tolerance.get("groups", {}).items()]
    scoped += [f"{code}: {rule(r)}" for code, r in tolerance.get("materials", {}).items()]
    return text + (" (" + "; ".join(scoped) + ")" if scoped else "")


def transit_text(line: Line) -> str:
    """``wms: 5; sap: 5`` — the in-transit quantities of a line."""
    from conveyor.quantity import format_quantity

    return "; ".join(f"{s}: {format_quantity(q)}" for s, q in line.in_transit.items())
