"""``conveyor consume``: receive passes until SIGTERM, the current unit finished first; refused
for a system that does not receive. (Killed with SIGKILL and restarted against a real queue:
``tests/connectors/test_amqp.py``.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import text

from conveyor.cli import main
from conveyor.ledger.db import make_engine
from tests.conveyor.runtime.conftest import write_jsonl, write_project
from tests.support.counting_source import order
from tests.support.down_database import run_for, unreachable_url


def test_a_system_that_does_not_receive_is_refused(tmp_path: Path) -> None:
    root = write_project(
        tmp_path / "plant", {"mesx": {"connector": "b2mml", "settings": {"out_dir": "/tmp"}}}
    )
    result = CliRunner().invoke(main, ["--project", str(root), "consume", "mesx"])
    assert result.exit_code == 1
    assert "does not receive" in result.stderr


def test_consume_takes_in_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    records = write_jsonl(tmp_path / "line1.jsonl", [order("line1", n) for n in range(1, 4)])
    root = write_project(
        tmp_path / "plant",
        {"line1": {"connector": "fake", "settings": {"records_file": str(records)}}},
    )
    database = tmp_path / "ledger.db"
    env = {**os.environ, "CONVEYOR_DB_URL": f"sqlite:///{database}"}
    for name in ("CONVEYOR_BROKER_URL", "CONVEYOR_PROJECT"):
        env.pop(name, None)
    subprocess.run(
        [sys.executable, "-m", "conveyor", "--project", str(root), "db", "upgrade"],
        env=env,
        check=True,
        capture_output=True,
    )
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "conveyor",
            "--project",
            str(root),
            "consume",
            "line1",
            "--pause-s",
            "0.1",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    engine = make_engine(f"sqlite:///{database}")
    deadline = time.monotonic() + 60
    try:
        while True:
            with engine.connect() as conn:
                count = conn.execute(text("SELECT count(*) FROM messages")).scalar_one()
            if count >= 3 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
        engine.dispose()
    assert count == 3
    assert process.returncode == 0, err
    assert b"line1: units" in out


def test_consume_waits_for_a_ledger_it_cannot_reach_instead_of_ending(tmp_path: Path) -> None:
    """A database restart must not end the service: each pass that cannot reach the ledger says
    so and the next one tries again (nothing was acknowledged meanwhile)."""
    records = write_jsonl(tmp_path / "line1.jsonl", [order("line1", 1)])
    root = write_project(
        tmp_path / "plant",
        {"line1": {"connector": "fake", "settings": {"records_file": str(records)}}},
    )
    env = {**os.environ, "CONVEYOR_DB_URL": unreachable_url()}
    for name in ("CONVEYOR_BROKER_URL", "CONVEYOR_PROJECT"):
        env.pop(name, None)
    process = subprocess.Popen(
        [sys.executable, "-m", "conveyor", "--project", str(root), "consume", "line1"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    still_running, code, err = run_for(process, 6)  # several passes
    assert still_running, err
    assert code == 0, err
    assert err.count("line1: cannot reach the ledger database") >= 2, err
