"""Shared fixtures: a fresh ledger on SQLite and on the local PostgreSQL (a throwaway database per
test session, so parallel runs never meet), and a project directory to work in."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from conveyor.ledger import Ledger
from conveyor.ledger.db import make_engine
from conveyor.routing import Router

PG_ADMIN_URL = os.environ.get(
    "CONVEYOR_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REPO = Path(__file__).resolve().parent.parent


def _pg_available() -> bool:
    try:
        engine = make_engine(PG_ADMIN_URL)
        with engine.connect() as conn:
            conn.execute(text("select 1"))
        engine.dispose()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def pg_database_url() -> Iterator[str]:
    """URL of a new PostgreSQL database for this test session (dropped afterwards)."""
    if not _pg_available():
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not reachable on 127.0.0.1:5432 (CI must start it)")
        pytest.skip("PostgreSQL not reachable")
    name = f"conveyor_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = make_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def _pg_engine(pg_database_url: str) -> Iterator[Engine]:
    engine = make_engine(pg_database_url)
    Ledger(engine).upgrade()
    yield engine
    engine.dispose()


def _truncate_all(engine: Engine) -> None:
    from conveyor.ledger.models import Base

    tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
    with engine.begin() as conn:
        conn.execute(
            text("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE")
        )


@pytest.fixture
def pg_engine(_pg_engine: Engine) -> Engine:
    """The session's PostgreSQL engine, with every ledger table emptied."""
    _truncate_all(_pg_engine)
    return _pg_engine


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    """A migrated SQLite ledger in a temporary folder."""
    engine = make_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
    Ledger(engine).upgrade()
    yield engine
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest) -> Engine:
    """A migrated, empty ledger engine: each test using it runs on SQLite and on PostgreSQL."""
    name = "sqlite_engine" if request.param == "sqlite" else "pg_engine"
    return request.getfixturevalue(name)  # type: ignore[no-any-return]


ROUTES = [
    {"type": "production_order", "source": "erp", "targets": ["mes"]},
    {
        "type": ["material_consumption", "production_output", "stock_*"],
        "source": "mes",
        "targets": ["erp", "wms"],
    },
    {"type": "stock_transfer", "source": "wms", "targets": ["erp"]},
]


@pytest.fixture
def ledger(engine: Engine) -> Ledger:
    """A ledger on ``engine`` with a small set of routes (erp → mes, mes → erp + wms, wms → erp)."""
    return Ledger(engine, Router.from_config(ROUTES))


@pytest.fixture(autouse=True)
def _default_limits() -> Iterator[None]:
    """Every test starts with the default limits (loading a project makes its limits the
    process's)."""
    from conveyor import limits

    limits.use(limits.DEFAULT)
    yield
    limits.use(limits.DEFAULT)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """``fuzz <target>: N cases, M unexpected exceptions`` for every fuzz target that ran
    (tests/fuzz and the property tests of tests/security)."""
    import sys

    harness = sys.modules.get("tests.fuzz.harness")
    lines = harness.summary() if harness is not None else []
    if lines:
        terminalreporter.section(f"fuzz targets (hypothesis profile {harness.PROFILE})")
        for line in lines:
            terminalreporter.write_line(line)
