"""Poison: input that always fails ends parked, within the retry bound, and never loops.

Inbound — unreadable JSON, schema-invalid messages, rows naming codes master data does not know
and rows with a quantity that is no number — are parked once each with their reason; nothing
retries them. Outbound — documents a target always refuses with a 4xx business error, or always
answers 5xx — are parked after one attempt (4xx) or exactly ``retry.max_attempts`` (5xx), the
queue drains, and the same poison handed to a worker again is dropped, not tried again. Run on
the embedded transport (SQLite, PostgreSQL) and on RabbitMQ."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

from sqlalchemy import Engine, func, select

from conveyor.config import Project
from conveyor.intake import accept_files
from conveyor.ledger import Ledger
from conveyor.ledger.models import DeliveryRow, MessageRow
from conveyor.mapping import MappingEngine
from conveyor.runtime import registry
from conveyor.runtime.inbound import receive_units
from conveyor.transport import create
from conveyor.transport.base import Envelope
from tests.conveyor.delivery.conftest import Setup, output
from tests.support.file_drop import move_rows, write_moves, write_project

GOOD, BAD_4XX, BAD_5XX = 40, 10, 10
MAX_ATTEMPTS = 4  # retry.max_attempts of the delivery tests' project


def _bad_lines(count: int) -> list[str]:
    """``count`` lines that always fail: broken JSON, and messages the schema refuses."""
    lines = []
    for n in range(count):
        if n % 2:
            lines.append('{"type": "production_output", "key": "X-' + str(n) + '", ')  # cut off
        else:
            bad = output(n, key=f"NEG-{n}")
            bad["payload"]["quantity"] = "-5"
            lines.append(json.dumps(bad))
    return lines


def test_unreadable_and_invalid_messages_are_parked_once_each(
    engine: Engine, tmp_path: Path
) -> None:
    good = [json.dumps(output(n)) for n in range(1, 31)]
    bad = _bad_lines(20)
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(good[:15] + bad + good[15:]) + "\n", encoding="utf-8")
    ledger = Ledger(engine)
    totals, rejected = accept_files(ledger, [path])
    print(f"\npoison in: sent {len(bad)} bad + {len(good)} good → {totals}")
    assert totals == {"accepted": 30, "duplicate": 0, "conflict": 0, "rejected": 20}
    assert len(rejected) == len(ledger.parked_records()) == 20
    again, _ = accept_files(ledger, [path])  # the same file again: parked again, never looped
    assert (again["duplicate"], again["rejected"]) == (30, 20)
    assert len(ledger.parked_records()) == 20  # the same record is kept once


def test_rows_with_unknown_codes_are_parked_with_their_line(engine: Engine, tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    root = write_project(
        tmp_path / "plant", {"root": str(drop), "patterns": {"moves_*.csv": "stock_transfer"}}
    )
    (drop / "inbox").mkdir(parents=True)
    unknown = [3, 50, 99]
    rows = move_rows(100, bad=unknown)
    rows[9][5] = "abc"  # row 10: a quantity that is no number
    path = write_moves(drop / "inbox" / "moves_1.csv", rows)
    past = time.time() - 60
    os.utime(path, (past, past))
    project = Project.load(root)
    ledger = Ledger(engine, project.router)
    result = receive_units(
        ledger, MappingEngine.load(project), registry.create(project.systems["wh"])
    )
    parked = ledger.parked_records(system="wh")
    print(f"\npoison rows: sent 4 bad + 96 good → {result.counts}, parked {len(parked)}")
    assert result.counts.get("accepted") == 96
    assert sorted(p.line for p in parked) == [4, 11, 51, 100]  # file lines (line 1: header)
    assert all(p.reason for p in parked)
    again = receive_units(
        ledger, MappingEngine.load(project), registry.create(project.systems["wh"])
    )
    assert again.units == 0  # the file was archived: nothing comes back by itself
    assert len(ledger.parked_records(system="wh")) == 4


def _drained(setup: Setup) -> bool:
    transport = create(setup.broker_url, engine=setup.engine, consumer_id="probe")
    try:
        depth = transport.depths(["erp"])["erp"]
    finally:
        transport.close()
    return depth.ready + depth.delayed + depth.held == 0


def _run_until_drained(setup: Setup, timeout: float = 60.0) -> dict[str, int]:
    worker = setup.worker(concurrency=2)
    runner = threading.Thread(target=worker.run, daemon=True)
    runner.start()
    deadline = time.monotonic() + timeout
    try:
        time.sleep(0.5)
        while not _drained(setup):
            assert time.monotonic() < deadline, "the queue never drained"
            time.sleep(0.2)
    finally:
        worker.stop()
        runner.join(timeout=60)
    return worker.core.counters.as_dict()


def test_documents_a_target_always_refuses_park_within_the_bound_and_never_loop(
    setup: Setup,
) -> None:
    setup.target.configure(reject={"mes:P4-*": 422, "mes:P5-*": 500})
    messages = (
        [output(n) for n in range(1, GOOD + 1)]
        + [output(n, key=f"P4-{n}", order=f"PO-P4-{n}") for n in range(BAD_4XX)]
        + [output(n, key=f"P5-{n}", order=f"PO-P5-{n}") for n in range(BAD_5XX)]
    )
    setup.accept(messages)
    setup.run(timeout=60)
    rows = {(r.status, r.attempts) for r in setup.deliveries() if r.status != "delivered"}
    attempts = setup.target.attempts
    sent = BAD_4XX + BAD_5XX
    parked = [r for r in setup.deliveries() if r.status == "parked"]
    at_target = {k: v for k, v in attempts.items() if k.startswith(("mes:P4-", "mes:P5-"))}
    print(
        f"\npoison out ({setup.kind}): sent {sent} poison + {GOOD} good → parked {len(parked)}, "
        f"attempts per 4xx {sorted({v for k, v in at_target.items() if k[5] == '4'})}, "
        f"per 5xx {sorted({v for k, v in at_target.items() if k[5] == '5'})} "
        f"(bound {MAX_ATTEMPTS})"
    )
    assert len(parked) == sent
    assert rows == {("parked", 1), ("parked", MAX_ATTEMPTS)}
    assert all(attempts[f"mes:P4-{n}"] == 1 for n in range(BAD_4XX))
    assert all(attempts[f"mes:P5-{n}"] == MAX_ATTEMPTS for n in range(BAD_5XX))
    assert len(setup.target.counts()) == GOOD
    assert setup.target.duplicates() == {}
    assert all("refused" in (r.last_error or "") for r in parked)
    assert _drained(setup)

    # the same poison handed to a worker again (a copy still queued, a republished message)
    transport = create(setup.broker_url, engine=setup.engine, consumer_id="again")
    try:
        transport.start(["erp"], consume=False)
        with setup.engine.connect() as conn:
            types = {pk: kind for pk, kind in conn.execute(select(MessageRow.id, MessageRow.type))}
        transport.publish([Envelope(r.id, "erp", types[r.message_pk], "mes") for r in parked])
    finally:
        transport.close()
    before = dict(attempts)
    counters = _run_until_drained(setup)
    print(f"poison again ({setup.kind}): {len(parked)} copies → dropped {counters['dropped']}")
    assert counters["dropped"] == len(parked)
    assert dict(setup.target.attempts) == before  # not one more try
    with setup.engine.connect() as conn:
        still = conn.execute(
            select(func.count()).where(DeliveryRow.status == "parked")
        ).scalar_one()
    assert still == sent
