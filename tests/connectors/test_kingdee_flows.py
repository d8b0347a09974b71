"""The Kingdee connector end to end against its simulator over loopback HTTP, on a real SQLite
ledger: 2,500 released orders polled (a changed order comes through again as a new revision),
1,000 consumptions posted by BatchSave with refusals and lost answers, a session that expires
mid-run, and reconciliation of the hub against ``snapshot()``."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from click.testing import CliRunner
from sqlalchemy import select

from conveyor.cli import main
from conveyor.config import Project, RetryPolicy
from conveyor.delivery.worker import Worker, WorkerOptions
from conveyor.ledger import Ledger
from conveyor.ledger.db import make_engine
from conveyor.ledger.models import DeliveryRow, MessageRow
from conveyor.messages import new_message
from simulators._erp import SimServer
from tests.conveyor.runtime.conftest import write_project
from tests.support import kingdee as kd

ORG, STOCK, MATERIAL = "100", "CK001", "1.01.001"  # 1000/RM, RM-1001 (KG)


@pytest.fixture
def sim() -> Iterator[SimServer]:
    server = kd.serve(refuse_negative=True)
    try:
        yield server
    finally:
        server.shutdown()


simulator = kd.simulator_of


@pytest.fixture
def plant(tmp_path: Path, sim: SimServer, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project with ``kingdee`` (the connector, posting with IsAutoSubmitAndAudit) as the
    target of consumptions from ``mes``, on its own SQLite ledger."""
    monkeypatch.delenv("CONVEYOR_DB_URL", raising=False)
    monkeypatch.delenv("CONVEYOR_PROJECT", raising=False)
    kd.plant_secrets(monkeypatch)
    root = write_project(tmp_path / "plant", {})
    config = {
        "systems": {
            "kingdee": {
                "connector": "kingdee",
                "batch_size": 100,
                "settings": kd.settings(sim.url, auto_submit_audit=True, batch_size=100),
            },
            "mes": {"connector": "fake"},
        },
        "routes": [{"type": "material_consumption", "source": "mes", "targets": ["kingdee"]}],
    }
    (root / "conveyor.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    assert run(root, "db", "upgrade")[0] == 0
    return root


def run(root: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--project", str(root), *args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def poll(root: Path) -> dict[str, Any]:
    code, out = run(root, "--json", "poll", "kingdee")
    assert code == 0, out
    (stream,) = json.loads(out)["streams"]
    assert isinstance(stream, dict)
    return stream


def consumption(n: int, quantity: str = "1.5") -> dict[str, Any]:
    payload = {
        "order_id": f"MO{n:06d}",
        "material": "RM-1001",
        "location": "1000/RM",
        "quantity": quantity,
        "uom": "KG",
    }
    return new_message("material_consumption", "mes", f"CONS-{n}/1", payload)


def deliver(root: Path, messages: list[dict[str, Any]], concurrency: int = 2) -> dict[str, int]:
    """Accept ``messages`` and run the project's delivery worker (real path) until idle."""
    project = Project.load(root)
    engine = make_engine(project.db_url)
    try:
        results = Ledger(engine, project.router).accept_batch(messages)
        assert {r.status for r in results} == {"accepted"}
        worker = Worker(
            engine,
            targets=["kingdee"],
            project=project,
            policy=RetryPolicy(max_attempts=6, base_delay_s=0.05, max_delay_s=0.2),
            options=WorkerOptions(
                concurrency=concurrency, batch_size=100, heartbeat_s=0.3, stale_after_s=30
            ),
        )
        outcome = worker.run(until_idle=True, timeout=300)
        assert outcome.idle, outcome
        return dict(outcome.counters)
    finally:
        engine.dispose()


def deliveries(root: Path) -> dict[str, Any]:
    engine = make_engine(Project.load(root).db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(
                    MessageRow.key,
                    DeliveryRow.status,
                    DeliveryRow.external_ref,
                    DeliveryRow.last_error,
                ).join(MessageRow, MessageRow.id == DeliveryRow.message_pk)
            ).all()
        return {row.key: row for row in rows}
    finally:
        engine.dispose()


def orders(traced: str) -> list[dict[str, Any]]:
    """The production orders of a ``conveyor trace --json`` answer (not the hub's alerts)."""
    return [m for m in json.loads(traced)["messages"] if m["type"] == "production_order"]


def posted(server: SimServer, form: str = "PRD_PickMtrl") -> Counter[str]:
    """Documents per hub key, as the simulator's /_sim/documents shows them."""
    answer = requests.get(f"{server.url}/_sim/documents", params={"form": form}, timeout=10)
    return Counter(str(doc.get("FDescription")) for doc in answer.json()[form])


def test_2500_released_orders_polled_then_nothing_then_a_changed_order_once_more(
    plant: Path, sim: SimServer
) -> None:
    simulator(sim).upsert_orders([])  # nothing yet
    from simulators._erp import generate_orders

    simulator(sim).seed_orders(generate_orders(2500, simulator(sim).master, 3))
    first = poll(plant)
    assert (first["records"], first["accepted"], first["parked"]) == (2500, 2500, 0)
    assert simulator(sim).calls["ExecuteBillQuery"] >= 3  # two PRD_MO pages and PPBOM pages
    code, out = run(plant, "--json", "trace", "MO000007")
    assert code == 0, out
    (order,) = orders(out)
    components = order["payload"]["components"]
    assert components
    assert all(c["material"] and Decimal(c["quantity"]) > 0 for c in components)
    assert order["payload"]["status"] == "released"

    again = poll(plant)
    assert (again["records"], again["accepted"]) == (0, 0)

    simulator(sim).upsert_orders([{"FBillNo": "MO000007", "FTreeEntity": [{"FQty": 640}]}])
    changed = poll(plant)
    assert (changed["records"], changed["accepted"], changed["parked"]) == (1, 1, 0)
    assert poll(plant)["records"] == 0
    code, out = run(plant, "--json", "trace", "MO000007")
    revisions = orders(out)
    assert [m["payload"]["quantity"] for m in revisions] == [
        order["payload"]["quantity"],
        "640",
    ]
    assert revisions[0]["key"] != revisions[1]["key"]  # a revision has a key of its own


def test_1000_consumptions_997_posted_once_3_parked_with_lost_answers(
    plant: Path, sim: SimServer
) -> None:
    simulator(sim).set_stock(
        [{"org": ORG, "warehouse": STOCK, "material": MATERIAL, "quantity": "100000"}]
    )
    simulator(sim).faults.update({"drop_answer_rate": 0.25, "match": "BatchSave", "seed": 11})
    invalid = {17, 500, 983}
    messages = [consumption(n, "999999" if n in invalid else "1.5") for n in range(1, 1001)]
    counters = deliver(plant, messages)
    assert counters["already_present"] > 0  # answers were lost, and found by lookup
    rows = deliveries(plant)
    delivered = [r for r in rows.values() if r.status == "delivered"]
    parked = {k: r for k, r in rows.items() if r.status == "parked"}
    assert len(delivered) == 997
    assert all(r.external_ref and r.external_ref.startswith("SCLLD") for r in delivered)
    assert sorted(parked) == sorted(f"CONS-{n}/1" for n in invalid)
    assert all("出现负库存，库存更新不成功。" in (r.last_error or "") for r in parked.values())
    counts = posted(sim)
    assert len(counts) == 997
    assert set(counts.values()) == {1}
    refs = {r.external_ref for r in delivered}
    assert len(refs) == 997  # each delivery recorded its own bill number
    left = simulator(sim).stock.get((ORG, STOCK, MATERIAL, ""))
    assert left == Decimal("100000") - Decimal("1.5") * 997


def test_a_session_that_expires_mid_run_is_renewed_without_losing_or_doubling(
    plant: Path, sim: SimServer
) -> None:
    fake = simulator(sim)
    fake.set_stock([{"org": ORG, "warehouse": STOCK, "material": MATERIAL, "quantity": "5000"}])
    fake.expire_at_saves = {2, 4}
    counters = deliver(plant, [consumption(n) for n in range(1, 301)], concurrency=1)
    rows = deliveries(plant)
    assert {r.status for r in rows.values()} == {"delivered"}
    counts = posted(sim)
    assert len(counts) == 300
    assert set(counts.values()) == {1}
    assert fake.calls["ValidateUser"] == 3  # the first login and one per expiry
    assert counters["retried"] == 0  # renewed inside the call, not by the worker


def test_reconcile_the_hub_against_the_kingdee_snapshot(plant: Path, sim: SimServer) -> None:
    simulator(sim).set_stock(
        [
            {"org": ORG, "warehouse": STOCK, "material": MATERIAL, "quantity": "40"},
            {"org": ORG, "warehouse": "CK002", "material": "2.01.001", "quantity": "7"},
        ]
    )
    adjust = new_message(
        "stock_adjustment",
        "wms",
        "ADJ-1",
        {
            "material": "RM-1001",
            "location": "1000/RM",
            "quantity": "40",
            "uom": "KG",
            "reason": "count",
        },
    )
    path = plant / "adjust.json"
    path.write_text(json.dumps(adjust), encoding="utf-8")
    assert run(plant, "accept", str(path))[0] == 0
    code, out = run(
        plant,
        "--json",
        "reconcile",
        "--systems",
        "hub,kingdee",
        "--out",
        str(plant / "rec"),
        "--no-alerts",
    )
    assert code == 0, out
    result = json.loads(out)
    sources = {i["system"]: i["source"] for i in result["inputs"]}
    assert sources["kingdee"] == "connector:kingdee"
    assert result["summary"]["matched"] == 1  # RM-1001 at 1000/RM: 40 KG in both
    assert result["summary"]["missing"]["hub"] == 1  # what only Kingdee has
