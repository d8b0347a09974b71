"""``conveyor run``, ``status``, ``parked`` and ``replay`` on a SQLite project (embedded transport)
delivering to a recording HTTP target."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from conveyor.cli import main
from conveyor.messages import dumps
from tests.conveyor.delivery.conftest import output, write_project
from tests.support.recording_target import RecordingTarget


@pytest.fixture
def target() -> Iterator[RecordingTarget]:
    with RecordingTarget() as recording:
        yield recording


@pytest.fixture
def project(tmp_path: Path, target: RecordingTarget, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("CONVEYOR_DB_URL", raising=False)
    monkeypatch.delenv("CONVEYOR_BROKER_URL", raising=False)
    write_project(tmp_path, target.url)
    return tmp_path


def run(project: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--project", str(project), *args])
    return result.exit_code, result.output


def accept(project: Path, messages: list[dict[str, object]]) -> None:
    path = project / "in.jsonl"
    path.write_text("\n".join(dumps(m) for m in messages) + "\n", encoding="utf-8")
    code, out = run(project, "db", "upgrade")
    assert code == 0, out
    code, out = run(project, "accept", str(path))
    assert code == 0, out


def test_run_until_idle_delivers_and_status_counts(project: Path, target: RecordingTarget) -> None:
    unrouted = output(99)
    unrouted["source"] = "wms"  # production output from the WMS matches no route
    accept(project, [output(1), output(2), unrouted])
    code, out = run(project, "--json", "run", "--until-idle", "--timeout", "30")
    assert code == 0, out
    summary = json.loads(out)
    assert summary["delivered"] == 2
    assert summary["transport"] == "embedded"
    assert sorted(target.counts()) == ["mes:GR-1/1", "mes:GR-2/1"]

    code, out = run(project, "--json", "status")
    assert code == 0, out
    report = json.loads(out)
    erp = report["targets"]["erp"]
    assert (erp["delivered"], erp["pending"], erp["parked"]) == (2, 0, 0)
    assert erp["queue"]["ready"] == 0
    assert report["unrouted"]["count"] == 1
    assert report["unrouted"]["by_type_source"] == [
        {"type": "production_output", "source": "wms", "count": 1}
    ]
    code, out = run(project, "status")
    assert code == 0, out
    assert "unrouted messages (no route matched): 1" in out


def test_parked_lists_reasons_and_replay_requeues_once(
    project: Path, target: RecordingTarget
) -> None:
    target.configure(reject={"mes:GR-2/*": 409})
    accept(project, [output(1), output(2), output(3)])
    code, out = run(project, "run", "--until-idle", "--timeout", "30")
    assert code == 0, out
    assert "parked 1" in out

    code, out = run(project, "--json", "parked", "--reason-like", "MATERIAL IS BLOCKED")
    assert code == 0, out
    (row,) = json.loads(out)
    assert (row["target"], row["key"], row["status"]) == ("erp", "GR-2/1", "parked")
    assert "HTTP 409" in row["reason"]
    code, out = run(project, "parked", "--target", "erp")
    assert code == 0, out
    assert "GR-2/1" in out
    code, out = run(project, "--json", "parked", "--reason-like", "no such text")
    assert json.loads(out) == []

    target.configure(reject={})
    code, out = run(project, "--json", "replay", "--target", "erp")
    assert code == 0, out
    assert json.loads(out)["requeued"] == 1
    code, out = run(project, "--json", "replay", "--target", "erp")  # safe to repeat
    assert json.loads(out)["requeued"] == 0
    code, out = run(project, "run", "--until-idle", "--timeout", "30")
    assert code == 0, out
    assert target.counts() == {"mes:GR-1/1": 1, "mes:GR-2/1": 1, "mes:GR-3/1": 1}
    code, out = run(project, "parked")
    assert "nothing parked" in out


def test_replay_needs_to_be_told_what(project: Path) -> None:
    code, out = run(project, "replay")
    assert code == 2
    assert "--id, --target, --all or --stuck" in out


def test_replay_refuses_an_id_past_bigint(project: Path) -> None:
    """The API's fuzzing found ids past BIGINT reaching the database driver; the CLI takes the
    same range only."""
    code, out = run(project, "replay", "--id", str(2**63))
    assert code == 2
    assert "--id" in out


def test_run_refuses_an_unknown_target(project: Path) -> None:
    accept(project, [output(1)])
    code, out = run(project, "run", "--target", "sap", "--until-idle")
    assert code == 1
    assert "unknown system 'sap'" in out


def test_run_with_timeout_exits_1_when_work_remains(project: Path, target: RecordingTarget) -> None:
    target.configure(delay_s=0.3)
    accept(project, [output(n) for n in range(1, 30)])
    started = time.monotonic()
    code, _ = run(project, "run", "--until-idle", "--timeout", "0.5", "--concurrency", "1")
    assert code == 1
    assert time.monotonic() - started < 5  # a batch in progress gives its untried rest back
    code, out = run(project, "--json", "status")
    erp = json.loads(out)["targets"]["erp"]
    assert erp["in_flight"] == 0
    assert erp["delivered"] + erp["pending"] == 29


def test_stuck_deliveries_show_in_status_and_replay_stuck_republishes(
    project: Path, target: RecordingTarget
) -> None:
    from sqlalchemy import create_engine, update

    from conveyor.ledger.models import DeliveryRow, OutboxRow, utcnow

    accept(project, [output(1), output(2)])
    engine = create_engine(f"sqlite:///{project / '.conveyor' / 'ledger.db'}")
    with engine.begin() as conn:  # handed over long ago, and the transport lost it
        long_ago = utcnow() - timedelta(hours=3)
        conn.execute(update(OutboxRow).values(published_at=long_ago))
        conn.execute(update(DeliveryRow).values(updated_at=long_ago))
    engine.dispose()
    code, out = run(project, "--json", "status")
    assert json.loads(out)["stuck"] == 2
    code, out = run(project, "status")
    assert "stuck deliveries (open, untouched for 1:00:00): 2" in out

    code, out = run(project, "--json", "replay", "--stuck", "--older-than", "4h")
    assert (code, json.loads(out)) == (0, {"republished": 0})
    code, out = run(project, "replay", "--stuck")
    assert (code, out.strip()) == (0, "republished 2 stuck deliveries")
    code, out = run(project, "run", "--until-idle", "--timeout", "30")
    assert code == 0, out
    assert target.counts() == {"mes:GR-1/1": 1, "mes:GR-2/1": 1}


def test_outbox_size_and_prune(project: Path, target: RecordingTarget) -> None:
    accept(project, [output(1), output(2), output(3)])
    code, out = run(project, "--json", "outbox", "size")
    assert json.loads(out) == {"total": 3, "unpublished": 3, "prunable": 0}
    code, out = run(project, "run", "--until-idle", "--timeout", "30")
    assert code == 0, out
    code, out = run(project, "outbox", "size")
    assert out.strip() == "total 3, unpublished 0, prunable 3"
    code, out = run(project, "outbox", "prune")  # default: published at least 7 days ago
    assert (code, out.strip()) == (0, "pruned 0 outbox rows")
    code, out = run(project, "--json", "outbox", "prune", "--older-than", "0s")
    assert (code, json.loads(out)) == (0, {"pruned": 3})
    code, out = run(project, "outbox", "prune", "--older-than", "soon")
    assert code == 2
    assert "'soon' is not a duration" in out
    assert target.counts() == {"mes:GR-1/1": 1, "mes:GR-2/1": 1, "mes:GR-3/1": 1}
