"""Notes on a delivery, on SQLite and PostgreSQL: what a target says alongside a posting
(``SendResult.detail["notes"]``) is stored on the delivery — one by one and in batches, and from
a lookup after a lost answer — redacted and clipped, written in the same single statement as the
document number, and shown by ``Ledger.trace`` and ``conveyor trace`` (text and ``--json``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, event, select

from connectors.fake import FakeConnector
from conveyor.cli import main
from conveyor.config import RetryPolicy
from conveyor.delivery.batch_sql import BatchStatements, Recorded
from conveyor.delivery.notes import MAX_NOTES, delivery_notes, encode_notes
from conveyor.delivery.worker import Worker, WorkerOptions
from conveyor.ledger import Ledger
from conveyor.ledger.models import DeliveryRow, utcnow
from conveyor.redact import forget_all, remember
from tests.conveyor.delivery.conftest import output

REPO = Path(__file__).resolve().parents[3]
NOTES: list[Any] = [
    "W M7 139 Batch is near expiry",
    {"TYPE": "S", "ID": "M7", "NUMBER": "060", "MESSAGE": "Document 4900000001 posted"},
    {"type": "I", "id": "RW", "number": "609", "message": "Posting period 011 2026 is open"},
]
STORED = [
    "W M7 139 Batch is near expiry",
    "S M7 060: Document 4900000001 posted",
    "I RW 609: Posting period 011 2026 is open",
]


def deliver(ledger: Ledger, connectors: dict[str, FakeConnector], batch_size: int) -> None:
    """Run a worker for the connectors' targets until nothing is open."""
    worker = Worker(
        ledger.engine,
        targets=list(connectors),
        policy=RetryPolicy(max_attempts=4, base_delay_s=0.05, max_delay_s=0.2),
        options=WorkerOptions(concurrency=1, batch_size=20, heartbeat_s=0.3, stale_after_s=5),
        connectors=connectors,
        batch_sizes=dict.fromkeys(connectors, batch_size),
    )
    assert worker.run(until_idle=True, timeout=60).idle


def rows(engine: Engine) -> list[Any]:
    """Every delivery (target, status, attempts, notes), in id order."""
    d = DeliveryRow.__table__
    with engine.connect() as conn:
        return list(
            conn.execute(
                select(d.c.target, d.c.status, d.c.attempts, d.c.notes).order_by(d.c.id)
            ).all()
        )


def trace_cli(engine: Engine, tmp_path: Path, *args: str) -> tuple[int, str]:
    """``conveyor trace`` against ``engine``'s ledger, from a copy of the repository's project."""
    project = tmp_path / "project"
    project.mkdir(exist_ok=True)
    shutil.copy(REPO / "conveyor.yaml", project / "conveyor.yaml")
    url = engine.url.render_as_string(hide_password=False)
    result = CliRunner().invoke(
        main, ["--project", str(project), *args], env={"CONVEYOR_DB_URL": url}
    )
    return result.exit_code, result.output


@pytest.mark.parametrize("batch_size", [1, 10], ids=["one-by-one", "batched"])
def test_notes_are_stored_and_traced_and_none_is_null(
    ledger: Ledger, tmp_path: Path, batch_size: int
) -> None:
    ledger.accept_batch([output(n) for n in range(1, 4)])
    erp = FakeConnector("erp", {"notes": NOTES})
    wms = FakeConnector("wms")  # says nothing alongside its postings
    deliver(ledger, {"erp": erp, "wms": wms}, batch_size)
    stored = rows(ledger.engine)
    assert {(r.target, r.status, r.attempts) for r in stored} == {
        ("erp", "delivered", 1),
        ("wms", "delivered", 1),
    }
    assert [json.loads(r.notes) for r in stored if r.target == "erp"] == [STORED] * 3
    assert [r.notes for r in stored if r.target == "wms"] == [None] * 3

    traced = ledger.trace("GR-2/1")
    (message,) = traced["messages"]
    assert {d["target"]: d["notes"] for d in message["deliveries"]} == {"erp": STORED, "wms": []}

    code, out = trace_cli(ledger.engine, tmp_path, "trace", "GR-2/1")
    assert code == 0, out
    lines = out.splitlines()
    erp_line = next(i for i, line in enumerate(lines) if line.startswith("  → erp: delivered"))
    assert lines[erp_line + 1 : erp_line + 4] == [f"      note: {note}" for note in STORED]
    wms_line = next(i for i, line in enumerate(lines) if line.startswith("  → wms: delivered"))
    assert "note:" not in "".join(lines[wms_line + 1 : wms_line + 2])

    code, out = trace_cli(ledger.engine, tmp_path, "--json", "trace", "GR-2/1")
    assert code == 0, out
    (shown,) = json.loads(out)["messages"]
    assert {d["target"]: d["notes"] for d in shown["deliveries"]} == {"erp": STORED, "wms": []}


@pytest.mark.parametrize("batch_size", [1, 10], ids=["one-by-one", "batched"])
def test_a_document_found_after_a_lost_answer_keeps_the_lookups_notes(
    ledger: Ledger, batch_size: int
) -> None:
    ledger.accept_batch([output(1), output(2)])
    erp = FakeConnector(
        "erp", {"notes": ["W 01 002: kept on the first call"], "drop_answer_keys": ["mes:GR-1/1"]}
    )
    deliver(ledger, {"erp": erp}, batch_size)
    stored = {r.attempts: r for r in rows(ledger.engine) if r.target == "erp"}
    assert set(stored) == {1, 2}  # GR-1 was looked up on its second attempt, not posted again
    assert erp.store.posts == {"mes:GR-1/1": 1, "mes:GR-2/1": 1}
    for row in stored.values():
        assert row.status == "delivered"
        assert json.loads(row.notes) == ["W 01 002: kept on the first call"]


def test_notes_are_redacted_clipped_and_counted() -> None:
    forget_all()
    remember("s3cret-pass")
    try:
        notes = delivery_notes(
            {
                "notes": [
                    "W ZZ 001 login s3cret-pass was used",
                    {"TYPE": "W", "MESSAGE": "x" * 5000},
                    {"TYPE": "", "ID": "", "MESSAGE": ""},  # nothing to say: kept as its JSON
                    "   ",  # an empty line: dropped
                    *(f"I ZZ {n:03d} line {n}" for n in range(30)),
                ]
            }
        )
    finally:
        forget_all()
    assert notes[0] == "W ZZ 001 login *** was used"
    assert notes[1].startswith("W: xxx")
    assert notes[1].endswith("(4503 more characters)")
    assert notes[2] == '{"TYPE": "", "ID": "", "MESSAGE": ""}'
    assert len(notes) == MAX_NOTES + 1
    assert notes[-1] == f"… {33 - MAX_NOTES} more notes"
    assert delivery_notes({"notes": "S 00 001 one text"}) == ["S 00 001 one text"]
    assert delivery_notes({"reference": "X"}) == []
    assert encode_notes([]) is None


def test_delivered_outcomes_with_notes_are_one_statement_per_batch(ledger: Ledger) -> None:
    """Notes travel in the statement that writes the document numbers: one per batch, whatever
    its size (no per-row round trips)."""
    ledger.accept_batch([output(n) for n in range(1, 51)])
    engine = ledger.engine
    sql = BatchStatements(engine, worker_id="w-notes", stale_after_s=5)
    claimed, _messages = sql.claim(sorted(r.id for r in _delivery_ids(engine)), utcnow())
    updates: list[tuple[str, bool]] = []

    def seen(_conn: Any, _cursor: Any, statement: str, _p: Any, _c: Any, many: bool) -> None:
        if statement.lstrip().upper().startswith("UPDATE DELIVERIES"):
            updates.append((statement, many))

    event.listen(engine, "before_cursor_execute", seen)
    try:
        sql.record(
            [
                Recorded(
                    delivery_id,
                    "delivered",
                    external_ref=f"ERP-{delivery_id}",
                    notes=encode_notes([f"W 01 {delivery_id:03d}: note"])
                    if delivery_id % 2
                    else None,
                )
                for delivery_id in claimed
            ],
            utcnow(),
        )
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert len(claimed) == 100  # 50 messages to erp and wms
    assert len(updates) == 1
    stored = {r.id: r.notes for r in _delivery_ids(engine)}
    assert all(
        (json.loads(notes) == [f"W 01 {i:03d}: note"]) if i % 2 else notes is None
        for i, notes in stored.items()
    )


def _delivery_ids(engine: Engine) -> list[Any]:
    d = DeliveryRow.__table__
    with engine.connect() as conn:
        return list(conn.execute(select(d.c.id, d.c.notes)).all())
