"""Fixtures for the API tests: a small project (mes → erp), its ledger, tokens of each scope and
a client of the app."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from conveyor.api import ApiSettings, create_app
from conveyor.api.tokens import TokenStore
from conveyor.config import Project
from conveyor.ledger import Ledger

CONFIG = """
systems:
  mes: {connector: fake, role: mes}
  erp: {connector: fake, role: erp}
routes:
  - type: [material_consumption, production_output]
    source: mes
    targets: [erp]
alerts: {on_accept: false}
"""


@pytest.fixture
def project(tmp_path: Path) -> Project:
    """A project folder with two systems and one route."""
    (tmp_path / "conveyor.yaml").write_text(CONFIG, encoding="utf-8")
    return Project.load(tmp_path)


@pytest.fixture
def api_ledger(project: Project, engine: Engine) -> Ledger:
    """The project's routes on the test's ledger (SQLite and PostgreSQL)."""
    return Ledger(engine, project.router)


@pytest.fixture
def tokens(project: Project) -> dict[str, str]:
    """One token per scope."""
    store = TokenStore.of_project(project.root)
    return {scope: store.add(f"t-{scope}", scope) for scope in ("ingest", "read", "operate")}


@pytest.fixture
def settings() -> ApiSettings:
    """Small limits, so the tests can pass them."""
    return ApiSettings(max_body_bytes=64 * 1024, max_messages=50)


@pytest.fixture
def client(project: Project, api_ledger: Ledger, settings: ApiSettings) -> Iterator[TestClient]:
    """A client of the app (no token set)."""
    app = create_app(project, ledger=api_ledger, settings=settings)
    with TestClient(app) as test_client:
        yield test_client


def auth(token: str) -> dict[str, str]:
    """The header carrying ``token``."""
    return {"Authorization": f"Bearer {token}"}


def output(key: str, quantity: str = "48", **changes: Any) -> dict[str, Any]:
    """A valid production output of the MES."""
    message: dict[str, Any] = {
        "message_id": str(uuid.uuid4()),
        "type": "production_output",
        "source": "mes",
        "key": key,
        "occurred_at": "2026-11-21T19:55:00+08:00",
        "schema_version": "1.0",
        "payload": {
            "order_id": "100045",
            "material": "FG-5001",
            "quantity": quantity,
            "uom": "PCS",
            "location": "1000/FG",
            "lot": "FG261121-A",
        },
    }
    message.update(changes)
    return message
