"""A slow ledger for back-pressure tests, made by the database itself: another connection holds
the write lock (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: ``LOCK TABLE messages``), so every
accept waits behind it until the test lets go. No mock: the hub meets a real lock."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, text


@contextmanager
def ledger_held(engine: Engine) -> Iterator[None]:
    """While inside, nothing can be written to the ledger's messages (readers still read)."""
    with engine.connect() as conn:
        transaction = conn.begin()  # SQLite: BEGIN IMMEDIATE takes the write lock (db.py)
        try:
            if engine.dialect.name == "postgresql":
                conn.execute(text("LOCK TABLE messages IN EXCLUSIVE MODE"))
            else:
                conn.execute(text("DELETE FROM messages WHERE 1 = 0"))
            yield
        finally:
            transaction.rollback()
