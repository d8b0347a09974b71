"""Two processes accepting the same file at once on PostgreSQL store each key once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from conveyor.ledger import Ledger
from conveyor.ledger.models import MessageRow, StockMovementRow
from conveyor.messages import dumps, new_message

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
