"""``report.json``: the machine-readable report, streamed line by line (decimals as text).

Shape: ``{"run_id", "as_of", "systems", "tolerance", "summary", "lines", "unmapped", "inputs"}``
plus ``reference``, ``lot_level``, ``by_location``, ``runner``, ``generated_at``, ``approvals``.
"""

from __future__ import annotations

import json
from json.encoder import encode_basestring
from pathlib import Path
from typing import IO, Any

from conveyor.quantity import format_quantity
from conveyor.reconcile.reports import Report, replacing


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def line_dict(report: Report, line: Any) -> dict[str, Any]:
    """One line as the JSON report has it (with its resolution when there is one)."""
    data: dict[str, Any] = line.as_dict()
    resolution = report.resolution(line)
    if resolution is not None:
        data["resolution"] = resolution
    return data


def write(report: Report, path: Path) -> None:
    """Write ``report.json``."""
    head = {
        "run_id": report.run_id,
        "as_of": report.as_of.isoformat(),
        "systems": report.systems,
        "reference": report.reference,
        "lot_level": report.lot_level,
        "tolerance": report.tolerance,
        "summary": report.summary,
        "by_location": report.by_location,
        "runner": report.runner,
        "generated_at": report.generated_at.isoformat(),
    }
    with replacing(path, "w", encoding="utf-8", newline="\n") as fh:
        fh.write("{\n")
        for name, value in head.items():
            fh.write(f"{_dump(name)}: {_dump(value)},\n")
        fh.write('"lines": [')
        _write_lines(report, fh)
        fh.write("\n],\n")
        if report.omitted_exact:
            fh.write(f'"lines_omitted": {_dump({"exact_matches": report.omitted_exact})},\n')
        fh.write(f'"unmapped": {_dump(report.unmapped)},\n')
        fh.write(f'"inputs": {_dump(report.inputs)},\n')
        fh.write(f'"approvals": {_dump(report.approvals)}\n')
        fh.write("}\n")


def _write_lines(report: Report, fh: IO[str]) -> None:
    separator = "\n"
    buffer: list[str] = []
    for line in report.differences():
        buffer.append(separator + _dump(line_dict(report, line)))
        separator = ",\n"
        if len(buffer) >= 10_000:
            fh.write("".join(buffer))
            buffer.clear()
    if report.exact_line is not None:
        # exact matches: the same shape, written from a template (a million lines stay quick)
        systems = report.systems
        text = encode_basestring
        zero = '"0"'
        for row in report.exact():
            quantity = format_quantity(row.quantity)
            quantities = ", ".join(f"{text(s)}: {text(quantity)}" for s in systems)
            buffer.append(
                f'{separator}{{"material": {text(row.material)}, '
                f'"description": {text(row.description)}, '
                f'"location": {text(row.location)}, '
                f'"lot": {"null" if row.lot is None else text(row.lot)}, '
                f'"uom": {text(row.uom)}, "quantities": {{{quantities}}}, '
                f'"status": "match", "variance": "0", '
                f'"variance_value": {zero if row.costed else "null"}, '
                f'"within_tolerance": true, "tolerance": "0", "explained_by": null}}'
            )
            separator = ",\n"
            if len(buffer) >= 10_000:
                fh.write("".join(buffer))
                buffer.clear()
    fh.write("".join(buffer))
