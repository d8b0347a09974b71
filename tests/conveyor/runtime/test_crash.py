"""A poll killed half-way (SIGKILL, no clean-up of any kind) and polled again takes every record in
exactly once, on SQLite and on PostgreSQL: the cursor is committed with each batch."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import Engine, text

from conveyor.ledger import Ledger

from .conftest import REPO, write_project

RECORDS = 10_000


def conveyor(root: Path, url: str, *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != "CONVEYOR_PROJECT"}
    env.update(CONVEYOR_DB_URL=url, PYTHONPATH=str(REPO))
    return subprocess.Popen(
        [sys.executable, "-m", "conveyor", "--project", str(root), *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_killed_poll_resumes_and_takes_every_record_once(tmp_path: Path, engine: Engine) -> None:
    root = write_project(
        tmp_path / "plant",
        {
            "line1": {
                "connector": "tests.support.counting_source:CountingSource",
                # a pause per batch keeps the poll running long enough to be killed half-way
                "settings": {"count": RECORDS, "pause_every": 100, "pause_s": 0.05},
            }
        },
    )
    url = engine.url.render_as_string(hide_password=False)
    ledger = Ledger(engine)

    process = conveyor(root, url, "poll", "line1", "--batch-size", "100")
    deadline = time.monotonic() + 120
    try:
        while int(ledger.checkpoint("line1", "orders") or 0) < 500:  # some batches committed
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the poll never moved its cursor"
            time.sleep(0.02)
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    at_kill = int(ledger.checkpoint("line1", "orders") or 0)
    assert 500 <= at_kill < RECORDS

    process = conveyor(root, url, "poll", "line1", "--json")
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    (stream,) = json.loads(out)["streams"]
    assert stream["cursor_before"] == str(at_kill)
    assert stream["cursor"] == str(RECORDS)
    # the killed batch was not committed, so nothing after the cursor is stored twice
    assert (stream["accepted"], stream["duplicate"]) == (RECORDS - at_kill, 0)

    with engine.connect() as conn:
        count, keys = conn.execute(
            text("SELECT count(*), count(DISTINCT key) FROM messages WHERE source = 'line1'")
        ).one()
        deliveries = conn.execute(text("SELECT count(*) FROM deliveries")).scalar_one()
    assert (count, keys) == (RECORDS, RECORDS)
    assert deliveries == RECORDS  # one per message to its one route target, none twice
    assert ledger.checkpoint("line1", "orders") == str(RECORDS)
