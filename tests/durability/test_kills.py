"""Durability: the hub SIGKILLed in the middle of an operation — inside the open transaction of
an API accept batch, a replay, a file drop and a poll — and started again, on SQLite (WAL) and on
PostgreSQL. The kill lands deterministically: the process is stopped dead at a chosen SQL
statement (``tests.support.hub_process.StopAt``) and killed there.

After the restart nothing is half-done (no part of a batch, no delivery without its outbox row,
no movement without its message, positions equal to the movements, the file still resumable),
nothing is lost and nothing is doubled: counts against what was sent.
"""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from conveyor.api.tokens import TokenStore
from conveyor.ledger import Ledger
from tests.conveyor.delivery.conftest import Setup, output, write_project
from tests.support import file_drop
from tests.support.hub_process import StopAt, conveyor, free_port, kill, wait_http, wait_stopped
from tests.support.ledger_checks import assert_positions_balance
from tests.support.recording_target import RecordingTarget


def _url(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def _count(engine: Engine, sql: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(sql)).scalar_one())


def assert_nothing_half_done(engine: Engine) -> dict[str, int]:
    """The ledger is whole: every delivery has its one outbox row, every movement its message,
    every message its deliveries, positions equal the movements. Returns the table counts."""
    counts = {
        table: _count(engine, f"SELECT count(*) FROM {table}")
        for table in ("messages", "stock_movements", "deliveries", "outbox")
    }
    assert counts["deliveries"] == counts["outbox"]
    assert not _count(
        engine,
        "SELECT count(*) FROM deliveries d WHERE NOT EXISTS "
        "(SELECT 1 FROM outbox o WHERE o.delivery_id = d.id)",
    )
    assert not _count(
        engine,
        "SELECT count(*) FROM stock_movements s WHERE NOT EXISTS "
        "(SELECT 1 FROM messages m WHERE m.id = s.message_pk)",
    )
    assert not _count(
        engine,
        "SELECT count(*) FROM messages m WHERE NOT EXISTS "
        "(SELECT 1 FROM deliveries d WHERE d.message_pk = m.id)",
    )
    assert not _count(
        engine, "SELECT count(*) - count(DISTINCT source || '/' || key) FROM messages"
    )
    assert_positions_balance(Ledger(engine))
    return counts


def _post(base: str, token: str, messages: list[dict[str, Any]]) -> dict[str, Any]:
    request = urllib.request.Request(  # noqa: S310 (a loopback http URL)
        f"{base}/v1/messages",
        data=json.dumps(messages).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=60) as answer:  # noqa: S310 (http only)
        result: dict[str, Any] = json.loads(answer.read())
        result["http_status"] = answer.status
        return result


def test_killed_mid_accept_batch_keeps_whole_batches_only(tmp_path: Path, engine: Engine) -> None:
    project = write_project(tmp_path / "plant", "http://127.0.0.1:9", alerts={"on_accept": False})
    token = TokenStore.of_project(project.root).add("mes", "ingest")
    first = [output(n) for n in range(1, 501)]
    second = [output(n) for n in range(501, 1001)]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    # armed after the first batch: the second stops at its outbox rows, movements written
    stop = StopAt(r"INSERT INTO outbox", tmp_path / "stopped", arm=tmp_path / "armed")
    serve = ["serve", "--port", str(port)]
    hub = conveyor(project.root, _url(engine), *serve, stop_at=stop)
    try:
        wait_http(f"{base}/healthz", hub)
        assert _post(base, token, first)["counts"] == {"accepted": 500}
        stop.arm.touch()  # type: ignore[union-attr]
        posting = threading.Thread(target=_post_ignoring_errors, args=(base, token, second))
        posting.start()
        wait_stopped(hub, stop)
    finally:
        kill(hub)
    posting.join(timeout=30)

    counts = assert_nothing_half_done(engine)
    print(f"\nkilled mid-accept ({engine.dialect.name}): after kill {counts}")
    assert counts == {"messages": 500, "stock_movements": 500, "deliveries": 500, "outbox": 500}

    hub = conveyor(project.root, _url(engine), *serve)
    try:
        wait_http(f"{base}/healthz", hub)
        assert _post(base, token, second)["counts"] == {"accepted": 500}  # sent again
        assert _post(base, token, first)["counts"] == {"duplicate": 500}
    finally:
        kill(hub)
    counts = assert_nothing_half_done(engine)
    print(f"after restart and resend ({engine.dialect.name}): {counts}")
    assert counts == {"messages": 1000, "stock_movements": 1000, "deliveries": 1000, "outbox": 1000}


def _post_ignoring_errors(base: str, token: str, messages: list[dict[str, Any]]) -> None:
    """Post and expect no answer: the server is killed while it holds the request."""
    try:
        _post(base, token, messages)
    except OSError:
        return
    raise AssertionError("the killed server answered")


def test_killed_mid_replay_requeues_each_delivery_once(
    tmp_path: Path, engine: Engine, target: RecordingTarget
) -> None:
    total = 600  # two replay chunks: 500 and 100
    setup = Setup(engine.dialect.name, engine, None, tmp_path / "plant", target)
    setup.configure(alerts={"on_accept": False})
    target.configure(reject={"*": 422})
    setup.accept([output(n) for n in range(1, total + 1)])
    setup.run(timeout=120)
    assert _count(engine, "SELECT count(*) FROM deliveries WHERE status = 'parked'") == total
    target.configure(reject={})
    target.reset()

    # the second chunk stops after its deliveries went back to pending, before their outbox rows
    stop = StopAt(r"^\s*UPDATE outbox", tmp_path / "stopped", nth=2)
    replay = conveyor(setup.root, _url(engine), "replay", "--all", stop_at=stop)
    try:
        wait_stopped(replay, stop)
    finally:
        kill(replay)
    statuses = _statuses(engine)
    print(f"\nkilled mid-replay ({engine.dialect.name}): after kill {statuses}")
    assert statuses == {"pending": 500, "parked": total - 500}  # the first chunk only, whole
    assert not _count(  # every requeued delivery can travel: its outbox row is due again
        engine,
        "SELECT count(*) FROM deliveries d JOIN outbox o ON o.delivery_id = d.id "
        "WHERE d.status = 'pending' AND o.published_at IS NOT NULL",
    )

    again = conveyor(setup.root, _url(engine), "--json", "replay", "--all")
    out, err = again.communicate(timeout=120)
    assert again.returncode == 0, err
    assert json.loads(out)["requeued"] == total - 500
    setup.run(timeout=120)
    counts = assert_nothing_half_done(engine)
    print(f"after restart ({engine.dialect.name}): {_statuses(engine)}, {counts}")
    assert _statuses(engine) == {"delivered": total}
    assert len(target.counts()) == total
    assert target.duplicates() == {}


def _statuses(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT status, count(*) FROM deliveries GROUP BY status"))
        return {status: int(n) for status, n in rows}


FILE_ROWS, FILE_BAD = 2500, [7, 1800]


def test_killed_mid_file_resumes_the_file_and_takes_each_row_once(
    tmp_path: Path, engine: Engine
) -> None:
    drop = tmp_path / "drop"
    settings = {"root": str(drop), "patterns": {"moves_*.csv": "stock_transfer"}}
    root = file_drop.write_project(tmp_path / "plant", settings, key="[_file, _line]")
    (drop / "inbox").mkdir(parents=True)
    path = file_drop.write_moves(
        drop / "inbox" / "moves_1129.csv", file_drop.move_rows(FILE_ROWS, FILE_BAD)
    )
    past = time.time() - 60
    os.utime(path, (past, past))
    # the second batch stops with its rows written and the file's cursor not yet saved
    stop = StopAt(r"^\s*INSERT INTO checkpoints", tmp_path / "stopped", nth=2)
    watch = conveyor(root, _url(engine), "watch", "--once", stop_at=stop)
    try:
        wait_stopped(watch, stop)
    finally:
        kill(watch)
    taken = _count(engine, "SELECT count(*) FROM messages")
    parked = _count(engine, "SELECT count(*) FROM parked_records")
    in_processing = sorted(p.name for p in (drop / "processing").iterdir())
    print(
        f"\nkilled mid-file ({engine.dialect.name}): {taken} rows accepted, {parked} parked, "
        f"processing/ {in_processing}"
    )
    assert taken + parked == 1000  # exactly the first batch, whole
    assert in_processing == ["moves_1129.csv"]  # still resumable
    assert not (drop / "archive").exists() or not list((drop / "archive").iterdir())
    assert_nothing_half_done(engine)

    again = conveyor(root, _url(engine), "watch", "--once")
    _out, err = again.communicate(timeout=180)
    assert again.returncode == 1, err  # two rows parked
    counts = assert_nothing_half_done(engine)
    parked = _count(engine, "SELECT count(*) FROM parked_records")
    print(f"after restart ({engine.dialect.name}): {counts}, parked {parked}")
    assert counts["messages"] == FILE_ROWS - len(FILE_BAD)
    assert parked == len(FILE_BAD)
    assert (drop / "archive" / "moves_1129.csv").is_file()
    assert not list((drop / "processing").iterdir())


POLL_RECORDS = 1000


def test_killed_mid_poll_resumes_from_the_committed_cursor(tmp_path: Path, engine: Engine) -> None:
    from tests.conveyor.runtime.conftest import write_project as runtime_project

    root = runtime_project(
        tmp_path / "plant",
        {
            "line1": {
                "connector": "tests.support.counting_source:CountingSource",
                "settings": {"count": POLL_RECORDS},
            }
        },
    )
    stop = StopAt(r"^\s*INSERT INTO checkpoints", tmp_path / "stopped", nth=3)
    poll = conveyor(root, _url(engine), "poll", "line1", "--batch-size", "100", stop_at=stop)
    try:
        wait_stopped(poll, stop)
    finally:
        kill(poll)
    ledger = Ledger(engine)
    cursor = ledger.checkpoint("line1", "orders")
    taken = _count(engine, "SELECT count(*) FROM messages")
    print(f"\nkilled mid-poll ({engine.dialect.name}): cursor {cursor}, {taken} messages")
    assert (cursor, taken) == ("200", 200)  # two whole batches; the third neither
    assert_nothing_half_done(engine)

    again = conveyor(root, _url(engine), "poll", "line1", "--json")
    out, err = again.communicate(timeout=180)
    assert again.returncode == 0, err
    (stream,) = json.loads(out)["streams"]
    assert (stream["accepted"], stream["duplicate"]) == (POLL_RECORDS - 200, 0)
    counts = assert_nothing_half_done(engine)
    print(f"after restart ({engine.dialect.name}): cursor {stream['cursor']}, {counts}")
    assert counts["messages"] == POLL_RECORDS
    assert ledger.checkpoint("line1", "orders") == str(POLL_RECORDS)


@pytest.fixture
def target() -> Any:
    """A recording HTTP target on 127.0.0.1."""
    with RecordingTarget() as recording:
        yield recording
