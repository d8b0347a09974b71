"""A real database refusal for tests: a trigger that makes inserting a message fail (all of them,
or the one with a given business key), on SQLite and on PostgreSQL. No mock: the ledger meets an
error from the database itself, as it would on a full disk or a broken constraint."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, text

REFUSAL = "refused by the test trigger"


@contextmanager
def refusing_messages(engine: Engine, key: str | None = None) -> Iterator[None]:
    """While inside, inserting a message (with business key ``key``, or any) fails."""
    if key is not None and "'" in key:
        raise ValueError("a key without quotes, please")
    if engine.dialect.name == "sqlite":
        when = f"WHEN NEW.key = '{key}' " if key is not None else ""
        create = [
            "CREATE TRIGGER test_refuse BEFORE INSERT ON messages "
            f"{when}BEGIN SELECT RAISE(ABORT, '{REFUSAL}'); END"
        ]
        drop = ["DROP TRIGGER IF EXISTS test_refuse"]
    else:
        condition = f"NEW.key = '{key}'" if key is not None else "TRUE"
        create = [
            "CREATE OR REPLACE FUNCTION test_refuse() RETURNS trigger AS $$ BEGIN "
            f"IF {condition} THEN RAISE EXCEPTION '{REFUSAL}'; END IF; RETURN NEW; END "
            "$$ LANGUAGE plpgsql",
            "CREATE TRIGGER test_refuse BEFORE INSERT ON messages "
            "FOR EACH ROW EXECUTE FUNCTION test_refuse()",
        ]
        drop = [
            "DROP TRIGGER IF EXISTS test_refuse ON messages",
            "DROP FUNCTION IF EXISTS test_refuse()",
        ]
    with engine.begin() as conn:
        for statement in create:
            conn.execute(text(statement))
    try:
        yield
    finally:
        with engine.begin() as conn:
            for statement in drop:
                conn.execute(text(statement))
