"""``conveyor demo`` end to end: the story played against each ERP simulator, on SQLite with the
embedded transport and on PostgreSQL with RabbitMQ, its summary checked against what the ERP
simulator holds (every posting it has is delivered in the ledger with that document number, and the
other way round; no document posted twice) and the report files written."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from sqlalchemy import text

from conveyor.cli import main
from conveyor.demo.erp import CONNECTION
from conveyor.demo.run import (
    SUMMARY_FIELDS,
    TEMPLATE,
    Demo,
    DemoError,
    DemoOptions,
    Summary,
    broker_with_prefix,
    fresh_run_dir,
)
from conveyor.ledger.db import make_engine
from conveyor.runtime.secrets import env_name
from tests.conftest import PG_ADMIN_URL, _pg_available
from tests.support.broker import BROKER, broker_available

REPO = Path(__file__).resolve().parents[3]
FIGURES = {
    "orders": 2,
    "movements": 16,
    "postings": 11,
    "parked": 1,
    "replayed": 1,
    "lost_answers_recovered": 1,
    "retried": 1,
    "alerts": 1,
    "accuracy_pct": 80.0,
}
"""The story's figures (2 orders; 5 opening + 8 reported + 1 replayed + reversal + scrap
movements; 11 ERP postings; 10 reconciled lines of which 2 differ)."""
REPORTS = ("report.html", "report.xlsx", "report.csv", "report.json")


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever a run sets in the environment is taken away after the test."""
    names = ["CONVEYOR_DB_URL", "CONVEYOR_BROKER_URL", "CONVEYOR_PROJECT"]
    names += [env_name(CONNECTION, n) for n in ("USERNAME", "PASSWORD", "APP_KEY", "APP_SECRET")]
    for name in names:
        monkeypatch.setenv(name, "")  # recorded, so that teardown puts back what was there
        monkeypatch.delenv(name)


@pytest.fixture
def played() -> Iterator[list[Demo]]:
    """Demos a test ran (left running to be inspected), stopped afterwards."""
    demos: list[Demo] = []
    yield demos
    for demo in demos:
        demo.stop()
    assert "CONVEYOR_DB_URL" not in os.environ  # stop() put the environment back


def play(played: list[Demo], out: Path, erp: str, **options: str) -> tuple[Demo, Summary]:
    """Run the story and leave the hub and the ERP simulator up for the checks."""
    lines: list[str] = []
    demo = Demo(DemoOptions(out=out, erp=erp, keep_running=True, **options), say=lines.append)
    played.append(demo)
    summary = demo.run()
    assert len(lines) == 11, lines  # one progress line per step
    return demo, summary


def figures(summary: Summary) -> dict[str, object]:
    return {name: getattr(summary, name) for name in FIGURES}


def assert_erp_agrees(demo: Demo, summary: Summary) -> None:
    """The ERP simulator's documents and the ledger's delivered postings are the same pairs of
    (hub key, document number); no key and no number twice; the reports are written."""
    ledger = demo.ledger_postings()
    held = demo.erp.postings([p.key for p in ledger])
    assert sorted((p.key, p.number) for p in held) == sorted((p.key, p.number) for p in ledger)
    assert len({p.key for p in held}) == len(held) == summary.postings
    assert len({p.number for p in held}) == len(held)
    assert summary.checks == {
        "erp_documents": len(held),
        "ledger_delivered": len(held),
        "same_documents": True,
        "posted_twice": [],
    }
    for name in REPORTS:
        assert (Path(summary.report_dir) / name).stat().st_size > 0
    report = json.loads((Path(summary.report_dir) / "report.json").read_text(encoding="utf-8"))
    assert report["summary"]["lines"] == 10


def test_kingdee_on_sqlite_matches_what_the_erp_holds(tmp_path: Path, played: list[Demo]) -> None:
    demo, summary = play(played, tmp_path / "run", "kingdee")
    assert figures(summary) == FIGURES
    assert_erp_agrees(demo, summary)
    assert [(line["material"], line["status"]) for line in summary.lines] == [
        ("PK-3001", "missing_in:kingdee,hub"),
        ("RM-1001", "quantity_mismatch"),
    ]
    assert all(line["explanation"] != "unexplained" for line in summary.lines)
    assert demo.erp.simulator.faults.hits == [
        ("fail_keys", '"mes_drop:MOLD-MO000001/3"'),
        ("drop_keys", '"mes:ASSY-MO000002/5"'),
    ]
    assert summary.seconds < 60
    written = {p.relative_to(tmp_path / "run").parts[0] for p in (tmp_path / "run").rglob("*")}
    assert written == {"plant", "mes", "wms", "report"}


def test_sap_from_the_command_line_with_json(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["demo", "--erp", "sap", "--out", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert tuple(answer)[: len(SUMMARY_FIELDS)] == SUMMARY_FIELDS
    assert {name: answer[name] for name in FIGURES} == FIGURES
    assert answer["checks"]["same_documents"] is True
    assert answer["checks"]["posted_twice"] == []
    assert answer["report_dir"] == str(tmp_path.resolve() / "report")
    assert "[" in result.stderr  # the progress lines went to stderr


def test_yonbip_runs_the_same_story(tmp_path: Path, played: list[Demo]) -> None:
    demo, summary = play(played, tmp_path / "run", "yonbip")
    assert figures(summary) == FIGURES
    assert_erp_agrees(demo, summary)


@pytest.mark.postgres
@pytest.mark.rabbitmq
def test_rabbitmq_and_postgresql_give_the_same_summary(tmp_path: Path, played: list[Demo]) -> None:
    if not (_pg_available() and broker_available()):
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL and RabbitMQ must be reachable in CI")
        pytest.skip("PostgreSQL or RabbitMQ not reachable")
    prefix = f"conveyor.test.{uuid.uuid4().hex[:10]}"
    broker = f"{BROKER}?prefix={prefix}"
    demo, summary = play(played, tmp_path / "run", "kingdee", broker=broker, db=PG_ADMIN_URL)
    database = demo.ledger.engine.url.database
    try:
        assert demo.ledger.engine.dialect.name == "postgresql"
        assert database is not None
        assert database.startswith("conveyor_demo_")
        assert demo.project.broker_url == broker
        assert figures(summary) == FIGURES
        assert_erp_agrees(demo, summary)
    finally:
        played.remove(demo)
        demo.stop()  # the run's queues are deleted by the demo itself
        assert "CONVEYOR_DB_URL" not in os.environ  # stop() put the environment back
        admin = make_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        admin.dispose()


def test_a_run_directory_is_fresh_each_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    first, second = fresh_run_dir(None), fresh_run_dir(None)
    assert first != second
    assert first.parent == second.parent == tmp_path / "conveyor-demo"
    (first / "x").write_text("", encoding="utf-8")
    with pytest.raises(DemoError, match="not empty"):
        fresh_run_dir(first)


def test_a_broker_url_gets_a_prefix_of_its_own_unless_it_names_one() -> None:
    assert broker_with_prefix("amqp://h/%2F", "t1") == "amqp://h/%2F?prefix=conveyor.demo.t1"
    assert broker_with_prefix("amqp://h/?heartbeat=5", "t1").endswith("&prefix=conveyor.demo.t1")
    assert broker_with_prefix("amqp://h/?prefix=mine", "t1") == "amqp://h/?prefix=mine"


@pytest.mark.parametrize(
    ("demo_file", "shipped"),
    [
        ("kingdee.yaml", "kingdee.yaml"),
        ("sap.yaml", "sap.yaml"),
        ("yonbip.yaml", "yonbip.yaml"),
        ("mes.yaml", "mes_b2mml.yaml"),
    ],
)
def test_the_demo_plant_maps_as_the_shipped_mappings(demo_file: str, shipped: str) -> None:
    demo = yaml.safe_load((TEMPLATE / "mappings" / demo_file).read_text(encoding="utf-8"))
    original = yaml.safe_load((REPO / "mappings" / shipped).read_text(encoding="utf-8"))
    assert demo == original
