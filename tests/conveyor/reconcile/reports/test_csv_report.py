"""``report.csv``: one row per line, UTF-8 with BOM, formula-looking outside text neutralised."""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path

import pytest

from conveyor.reconcile.compare import Comparison
from conveyor.reconcile.reports import needs_neutralising, neutralise, report_from_result
from conveyor.reconcile.reports.csv_report import write
from conveyor.reconcile.sources import Chunk


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('=HYPERLINK("http://x")', '\'=HYPERLINK("http://x")'),
        ("+1+1", "'+1+1"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("＝1+1", "'＝1+1"),
        ("＋1", "'＋1"),
        ("－1", "'－1"),
        ("＠SUM(A1)", "'＠SUM(A1)"),
        (" =1+1", "' =1+1"),
        ("  ＝1", "'  ＝1"),
        ("\u3000＠x", "'\u3000＠x"),
        ("\n=1", "'\n=1"),
        ("\r=1", "'\r=1"),
        ("﹦1", "'﹦1"),
        ("−1", "'−1"),
        (" plain", " plain"),
        ("a=1", "a=1"),
        ("plain", "plain"),
        ("", ""),
        (None, ""),
    ],
)
def test_neutralise(text: str | None, expected: str) -> None:
    assert neutralise(text) == expected
    assert needs_neutralising(text) == (expected != (text or ""))


def test_every_line_with_neutralised_text_and_plain_numbers(tmp_path: Path) -> None:
    comparison = Comparison(["erp", "wms"])
    comparison.add(
        "erp",
        Chunk([("-M1", "L1", "=lot", "-5", "KG", "+desc"), ("M2", "L1", "", "1", "KG", "")]),
    )
    comparison.add("wms", Chunk([("-M1", "L1", "=lot", "-4.5", "KG", "")]))
    report = report_from_result(
        comparison.result(),
        run_id="r",
        as_of=datetime.now(UTC),
        inputs=[],
        generated_at=datetime.now(UTC),
    )
    path = tmp_path / "report.csv"
    write(report, path)
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    with path.open(encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2
    first = next(r for r in rows if r["material"] == "'-M1")
    assert (first["lot"], first["description"]) == ("'=lot", "'+desc")
    assert (first["qty_erp"], first["qty_wms"], first["variance"]) == ("-5", "-4.5", "0.5")
    missing = next(r for r in rows if r["material"] == "M2")
    assert (missing["qty_wms"], missing["status"]) == ("", "missing_in:wms")


FORMULA_LOOKING = ["＝HYPERLINK(1)", "＋1", "－2", "＠SUM(A1)", " =1", "\u3000＝1", "\t@x"]


def test_full_width_and_spaced_formulas_are_neutralised_in_csv(tmp_path: Path) -> None:
    comparison = Comparison(["erp", "wms"])
    rows = [(f"M{i}", text, "", "1", "KG", text) for i, text in enumerate(FORMULA_LOOKING)]
    comparison.add("erp", Chunk(rows))
    report = report_from_result(
        comparison.result(),
        run_id="r",
        as_of=datetime(2026, 11, 21, tzinfo=UTC),
        inputs=[],
        generated_at=datetime.now(UTC),
    )
    write(report, tmp_path / "report.csv")
    with (tmp_path / "report.csv").open(encoding="utf-8-sig", newline="") as fh:
        written = {row["material"]: row for row in csv.DictReader(fh)}
    for i, text in enumerate(FORMULA_LOOKING):
        assert written[f"M{i}"]["location"] == "'" + text
        assert written[f"M{i}"]["description"] == "'" + text
