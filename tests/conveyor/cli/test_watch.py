"""``conveyor watch``: ``--once`` takes in what the inbox holds and exits; a watcher killed with
SIGKILL half-way through a file and started again takes every row in exactly once, on SQLite and
on PostgreSQL (each batch commits the file's cursor)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import Engine, text

from connectors.files import file_hash
from conveyor.ledger import Ledger
from conveyor.runtime.inbound import resume_stream
from tests.support.down_database import run_for, unreachable_url
from tests.support.file_drop import REPO, move_rows, write_moves, write_project

ROWS = 20_000
BAD = [17, 12_345]


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


def _dropped(tmp_path: Path, rows: int, bad: list[int]) -> tuple[Path, Path, Path]:
    drop = tmp_path / "drop"
    settings = {"root": str(drop), "patterns": {"moves_*.csv": "stock_transfer"}}
    # rows have no business key of their own here: file hash + line is the key
    root = write_project(tmp_path / "plant", settings, key="[_file, _line]")
    (drop / "inbox").mkdir(parents=True)
    path = write_moves(drop / "inbox" / "moves_1121.csv", move_rows(rows, bad))
    past = time.time() - 60
    os.utime(path, (past, past))
    return root, drop, path


def test_watch_once_takes_in_the_inbox_and_exits(tmp_path: Path, sqlite_engine: Engine) -> None:
    root, drop, _ = _dropped(tmp_path, 300, [5])
    url = sqlite_engine.url.render_as_string(hide_password=False)
    process = conveyor(root, url, "watch", "--once", "--json")
    out, err = process.communicate(timeout=120)
    assert process.returncode == 1, err  # one row parked
    (unit,) = json.loads(out)["passes"]
    assert (unit["units"], unit["acknowledged"], unit["accepted"], unit["parked"]) == (1, 1, 299, 1)
    assert (drop / "archive" / "moves_1121.csv.result.json").is_file()
    parked = Ledger(sqlite_engine).parked_records(system="wh")
    assert [(p.file, p.line) for p in parked] == [("moves_1121.csv", 6)]
    assert not any((drop / "inbox").iterdir())


def test_a_killed_watcher_resumes_and_takes_every_row_once(tmp_path: Path, engine: Engine) -> None:
    root, drop, path = _dropped(tmp_path, ROWS, BAD)
    stream = resume_stream(file_hash(path))
    url = engine.url.render_as_string(hide_password=False)
    ledger = Ledger(engine)

    process = conveyor(root, url, "watch", "--once", "--system", "wh", "--batch-size", "100")
    deadline = time.monotonic() + 240
    try:
        while int(ledger.checkpoint("wh", stream) or 0) < 1_000:  # some batches committed
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the watcher never committed a batch"
            time.sleep(0.01)
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    at_kill = int(ledger.checkpoint("wh", stream) or 0)
    assert 1_000 <= at_kill < ROWS, "kill the watcher mid-file"
    assert (drop / "processing" / "moves_1121.csv").is_file()

    process = conveyor(root, url, "watch", "--once", "--json", "--batch-size", "1000")
    out, err = process.communicate(timeout=600)
    assert process.returncode == 1, err  # two rows parked
    (unit,) = json.loads(out)["passes"]
    assert unit["resumed"] == at_kill
    assert unit["records"] == ROWS - at_kill
    assert unit.get("duplicate", 0) == 0

    with engine.connect() as conn:
        count, keys = conn.execute(
            text("SELECT count(*), count(DISTINCT key) FROM messages WHERE source = 'wh'")
        ).one()
        deliveries = conn.execute(text("SELECT count(*) FROM deliveries")).scalar_one()
    assert (count, keys) == (ROWS - len(BAD), ROWS - len(BAD))
    assert deliveries == ROWS - len(BAD)  # one per message to sap, none twice
    parked = sorted(p.line or 0 for p in ledger.parked_records(system="wh"))
    assert parked == [n + 1 for n in BAD]
    assert (drop / "archive" / "moves_1121.csv").is_file()
    assert not any((drop / "processing").iterdir())


def test_watch_waits_for_a_ledger_it_cannot_reach_instead_of_ending(tmp_path: Path) -> None:
    """A database restart must not end the watcher: the file stays claimed (nothing archived
    before its commit) and each pass says it cannot reach the ledger until it can."""
    root, drop, _ = _dropped(tmp_path, 10, [])
    process = conveyor(root, unreachable_url(), "watch")
    still_running, code, err = run_for(process, 6)
    assert still_running, err
    assert code == 0, err
    assert "wh: cannot reach the ledger database" in err
    assert not list((drop / "archive").glob("*.csv"))  # not taken in: kept for the next pass
