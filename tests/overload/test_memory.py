"""Bounded memory under a 10× burst: ``conveyor serve`` (the API) and ``conveyor run`` (a delivery
worker) run as their own processes on the PostgreSQL ledger while clients post canonical
messages, first at the normal rate (2 clients, 100 messages a body), then a burst of 10× the
rate (20 clients) with bodies of 5× the size (500 messages; the long form: 10×, 1,000). The
resident set size (VmRSS) of each process is sampled every 50 ms; its peak is printed and held
under ``RSS_BOUND_MB``.

Clients honour ``Retry-After``: what the API refuses with 503 (back pressure) is posted again,
so every message sent is accepted exactly once in the end. The long forms (``slow``) push
five times as many messages (on the embedded transport and on RabbitMQ) and lock the ledger
under the API (the CI form of that is ``tests/overload/test_backpressure.py``).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, text

from conveyor.api.tokens import TokenStore
from simulators.http_target import HttpTarget
from tests.conveyor.delivery.conftest import _broker_url, output, write_project
from tests.support.held_ledger import ledger_held
from tests.support.hub_process import conveyor, free_port, kill, wait_http

pytestmark = pytest.mark.postgres

RSS_BOUND_MB = 300
"""Peak RSS allowed to each process (measured peaks: docs/reliability.md)."""


def rss_mb(pid: int) -> float:
    """Resident set size of ``pid`` in MiB, from ``/proc/<pid>/status`` (0 once it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
    except OSError:
        return 0.0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class PeakRss:
    """Samples the RSS of some processes every ``every_s`` on a thread; keeps each one's peak
    and its value at the first sample."""

    def __init__(self, pids: dict[str, int], every_s: float = 0.05) -> None:
        self.pids = pids
        self.every_s = every_s
        self.peak = dict.fromkeys(pids, 0.0)
        self.start = {name: rss_mb(pid) for name, pid in pids.items()}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            for name, pid in self.pids.items():
                self.peak[name] = max(self.peak[name], rss_mb(pid))

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


@dataclass
class Load:
    """What the clients did."""

    messages: int = 0
    """Messages accepted (answers 202)."""
    refused: int = 0
    """Answers 503 (back pressure), each posted again after its Retry-After."""
    seconds: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, status: int, messages: int) -> None:
        """Count one answer."""
        with self._lock:
            if status == 503:
                self.refused += 1
            else:
                self.messages += messages


def push(base: str, token: str, clients: int, bodies: int, size: int, load: Load) -> None:
    """``clients`` threads each post ``bodies`` bodies of ``size`` new messages, posting a body
    again after ``Retry-After`` when it was refused."""

    def client() -> None:
        with httpx.Client(
            base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=120
        ) as http:
            for _ in range(bodies):
                prefix = uuid.uuid4().hex[:12]
                body = json.dumps([output(n, key=f"{prefix}-{n}") for n in range(size)])
                while True:
                    answer = http.post(
                        "/v1/messages",
                        content=body,
                        headers={"Content-Type": "application/json"},
                    )
                    load.add(answer.status_code, size)
                    if answer.status_code != 503:
                        assert answer.status_code == 202, answer.text
                        break
                    time.sleep(float(answer.headers["Retry-After"]))

    started = time.monotonic()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    load.seconds += time.monotonic() - started


@dataclass
class Hub:
    """The API and a worker as processes, the target the worker posts to."""

    kind: str
    base: str
    token: str
    pids: dict[str, int]
    target: HttpTarget
    engine: Engine


@pytest.fixture(params=["embedded", pytest.param("rabbitmq", marks=pytest.mark.rabbitmq)])
def hub(request: pytest.FixtureRequest, tmp_path: Path, pg_engine: Engine) -> Iterator[Hub]:
    """``conveyor serve`` and ``conveyor run`` on the session's PostgreSQL ledger."""
    if request.param == "rabbitmq" and request.node.get_closest_marker("slow") is None:
        pytest.skip("the RabbitMQ form runs with the long test")
    broker = _broker_url() if request.param == "rabbitmq" else None
    target = HttpTarget().start()
    project = write_project(
        tmp_path / "plant",
        target.url,
        alerts={"on_accept": False},
        api={"max_queued_messages": 10_000, "retry_after_s": 1},
    )
    token = TokenStore.of_project(project.root).add("mes", "ingest")
    url = pg_engine.url.render_as_string(hide_password=False)
    port = free_port()
    api = conveyor(project.root, url, "serve", "--port", str(port), broker_url=broker)
    worker = conveyor(project.root, url, "run", "--concurrency", "4", broker_url=broker)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/healthz", api)
        kind = f"{request.param} transport, PostgreSQL ledger"
        yield Hub(kind, base, token, {"serve": api.pid, "run": worker.pid}, target, pg_engine)
    finally:
        kill(api)
        kill(worker)
        target.stop()
        if broker:
            from conveyor.transport.rabbitmq import RabbitMQTransport

            RabbitMQTransport(broker, policy=project.retry).delete(["erp"])


def _burst(hub: Hub, scale: int, size: int) -> dict[str, Any]:
    """2 clients posting 100-message bodies, then 20 posting ``size``-message ones."""
    normal, burst = Load(), Load()
    with PeakRss(hub.pids) as sampled:
        push(hub.base, hub.token, clients=2, bodies=5 * scale, size=100, load=normal)
        at_normal = dict(sampled.peak)
        push(hub.base, hub.token, clients=20, bodies=scale, size=size, load=burst)
        time.sleep(3)  # the worker keeps delivering the backlog
    sent = normal.messages + burst.messages
    with hub.engine.connect() as conn:
        stored = conn.execute(text("SELECT count(*) FROM messages")).scalar_one()
    return {
        "sent": sent,
        "stored": stored,
        "normal": normal,
        "burst": burst,
        "start": sampled.start,
        "at_normal": at_normal,
        "peak": sampled.peak,
        "delivered": len(hub.target.counts()),
    }


def _report(kind: str, figures: dict[str, Any]) -> None:
    normal, burst = figures["normal"], figures["burst"]
    print(
        f"\nmemory ({kind}): normal {normal.messages} msgs in {normal.seconds:.1f} s "
        f"({normal.messages / normal.seconds:.0f}/s), burst {burst.messages} msgs in "
        f"{burst.seconds:.1f} s ({burst.messages / burst.seconds:.0f}/s, {burst.refused} × 503 "
        f"then re-sent); stored {figures['stored']}, delivered so far {figures['delivered']}"
    )
    for name in figures["peak"]:
        print(
            f"  {name}: RSS at start {figures['start'][name]:.0f} MiB, peak at normal rate "
            f"{figures['at_normal'][name]:.0f} MiB, peak under the burst "
            f"{figures['peak'][name]:.0f} MiB (bound {RSS_BOUND_MB} MiB)"
        )


def test_rss_of_api_and_worker_stays_bounded_under_a_10x_burst(hub: Hub) -> None:
    figures = _burst(hub, scale=1, size=500)  # 10× the rate, 5× the size: CI stays short
    _report(hub.kind, figures)
    assert figures["stored"] == figures["sent"] == 2 * 5 * 100 + 20 * 500
    for name, peak in figures["peak"].items():
        assert 0 < peak < RSS_BOUND_MB, name


@pytest.mark.slow
def test_rss_stays_bounded_under_a_long_10x_burst(hub: Hub) -> None:
    figures = _burst(hub, scale=5, size=1000)
    _report(f"long, {hub.kind}", figures)
    assert figures["stored"] == figures["sent"] == 5 * (2 * 5 * 100 + 20 * 1000)
    for name, peak in figures["peak"].items():
        assert 0 < peak < RSS_BOUND_MB, name


@pytest.mark.slow
def test_a_locked_ledger_gets_503s_not_an_unbounded_queue(hub: Hub) -> None:
    """The ledger's messages table locked by another transaction while 15 clients post 1,000
    messages each: past ``api.max_queued_messages`` (10,000) the API answers 503 with
    ``Retry-After`` instead of holding every body; after the lock every message is in."""
    load = Load()
    with PeakRss({"serve": hub.pids["serve"]}) as sampled:
        with ledger_held(hub.engine):
            pushing = threading.Thread(
                target=push, args=(hub.base, hub.token, 15, 1, 1000, load), daemon=True
            )
            pushing.start()
            deadline = time.monotonic() + 120
            while load.refused < 15:  # every body past the bound refused, and refused again
                assert time.monotonic() < deadline, load
                time.sleep(0.05)
            refused_while_held, taken_while_held = load.refused, load.messages
            peak_while_held = sampled.peak["serve"]
        pushing.join(timeout=300)
    with hub.engine.connect() as conn:
        stored = conn.execute(text("SELECT count(*) FROM messages")).scalar_one()
    print(
        f"\nledger locked, 15 clients × 1000 messages: {refused_while_held} answers 503 "
        f"while locked ({load.refused} in all, each re-sent after Retry-After), serve RSS peak "
        f"{peak_while_held:.0f} MiB while locked, {sampled.peak['serve']:.0f} MiB in all; "
        f"stored {stored} of {load.messages}"
    )
    assert taken_while_held == 0  # at most 10 bodies of 1,000 wait; the others are refused
    assert stored == load.messages == 15_000
    assert sampled.peak["serve"] < RSS_BOUND_MB
