"""Concurrent writers on PostgreSQL: two processes accepting the same file store each key once;
two reversing the same originals reverse each exactly once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from conveyor.ledger import AcceptResult, Ledger
from conveyor.ledger.core import content_hash
from conveyor.ledger.models import MessageRow, StockMovementRow
from conveyor.messages import dumps, new_message, validate
from tests.support.ledger_checks import assert_positions_balance

pytestmark = pytest.mark.postgres


def write_file(path: Path, n: int) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n):
            message = new_message(
                "production_output",
                "mes",
                f"GR-{i:05d}/1",
                {
                    "order_id": f"PO-{i % 50}",
                    "material": f"M{i % 20}",
                    "quantity": "0.1",
                    "uom": "KG",
                    "location": f"1000/L{i % 3}",
                },
            )
            fh.write(dumps(message) + "\n")


def test_two_processes_same_file(tmp_path: Path, pg_engine: Engine, pg_database_url: str) -> None:
    n = 3000
    path = tmp_path / "outputs.jsonl"
    write_file(path, n)
    (tmp_path / "conveyor.yaml").write_text("routes: []\n", encoding="utf-8")
    env = dict(os.environ, CONVEYOR_DB_URL=pg_database_url)
    cmd = [
        sys.executable,
        "-m",
        "conveyor",
        "--project",
        str(tmp_path),
        "--json",
        "accept",
        str(path),
    ]
    procs = [
        subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
        outputs.append(json.loads(out))
    assert sum(o["accepted"] for o in outputs) == n
    assert all(o["accepted"] + o["duplicate"] == n for o in outputs)
    with pg_engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(MessageRow)).scalar_one() == n
        assert conn.execute(select(func.count()).select_from(StockMovementRow)).scalar_one() == n
    total = sum(p.quantity for p in Ledger(pg_engine).positions())
    assert total == Decimal("0.1") * n


def test_two_processes_reversing_the_same_originals(
    tmp_path: Path, pg_engine: Engine, pg_database_url: str
) -> None:
    """Each process reverses every original under its own keys: the unique (source, reversal_of)
    index lets exactly one reversal of each original commit; the other is parked."""
    n = 400
    (tmp_path / "conveyor.yaml").write_text("routes: []\n", encoding="utf-8")
    originals = tmp_path / "outputs.jsonl"
    write_file(originals, n)
    ledger = Ledger(pg_engine)
    from conveyor.messages import read_records

    records = [record for _, record in read_records(originals)]
    assert {r.status for r in ledger.accept_batch(records)} == {"accepted"}
    files = []
    for side in ("a", "b"):
        path = tmp_path / f"reversals-{side}.jsonl"
        with path.open("w", encoding="utf-8") as fh:
            for record in records:
                payload = dict(record["payload"], reversal_of=record["key"])
                reversal = new_message(
                    "production_output", "mes", f"{record['key']}-R{side}", payload
                )
                fh.write(dumps(reversal) + "\n")
        files.append(path)
    env = dict(os.environ, CONVEYOR_DB_URL=pg_database_url)
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "conveyor",
                "--project",
                str(tmp_path),
                "--json",
                "accept",
                str(path),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for path in files
    ]
    outputs = [json.loads(proc.communicate(timeout=120)[0]) for proc in procs]
    assert sum(o["accepted"] for o in outputs) == n
    assert sum(o["rejected"] for o in outputs) == n
    rules = {
        problem["rule"]
        for o in outputs
        for item in o["rejected_records"]
        for problem in item["error"]["problems"]
    }
    assert rules == {"reversal_of.once"}
    with pg_engine.connect() as conn:
        reversals = conn.execute(
            select(func.count()).select_from(MessageRow).where(MessageRow.reversal_of.is_not(None))
        ).scalar_one()
    assert reversals == n
    assert ledger.positions() == []
    assert_positions_balance(ledger)


def test_a_reversal_waiting_on_an_uncommitted_one_loses(pg_engine: Engine) -> None:
    """The race itself: another transaction has inserted a reversal of GR-1/1 but not committed
    when this one checks; the database decides, and this reversal is parked as the second."""
    ledger = Ledger(pg_engine)
    original = new_message(
        "production_output",
        "mes",
        "GR-1/1",
        {"order_id": "PO-1", "material": "M1", "quantity": "2", "uom": "KG", "location": "A"},
    )
    assert ledger.accept(original).status == "accepted"
    reversal = dict(original, message_id=str(uuid.uuid4()), key="GR-1R/1")
    reversal["payload"] = dict(original["payload"], reversal_of="GR-1/1")
    rival = dict(reversal, message_id=str(uuid.uuid4()), key="GR-1R2/1")
    outcome: list[Any] = []
    with pg_engine.connect() as other:
        other.begin()
        # the rival's transaction: stored through the ledger's own code, left open
        ledger_other = Ledger(pg_engine)
        valid = {0: validate(rival)}
        results = [AcceptResult("rejected")]
        ledger_other._store(other, valid, {0: content_hash(valid[0])}, results)
        assert results[0].status == "accepted"
        worker = threading.Thread(target=lambda: outcome.append(ledger.accept(reversal)))
        worker.start()
        time.sleep(0.5)  # the worker now waits on the rival's row in the unique index
        other.commit()
        worker.join(timeout=30)
    [result] = outcome
    assert result.status == "rejected"
    assert result.error is not None
    assert result.error.problems[0].rule == "reversal_of.once"  # type: ignore[attr-defined]
    assert ledger.positions() == []
    assert_positions_balance(ledger)
