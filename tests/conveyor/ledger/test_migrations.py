"""Revisions 0004 and 0005 on SQLite and PostgreSQL: 0004 adds the reversal index and the content
hash, and refuses to upgrade a ledger that already holds two reversals of one message; 0005 adds
the deliveries' notes to a ledger that already holds deliveries."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, inspect, text

from conveyor.ledger import db
from conveyor.ledger.db import current_revision, upgrade


def downgrade(engine: Engine, revision: str) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(Path(db.__file__).parent / "migrations"))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def insert_message(engine: Engine, key: str, reversal_of: str | None) -> None:
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO messages (message_id, type, source, key, occurred_at, accepted_at,"
                " schema_version, reversal_of, routes, payload) VALUES (:id, 'production_output',"
                " 'mes', :key, :at, :at, '1.0', :reversal_of, 0, '{}')"
            ),
            {"id": key, "key": key, "at": datetime.now(UTC), "reversal_of": reversal_of},
        )


def test_0004_adds_the_index_and_the_hash(engine: Engine) -> None:
    assert current_revision(engine) == "0005"
    columns = {c["name"] for c in inspect(engine).get_columns("messages")}
    assert "content_hash" in columns
    indexes = {i["name"]: i for i in inspect(engine).get_indexes("messages")}
    assert indexes["uq_messages_source_reversal_of"]["unique"]


def test_upgrade_stops_on_a_message_reversed_twice(engine: Engine) -> None:
    downgrade(engine, "0003")
    assert current_revision(engine) == "0003"
    try:
        insert_message(engine, "GR-1/1", None)
        insert_message(engine, "GR-1R/1", "GR-1/1")
        insert_message(engine, "GR-1R2/1", "GR-1/1")
        with pytest.raises(RuntimeError, match=r"reversed more than once: mes:GR-1/1 \(2×\)"):
            upgrade(engine)
        assert current_revision(engine) == "0003"
    finally:
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM messages"))
        upgrade(engine)
    assert current_revision(engine) == "0005"


def test_0005_adds_delivery_notes_to_an_existing_ledger(engine: Engine) -> None:
    """A ledger at 0004 that already holds a delivery gets the nullable ``deliveries.notes``
    column; the delivery keeps its state and has no notes (NULL)."""
    downgrade(engine, "0004")
    assert current_revision(engine) == "0004"
    assert "notes" not in {c["name"] for c in inspect(engine).get_columns("deliveries")}
    try:
        insert_message(engine, "GR-2/1", None)
        now = datetime.now(UTC)
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO deliveries (message_pk, target, status, attempts, external_ref,"
                    " ordering_key, created_at, updated_at, delivered_at) SELECT id, 'erp',"
                    " 'delivered', 1, 'ERP-1', '', :at, :at, :at FROM messages"
                ),
                {"at": now},
            )
        upgrade(engine)
        assert current_revision(engine) == "0005"
        columns = {c["name"]: c for c in inspect(engine).get_columns("deliveries")}
        assert columns["notes"]["nullable"]
        with engine.connect() as conn:
            row = conn.execute(text("SELECT status, external_ref, notes FROM deliveries")).one()
        assert tuple(row) == ("delivered", "ERP-1", None)
    finally:
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM deliveries"))
            conn.execute(text("DELETE FROM messages"))
        upgrade(engine)
    assert current_revision(engine) == "0005"
