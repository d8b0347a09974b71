"""Worker heartbeats: who holds a claim, and whether it is still alive.

Each worker (and each embedded consumer) registers a row in ``delivery_workers`` and refreshes
``heartbeat_at`` every ``interval_s``. A worker is alive while its heartbeat is younger than
``stale_after_s`` and it has not stopped; claims held by anyone else are taken over. A worker that
is killed outright (SIGKILL, a lost machine) simply stops beating.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import ColumnElement, Engine, and_, exists, insert, select, update

from conveyor.ledger.models import utcnow
from conveyor.transport.models import workers_t

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_S = 5.0
DEFAULT_STALE_AFTER_S = 30.0


def new_worker_id() -> str:
    """A unique id naming the host and process, e.g. ``host:1234:9f2c1a``."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Liveness:
    """Registers one worker and keeps its heartbeat fresh on a background thread."""

    def __init__(
        self,
        engine: Engine,
        worker_id: str | None = None,
        *,
        transport: str = "",
        targets: Sequence[str] = (),
        interval_s: float = DEFAULT_INTERVAL_S,
        stale_after_s: float = DEFAULT_STALE_AFTER_S,
    ) -> None:
        self.engine = engine
        self.worker_id = worker_id or new_worker_id()
        self.transport = transport
        self.targets = tuple(targets)
        self.interval_s = interval_s
        self.stale_after_s = stale_after_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Register (or re-register) the worker and start beating."""
        now = utcnow()
        with self.engine.begin() as conn:
            conn.execute(workers_t.delete().where(workers_t.c.id == self.worker_id))
            conn.execute(
                insert(workers_t).values(
                    id=self.worker_id,
                    host=socket.gethostname()[:200],
                    pid=os.getpid(),
                    transport=self.transport,
                    targets=",".join(self.targets),
                    started_at=now,
                    heartbeat_at=now,
                )
            )
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, name=f"heartbeat-{self.worker_id}", daemon=True
        )
        self._thread.start()

    def beat(self) -> None:
        """Refresh the heartbeat now."""
        with self.engine.begin() as conn:
            conn.execute(
                update(workers_t)
                .where(workers_t.c.id == self.worker_id)
                .values(heartbeat_at=utcnow(), stopped_at=None)
            )

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.beat()
            except Exception as exc:  # the database may be away for a moment; keep trying
                log.warning("heartbeat of %s failed: %s", self.worker_id, exc)

    def stop(self) -> None:
        """Stop beating and mark the worker stopped, so its claims are taken over at once."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval_s + 5)
            self._thread = None
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    update(workers_t)
                    .where(workers_t.c.id == self.worker_id)
                    .values(stopped_at=utcnow())
                )
        except Exception as exc:
            log.warning("could not mark worker %s stopped: %s", self.worker_id, exc)

    def alive(self, column: Any) -> ColumnElement[bool]:
        """SQL: the worker named in ``column`` is alive (fresh heartbeat, not stopped)."""
        return alive_clause(column, self.stale_after_s)


def alive_clause(column: Any, stale_after_s: float, cutoff: Any = None) -> ColumnElement[bool]:
    """SQL: the worker named in ``column`` has a fresh heartbeat and has not stopped.

    ``cutoff`` (a bind parameter of statements built once) replaces "now minus
    ``stale_after_s``"."""
    if cutoff is None:
        cutoff = utcnow() - timedelta(seconds=stale_after_s)
    return exists(
        select(workers_t.c.id).where(
            and_(
                workers_t.c.id == column,
                workers_t.c.heartbeat_at > cutoff,
                workers_t.c.stopped_at.is_(None),
            )
        )
    )
