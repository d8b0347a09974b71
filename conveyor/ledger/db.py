"""Engines and migrations: SQLite (WAL, serialised writers) by default, PostgreSQL in production."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url

READ_ONLY = "conveyor_read_only"
"""Execution option: ``engine.connect().execution_options(conveyor_read_only=True)`` reads from a
WAL snapshot on SQLite instead of taking the write lock."""


def read_connection(engine: Engine) -> Connection:
    """A connection for reading only (no write lock on SQLite)."""
    return engine.connect().execution_options(**{READ_ONLY: True})


def default_url(project: Path) -> str:
    """``CONVEYOR_DB_URL``, else a SQLite file under ``<project>/.conveyor/``."""
    url = os.environ.get("CONVEYOR_DB_URL")
    if url:
        return url
    folder = project / ".conveyor"
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'ledger.db'}"


LOCK_TIMEOUT_S = 30.0
"""How long a SQLite writer waits for another's write lock before giving up."""


def lock_timeout() -> float:
    """``CONVEYOR_DB_LOCK_TIMEOUT`` (seconds), else ``LOCK_TIMEOUT_S``."""
    try:
        return float(os.environ.get("CONVEYOR_DB_LOCK_TIMEOUT") or LOCK_TIMEOUT_S)
    except ValueError:
        return LOCK_TIMEOUT_S


def normalise_url(url: str) -> str:
    """Pick the psycopg 3 driver for plain ``postgresql://`` URLs."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for the ledger. SQLite gets WAL, a busy timeout and ``BEGIN IMMEDIATE`` so that
    concurrent writers queue instead of failing half-way; PostgreSQL gets a connect timeout."""
    url = normalise_url(url)
    if url.startswith("sqlite"):
        timeout = lock_timeout()
        engine = create_engine(url, connect_args={"timeout": timeout}, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (below)
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            # writers queue on the write lock up front; readers (``read_only``) use WAL snapshots
            # and never wait for a writer
            read_only = conn.get_execution_options().get(READ_ONLY, False)
            conn.exec_driver_sql("BEGIN DEFERRED" if read_only else "BEGIN IMMEDIATE")

        return engine
    kwargs.setdefault("pool_pre_ping", True)
    connect_args = kwargs.pop("connect_args", {})
    connect_args.setdefault("connect_timeout", 10)
    return create_engine(url, connect_args=connect_args, **kwargs)


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Create or migrate the ledger schema with Alembic."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def current_revision(engine: Engine) -> str | None:
    """The ledger's Alembic revision, or None for an empty database."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()
