"""Stored runs: append-only on both dialects, resolutions and approvals by someone other than
the runner, history with the accuracy trend, and the report of a stored run."""

from __future__ import annotations

import csv
import json
from decimal import Decimal
from pathlib import Path

import pytest
from openpyxl import load_workbook
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from conveyor.config import Project
from conveyor.ledger import Ledger
from conveyor.reconcile.models import APPEND_ONLY_TABLES
from conveyor.reconcile.reference import NoReference
from conveyor.reconcile.reports import write_reports
from conveyor.reconcile.runs import RunError, RunStore
from conveyor.reconcile.service import RunOptions, RunOutcome, run_reconciliation

HEADER = "material,location,lot,quantity,uom,description\n"
ERP = HEADER + "M1,L1,,10,KG,\nM2,L1,,5,KG,=1+1\nM3,L2,,7,KG,\nM4,L2,,1,KG,\n"
WMS = HEADER + "M1,L1,,10,KG,\nM2,L1,,4,KG,\nM4,L2,,1,KG,\nM5,L2,,2,KG,\n"


def make_run(tmp_path: Path, ledger: Ledger, erp: str, wms: str, name: str) -> RunOutcome:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "erp.csv").write_text(erp, encoding="utf-8")
    (folder / "wms.csv").write_text(wms, encoding="utf-8")
    options = RunOptions(
        systems=["erp", "wms"],
        out=folder / "out",
        snapshots={"erp": folder / "erp.csv", "wms": folder / "wms.csv"},
        runner="alice",
        alerts=False,
    )
    return run_reconciliation(Project(root=tmp_path), ledger, options, reference=NoReference())


@pytest.fixture
def run(tmp_path: Path, ledger: Ledger) -> RunOutcome:
    """A stored run: M1 and M4 match, M2 differs, M3 is missing in wms, M5 in erp."""
    return make_run(tmp_path, ledger, ERP, WMS, "first")


def test_run_tables_refuse_update_and_delete(run: RunOutcome, ledger: Ledger) -> None:
    store = RunStore(ledger.engine)
    store.resolve(
        run.run_id,
        material="M2",
        location="L1",
        lot=None,
        resolution="counting_error",
        note="recounted",
        by="bob",
    )
    store.resolve(
        run.run_id,
        material="M3",
        location="L2",
        lot=None,
        resolution="posting_error",
        note="transfer not posted",
        by="bob",
    )
    store.resolve(
        run.run_id,
        material="M5",
        location="L2",
        lot=None,
        resolution="timing_difference",
        note="arrived late",
        by="bob",
    )
    store.approve(run.run_id, approver="carol")
    for table in APPEND_ONLY_TABLES:
        with ledger.engine.connect() as conn:
            assert conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one() > 0, table
        with pytest.raises(DBAPIError, match="append-only"), ledger.engine.begin() as conn:
            conn.execute(text(f"UPDATE {table} SET id = id"))
        with pytest.raises(DBAPIError, match="append-only"), ledger.engine.begin() as conn:
            conn.execute(text(f"DELETE FROM {table}"))
    assert store.get(run.run_id).runner == "alice"


def test_resolutions_are_appended_and_the_latest_counts(run: RunOutcome, ledger: Ledger) -> None:
    store = RunStore(ledger.engine)
    with pytest.raises(RunError, match="ran this reconciliation"):
        store.resolve(
            run.run_id,
            material="M2",
            location="L1",
            lot=None,
            resolution="counting_error",
            note="x",
            by="alice",
        )
    with pytest.raises(RunError, match="one of"):
        store.resolve(
            run.run_id,
            material="M2",
            location="L1",
            lot=None,
            resolution="shrug",
            note="x",
            by="bob",
        )
    with pytest.raises(RunError, match="no differing line"):
        store.resolve(
            run.run_id,
            material="M1",
            location="L1",
            lot=None,
            resolution="open",
            note="x",
            by="bob",
        )
    with pytest.raises(RunError, match="note"):
        store.resolve(
            run.run_id,
            material="M2",
            location="L1",
            lot=None,
            resolution="open",
            note=" ",
            by="bob",
        )
    first = store.resolve(
        run.run_id,
        material="M2",
        location="L1",
        lot=None,
        resolution="open",
        note="looking into it",
        by="bob",
    )
    assert first["status"] == "quantity_mismatch"
    store.resolve(
        run.run_id,
        material="M2",
        location="L1",
        lot=None,
        resolution="counting_error",
        note="recounted: 4 is right",
        by="dave",
    )
    record = store.get(run.run_id)
    latest = store.resolutions(record)
    assert next(iter(latest.values()))["resolution"] == "counting_error"
    assert next(iter(latest.values()))["by"] == "dave"
    history = store.resolutions(record, history=True)
    assert [e["resolution"] for e in next(iter(history.values()))["history"]] == [
        "open",
        "counting_error",
    ]


def test_approval_needs_another_person_and_closed_differences(
    run: RunOutcome, ledger: Ledger
) -> None:
    store = RunStore(ledger.engine)
    with pytest.raises(RunError, match="cannot approve"):
        store.approve(run.run_id, approver="alice")
    with pytest.raises(RunError, match="3 difference"):
        store.approve(run.run_id, approver="carol")
    store.resolve(
        run.run_id,
        material="M2",
        location="L1",
        lot=None,
        resolution="open",
        note="?",
        by="bob",
    )
    with pytest.raises(RunError, match="3 difference"):
        store.approve(run.run_id, approver="carol")  # open is not closing
    approval = store.approve(run.run_id, approver="carol", note="ok for now", allow_open=True)
    assert approval["open_lines"] == 3
    with pytest.raises(RunError, match="already approved by carol"):
        store.approve(run.run_id, approver="erin", allow_open=True)
    assert store.approvals(store.get(run.run_id))[0]["approver"] == "carol"


def test_history_shows_accuracy_over_time(tmp_path: Path, ledger: Ledger) -> None:
    first = make_run(tmp_path, ledger, ERP, WMS, "first")
    second = make_run(tmp_path, ledger, ERP, ERP, "second")
    store = RunStore(ledger.engine)
    runs = store.history()
    assert [r["run_id"] for r in runs] == [second.run_id, first.run_id]
    assert runs[1]["accuracy_pct"] == Decimal("40")  # 2 of 5 lines
    assert runs[0]["accuracy_pct"] == Decimal("100")
    assert runs[0]["accuracy_change"] == Decimal("60")
    assert runs[1]["accuracy_change"] is None
    assert store.history(system="sap") == []
    assert store.count() == 2


def test_find_a_run_by_prefix(run: RunOutcome, ledger: Ledger) -> None:
    store = RunStore(ledger.engine)
    assert store.get(run.run_id[:6]).run_id == run.run_id
    with pytest.raises(RunError, match="no reconciliation run"):
        store.get("ffffffff-nope")
    with pytest.raises(RunError, match="give a run id"):
        store.get(" ")


def test_report_of_a_stored_run_shows_resolutions_and_approval(
    run: RunOutcome, ledger: Ledger, tmp_path: Path
) -> None:
    store = RunStore(ledger.engine)
    store.resolve(
        run.run_id,
        material="M2",
        location="L1",
        lot=None,
        resolution="counting_error",
        note='=HYPERLINK("x") recounted',
        by="bob",
    )
    store.approve(run.run_id, approver="carol", note="signed", allow_open=True)
    report = store.report(run.run_id)
    assert report.omitted_exact == 2
    assert report.line_count == 3
    out = tmp_path / "again"
    hashes = write_reports(report, out)
    assert set(hashes) == {"report.json", "report.csv", "report.xlsx", "report.html"}
    data = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert data["run_id"] == run.run_id
    assert data["summary"] == run.record.summary
    assert data["lines_omitted"] == {"exact_matches": 2}
    resolved = next(line for line in data["lines"] if line["material"] == "M2")
    assert resolved["resolution"]["resolution"] == "counting_error"
    assert data["approvals"][0]["approver"] == "carol"
    with (out / "report.csv").open(encoding="utf-8-sig", newline="") as fh:
        rows = {r["material"]: r for r in csv.DictReader(fh)}
    assert rows["M2"]["resolution"] == "counting_error"
    assert rows["M2"]["resolution_note"].startswith("'=HYPERLINK")
    assert rows["M2"]["resolved_by"] == "bob"
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "approved</span> by <b>carol</b>" in html
    assert "counting_error" in html
    book = load_workbook(out / "report.xlsx")
    summary = {r[0].value: r[1].value for r in book["Summary"].iter_rows() if r[0].value}
    assert summary["approved by"] == "carol"
    # the run's original report files are unchanged and still match their hashes
    original = store.get(run.run_id).reports
    assert original == run.reports
