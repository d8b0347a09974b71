"""Prometheus metrics of one API app, on a registry of its own (never the process-global one, so
tests and several apps in one process do not clash).

Counted as it happens (this process):

    conveyor_messages_total{source,type,status}        messages offered over HTTP or by the hub's
                                                       pollers and receivers: accepted, duplicate,
                                                       conflict, rejected (parked), parked
                                                       (unmappable)
    conveyor_inbound_poll_lag_seconds{system}          seconds since the last finished poll or
                                                       receive pass of a system (``conveyor up``)
    conveyor_api_busy_total{waiting}                   requests answered 503 because too many
                                                       ``messages`` or ``bodies`` waited for the
                                                       ledger (back pressure)

Read from the ledger at scrape time (true for every process on the ledger, so ``serve`` without
workers shows them too):

    conveyor_deliveries{target,status}                 deliveries per target and status
    conveyor_queue_depth{target}                       open deliveries (pending, retrying,
                                                       in flight)
    conveyor_queue_oldest_pending_seconds{target}      age of the oldest open delivery
    conveyor_delivery_latency_seconds{target}          histogram: accepted → delivered, for the
                                                       deliveries completed since the app started
    conveyor_stock_alerts_open{alert}                  current safety-stock and shortage alerts

Label values that come from outside (a rejected message's ``source`` or ``type``) are kept only
when the project knows them, else ``other``: a client cannot grow the label set without bound.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from sqlalchemy import Table, func, select

from conveyor.delivery.status import OPEN, delivery_times
from conveyor.ledger.models import DeliveryRow, MessageRow, utcnow
from conveyor.messages import MESSAGE_TYPES

if TYPE_CHECKING:
    from conveyor.ledger import Ledger

log = logging.getLogger(__name__)
deliveries_t = cast(Table, DeliveryRow.__table__)
messages_t = cast(Table, MessageRow.__table__)
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600)
OVERLAP = timedelta(seconds=30)
"""Deliveries recorded up to this long after their ``delivered_at`` (a worker's transaction that
committed late) are still counted in the latency histogram exactly once."""


class Metrics:
    """The metrics of one app (see the module docstring)."""

    def __init__(self, ledger: Ledger, *, systems: Iterable[str] = ()) -> None:
        self.ledger = ledger
        self.registry = CollectorRegistry(auto_describe=True)
        self.systems = frozenset(systems)
        self.messages = Counter(
            "conveyor_messages",
            "Messages offered to the ledger, by source, type and outcome.",
            ("source", "type", "status"),
            registry=self.registry,
        )
        self.deliveries = Gauge(
            "conveyor_deliveries",
            "Deliveries per target and status (from the ledger).",
            ("target", "status"),
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "conveyor_queue_depth",
            "Open deliveries (pending, retrying, in flight) per target.",
            ("target",),
            registry=self.registry,
        )
        self.oldest = Gauge(
            "conveyor_queue_oldest_pending_seconds",
            "Age of the oldest open delivery per target.",
            ("target",),
            registry=self.registry,
        )
        self.latency = Histogram(
            "conveyor_delivery_latency_seconds",
            "Seconds from accept to delivery, per target.",
            ("target",),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.poll_lag = Gauge(
            "conveyor_inbound_poll_lag_seconds",
            "Seconds since the last finished poll or receive pass of a system.",
            ("system",),
            registry=self.registry,
        )
        self.alerts_open = Gauge(
            "conveyor_stock_alerts_open",
            "Current stock alerts (safety stock, short components).",
            ("alert",),
            registry=self.registry,
        )
        self.refused = Counter(
            "conveyor_api_busy",
            "Requests answered 503 because the ledger was behind (back pressure), by what waited.",
            ("waiting",),
            registry=self.registry,
        )
        self._lock = threading.Lock()
        self._polled: dict[str, float] = {}
        self._since: datetime = utcnow()
        self._seen: dict[int, datetime] = {}
        self._reference: Any = None
        self.project: Any = None

    # ------------------------------------------------------------------ as it happens
    def label(self, value: object, known: Iterable[str]) -> str:
        """``value`` as a label when it is one of ``known``, else ``other``."""
        return value if isinstance(value, str) and value in known else "other"

    def count(self, source: object, message_type: object, status: str, amount: int = 1) -> None:
        """Count ``amount`` messages of ``source`` and ``message_type`` that ended as ``status``."""
        if amount <= 0:
            return
        self.messages.labels(
            self.label(source, self.systems), self.label(message_type, MESSAGE_TYPES), status
        ).inc(amount)

    def busy(self, waiting: str) -> None:
        """A request was answered 503: too many ``waiting`` (messages, bodies) for the ledger."""
        self.refused.labels(waiting).inc()

    def polled(self, system: str) -> None:
        """A poll or receive pass of ``system`` has finished."""
        with self._lock:
            self._polled[system] = time.monotonic()

    # ------------------------------------------------------------------ at scrape time
    def refresh(self) -> None:
        """Read the ledger's figures into the gauges and the latency histogram."""
        with self._lock:
            self._refresh_deliveries()
            self._refresh_latency()
            now = time.monotonic()
            for system, at in self._polled.items():
                self.poll_lag.labels(system).set(round(now - at, 3))
            self._refresh_alerts()

    def _refresh_deliveries(self) -> None:
        d = deliveries_t
        now = utcnow()
        with self.ledger.engine.connect() as conn:
            by_status = conn.execute(
                select(d.c.target, d.c.status, func.count()).group_by(d.c.target, d.c.status)
            ).all()
        self.deliveries.clear()
        self.queue_depth.clear()
        self.oldest.clear()
        depth: dict[str, int] = {}
        for target, status, count in by_status:
            self.deliveries.labels(target, status).set(int(count))
            depth.setdefault(target, 0)
            if status in OPEN:
                depth[target] += int(count)
        for target, value in depth.items():
            self.queue_depth.labels(target).set(value)
            self.oldest.labels(target).set(0)
        for target, times in delivery_times(self.ledger.engine).items():
            created = times["oldest_open_at"]
            if created is not None:
                self.oldest.labels(target).set(max(0.0, (now - created).total_seconds()))

    def _refresh_latency(self) -> None:
        d, m = deliveries_t, messages_t
        start = self._since - OVERLAP
        with self.ledger.engine.connect() as conn:
            rows = conn.execute(
                select(d.c.id, d.c.target, d.c.delivered_at, m.c.accepted_at)
                .select_from(d.join(m, m.c.id == d.c.message_pk))
                .where(d.c.status == "delivered", d.c.delivered_at >= start)
            ).all()
        newest = self._since
        for row in rows:
            if row.id in self._seen or row.delivered_at is None:
                continue
            self._seen[row.id] = row.delivered_at
            newest = max(newest, row.delivered_at)
            seconds = (row.delivered_at - row.accepted_at).total_seconds()
            self.latency.labels(row.target).observe(max(0.0, seconds))
        self._since = newest
        horizon = newest - OVERLAP
        self._seen = {k: v for k, v in self._seen.items() if v >= horizon}

    def _refresh_alerts(self) -> None:
        if self.project is None:
            return
        from conveyor.reconcile.alerts import evaluate
        from conveyor.reconcile.reference import load_reference

        try:
            if self._reference is None:
                self._reference = load_reference(self.project)
            alerts = evaluate(self.ledger, self._reference)
        except Exception as exc:  # a broken master-data file must not take /metrics down
            log.warning("stock alerts not evaluated for metrics: %s", exc)
            return
        self.alerts_open.clear()
        counts: dict[str, int] = {}
        for alert in alerts:
            counts[alert.alert] = counts.get(alert.alert, 0) + 1
        for name, value in counts.items():
            self.alerts_open.labels(name).set(value)

    def render(self) -> bytes:
        """The exposition text (after ``refresh``)."""
        self.refresh()
        return generate_latest(self.registry)
