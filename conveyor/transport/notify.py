"""Wake-ups for outbox readers: PostgreSQL ``LISTEN conveyor_outbox`` instead of tight polling.

Migration 0002 installs a trigger that ``NOTIFY``s ``conveyor_outbox`` after each insert into the
outbox (one notification per accept transaction, delivered at commit). ``OutboxSignal`` listens on
its own connection and wakes waiting threads; on SQLite (or when the listener is away) waiters
simply time out and poll. Take a ``token()`` *before* looking at the outbox and ``wait(token)``
after finding it empty, so that a notification in between is not missed.
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy import Connection, Engine, text

log = logging.getLogger(__name__)

CHANNEL = "conveyor_outbox"


def notify_outbox(conn: Connection) -> None:
    """Announce outbox work inside ``conn``'s transaction (PostgreSQL; a no-op elsewhere)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_notify(:channel, '')"), {"channel": CHANNEL})


class OutboxSignal:
    """A generation counter bumped by every ``conveyor_outbox`` notification."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._cond = threading.Condition()
        self._generation = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def active(self) -> bool:
        """True when notifications can arrive (PostgreSQL)."""
        return self.engine.dialect.name == "postgresql"

    def start(self) -> None:
        """Start listening (PostgreSQL only)."""
        if not self.active or self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._listen, name="outbox-listen", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop listening."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def token(self) -> int:
        """The current generation; pass it to ``wait``."""
        with self._cond:
            return self._generation

    def wait(self, token: int, timeout: float) -> bool:
        """Wait until a notification newer than ``token`` arrives, or ``timeout`` passes."""
        with self._cond:
            return self._cond.wait_for(lambda: self._generation != token, timeout)

    def poke(self) -> None:
        """Wake every waiter (used in-process, e.g. after a retry is scheduled)."""
        with self._cond:
            self._generation += 1
            self._cond.notify_all()

    def _listen(self) -> None:
        import psycopg

        conninfo = self.engine.url.set(drivername="postgresql").render_as_string(
            hide_password=False
        )
        while not self._stop.is_set():
            try:
                with psycopg.connect(conninfo, autocommit=True, connect_timeout=10) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.poke()  # anything that arrived while we were not listening
                    while not self._stop.is_set():
                        for _ in conn.notifies(timeout=1.0, stop_after=1):
                            self.poke()
            except Exception as exc:
                log.warning("outbox listener lost its connection: %s", exc)
                self._stop.wait(1.0)
