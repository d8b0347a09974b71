"""The operator's page with a real Airflow: ``airflow plugins`` lists the plugin, and Airflow's own
app (``create_app()``) serves its routes behind Airflow's authentication — 401 without a token,
200 as admin and as viewer, 403 for a viewer's replay — with the README's sample day in a
temporary ledger: a parked delivery shows with its (escaped) reason, its replay button carries the
``conveyor_replay`` conf, and the latest reconciliation's accuracy links to its HTML report.

Skipped when Airflow is not installed, except in CI (``CI`` set), where that is a failure."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from sqlalchemy import select, update

ROOT = Path(__file__).resolve().parents[3]
try:
    import airflow  # noqa: F401
except ImportError:
    if os.environ.get("CI"):
        raise
    pytest.skip("Airflow is not installed (pip install -e '.[airflow]')", allow_module_level=True)

REASON = "sap said: <b>period 2026/11</b> is closed & locked"
"""A parked reason with markup in it: the page must show it as text."""


def _airflow_env(home: Path) -> dict[str, str]:
    """A throw-away Airflow: its own home, SQLite database, simple auth manager with an admin and
    a viewer, no examples."""
    for folder in ("dags", "plugins"):
        (home / folder).mkdir(exist_ok=True)
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(home / "plugins"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__AUTH_MANAGER": (
            "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
        ),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin,viewer:viewer",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        "AIRFLOW__API_AUTH__JWT_SECRET": uuid.uuid4().hex * 2,
    }


def _airflow(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """One ``airflow`` command of this interpreter's installation."""
    command = [str(Path(sys.executable).parent / "airflow"), *args]
    return subprocess.run(
        command, env={**os.environ, **env}, capture_output=True, text=True, timeout=180
    )


@pytest.fixture(scope="module")
def airflow_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A new Airflow database, and this process's Airflow pointed at it for the module."""
    from airflow import settings
    from airflow.utils.db import initdb

    env = _airflow_env(tmp_path_factory.mktemp("airflow"))
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        settings.dispose_orm()
        settings.configure_vars()
        settings.configure_orm()
        initdb()  # what `airflow db migrate` does to an empty database, without a second process
        yield env
        settings.dispose_orm()
    settings.configure_vars()
    settings.configure_orm()


@pytest.fixture(scope="module")
def plant(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The README's sample day on a copy of the project: messages and the MES's consumption
    export taken in, the 18:00 reconciliation against the WMS stored (accuracy 60.00 %), one
    delivery to SAP parked, one to the WMS to be checked (no reason recorded); the api-server
    finds it as Airflow would, through ``CONVEYOR_PROJECT``."""
    from conveyor.cli import main
    from conveyor.config import Project
    from conveyor.ledger import Ledger
    from conveyor.ledger.models import DeliveryRow

    root = tmp_path_factory.mktemp("plant")
    shutil.copy(ROOT / "conveyor.yaml", root)
    for folder in ("mappings", "master_data", "samples"):
        shutil.copytree(ROOT / folder, root / folder)
    with pytest.MonkeyPatch.context() as patch:
        for name in ("CONVEYOR_DB_URL", "CONVEYOR_BROKER_URL"):
            patch.delenv(name, raising=False)
        patch.setenv("CONVEYOR_PROJECT", str(root))
        runner = CliRunner()
        samples = root / "samples"
        consumption = [str(samples / "mes_consumption.csv")]
        snapshot, out = [f"wms={samples / 'wms_snapshot.json'}"], root / "out" / "recon"
        for args in (
            ["db", "upgrade"],
            ["accept", str(samples / "messages.jsonl")],
            ["ingest", "--system", "mes", "--type", "material_consumption", *consumption],
            ["reconcile", "--systems", "hub,wms", "--snapshot", *snapshot, "--out", str(out)],
        ):
            done = runner.invoke(main, args, catch_exceptions=False)
            assert done.exit_code == (1 if args[0] == "ingest" else 0), done.output  # 1 parked
        ledger = Ledger.open(Project.load(root))
        d = DeliveryRow.__table__
        with ledger.engine.begin() as conn:
            first = conn.execute(select(d.c.id).where(d.c.target == "sap").limit(1)).scalar_one()
            conn.execute(
                update(d).where(d.c.id == first).values(status="parked", last_error=REASON)
            )
            unsure = conn.execute(select(d.c.id).where(d.c.target == "wms").limit(1)).scalar_one()
            conn.execute(update(d).where(d.c.id == unsure).values(status="needs_check"))
        ledger.engine.dispose()
        yield root


@pytest.fixture(scope="module")
def client(airflow_home: dict[str, str], plant: Path) -> Iterator[TestClient]:
    """A client of Airflow's own api-server app, with the plugin mounted from its entry point."""
    from airflow.api_fastapi.app import create_app, purge_cached_app

    from conveyor.airflow import plugin
    from conveyor.api.app import LazyHub

    plugin.app.state.hub = LazyHub(plugin.load_hub)  # a fresh hub for this module's project
    purge_cached_app()
    with TestClient(create_app(), base_url="http://localhost:8080") as test_client:
        yield test_client
    purge_cached_app()


def _token(role: str) -> str:
    """A JWT of the simple auth manager for a user of ``role``."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    return str(get_auth_manager().generate_jwt(SimpleAuthManagerUser(username=role, role=role)))


def _as(role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {_token(role)}"}


def test_airflow_lists_the_plugin_with_its_app_and_view(airflow_home: dict[str, str]) -> None:
    listed = _airflow("plugins", "-o", "json", env=airflow_home)
    assert listed.returncode == 0, listed.stderr[-3000:]
    plugins = json.loads(listed.stdout[listed.stdout.index("[") :])
    ours = next(p for p in plugins if p["name"] == "conveyor")
    assert ours["fastapi_apps"] == [
        {"app": "fastapi.applications.FastAPI", "url_prefix": "/conveyor", "name": "Conveyor"}
    ]
    assert [(v["name"], v["href"], v["url_route"]) for v in ours["external_views"]] == [
        ("Conveyor", "/conveyor/", "conveyor")
    ]


@pytest.mark.parametrize(
    "path", ["/conveyor/", "/conveyor/v1/status", "/conveyor/v1/parked", "/conveyor/v1/stock"]
)
def test_anonymous_callers_are_refused(client: TestClient, path: str) -> None:
    answer = client.get(path)
    assert answer.status_code == 401
    assert "Conveyor" not in answer.text


def test_a_replay_needs_the_right_to_trigger_the_replay_dag(client: TestClient) -> None:
    body = {"target": "sap", "reason": "period", "dry_run": True}
    assert client.post("/conveyor/v1/replay", json=body).status_code == 401
    assert client.post("/conveyor/v1/replay", json=body, headers=_as("viewer")).status_code == 403
    answer = client.post("/conveyor/v1/replay", json=body, headers=_as("admin"))
    assert answer.status_code == 200, answer.text
    assert answer.json()["dry_run"] is True
    assert answer.json()["selected"] == 1
    assert answer.json()["requeued"] == 0


def test_the_hub_routes_answer_an_admin_with_the_ledger(client: TestClient) -> None:
    admin = _as("admin")
    status = client.get("/conveyor/v1/status", headers=admin)
    assert status.status_code == 200, status.text
    assert status.json()["targets"]["sap"]["parked"] == 1
    assert status.json()["times"]["sap"]["oldest_open_at"] is not None
    parked = client.get("/conveyor/v1/parked", headers=admin).json()["deliveries"]
    assert sorted((p["target"], p["reason"] or "") for p in parked) == [
        ("sap", REASON),
        ("wms", ""),
    ]
    stock = client.get("/conveyor/v1/stock", params={"material": "RM-2001"}, headers=admin)
    assert {p["location"] for p in stock.json()["positions"]} >= {"1000/RM"}


def test_the_page_shows_targets_parked_reasons_and_the_latest_reconciliation(
    client: TestClient,
) -> None:
    answer = client.get("/conveyor/", headers={"Cookie": f"_token={_token('viewer')}"})  # the UI
    assert answer.status_code == 200, answer.text
    assert "script-src 'nonce-" in answer.headers["content-security-policy"]
    page = answer.text
    assert html.escape(REASON, quote=False) in page
    assert "<b>period" not in page
    rows = re.findall(r'<tr data-target="([^"]+)">', page)
    assert rows == sorted(rows)
    assert {"sap", "mes", "wms"} <= set(rows)

    buttons = re.findall(r'<button type="button" class="replay" data-conf="([^"]+)"', page)
    assert [json.loads(html.unescape(b)) for b in buttons] == [
        {"target": "sap", "reason_like": REASON, "ids": None, "dry_run": True}
    ]
    assert "(no reason recorded)" in page  # shown, but no button: no filter to replay by
    assert '<b id="accuracy">60.00 %</b>' in page
    link = re.search(r'id="report-link" href="([^"]+)"', page)
    assert link is not None
    report = client.get(f"/conveyor/{html.unescape(link.group(1))}", headers=_as("viewer"))
    assert report.status_code == 200
    assert report.headers["content-type"].startswith("text/html")
    assert report.headers["content-disposition"].startswith("inline")
    assert "60.00" in report.text


def test_without_a_project_the_page_says_what_to_set(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from conveyor.airflow import plugin
    from conveyor.api.app import LazyHub

    kept: Any = plugin.app.state.hub
    monkeypatch.setenv("CONVEYOR_PROJECT", str(tmp_path))
    plugin.app.state.hub = LazyHub(plugin.load_hub)
    try:
        answer = client.get("/conveyor/v1/status", headers=_as("admin"))
    finally:
        plugin.app.state.hub = kept
    assert answer.status_code == 503
    assert "CONVEYOR_PROJECT" in answer.json()["detail"]
    assert not (tmp_path / ".conveyor").exists()
