"""``conveyor up`` as a subprocess against the http-target simulator: messages posted over HTTP
in batches of 100 are delivered exactly once, ``/metrics`` agrees with the ledger, and a SIGTERM
in the middle of a burst loses and repeats nothing."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from conveyor.api.tokens import TokenStore
from conveyor.ledger.db import make_engine
from conveyor.ledger.models import DeliveryRow, MessageRow
from simulators.http_target import Behaviour, HttpTarget

BATCH = 100


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def target() -> Iterator[HttpTarget]:
    """The http-target simulator, a little slow so that deliveries are in flight at SIGTERM."""
    with HttpTarget(behaviour=Behaviour(delay_s=0.002)).start() as sim:
        yield sim


@pytest.fixture
def hub_project(tmp_path: Path, target: HttpTarget) -> tuple[Path, str, str]:
    """A project whose MES posts over HTTP and whose ERP is the simulator; an MES token and a
    monitoring token."""
    (tmp_path / "conveyor.yaml").write_text(
        f"""
systems:
  mes: {{connector: fake, role: mes}}
  erp:
    connector: rest
    role: erp
    batch_size: 100
    settings:
      url: {target.url}/documents
      batch_url: {target.url}/documents
      lookup_url: "{target.url}/documents?key={{key}}"
routes:
  - type: production_output
    source: mes
    targets: [erp]
alerts: {{on_accept: false}}
""",
        encoding="utf-8",
    )
    store = TokenStore.of_project(tmp_path)
    return tmp_path, store.add("mes", "ingest"), store.add("monitoring", "read")


def _message(n: int, run: str) -> dict[str, Any]:
    return {
        "message_id": str(uuid.uuid4()),
        "type": "production_output",
        "source": "mes",
        "key": f"GR-{run}/{n}",
        "occurred_at": "2026-11-21T19:55:00+08:00",
        "schema_version": "1.0",
        "payload": {
            "order_id": "100045",
            "material": "FG-5001",
            "quantity": "1.5",
            "uom": "PCS",
            "location": "1000/FG",
        },
    }


class Up:
    """``conveyor up`` in a subprocess."""

    def __init__(self, project: Path, port: int) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
        self.url = f"http://127.0.0.1:{port}"
        self.log = project / f"up-{time.monotonic_ns()}.log"
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "conveyor",
                "--project",
                str(project),
                "up",
                "--port",
                str(port),
            ],
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
            env=env,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"conveyor up ended: {self.log.read_text()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"conveyor up did not get ready: {self.log.read_text()}")

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=120)


def _post_all(url: str, token: str, messages: list[dict[str, Any]]) -> None:
    """Post in batches of 100, repeating a batch until it is answered 202 (the hub may be
    restarting): a repeat is a duplicate, never a second message."""
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(timeout=30) as client:
        for start in range(0, len(messages), BATCH):
            batch = messages[start : start + BATCH]
            while True:
                try:
                    answer = client.post(f"{url}/v1/messages", json=batch, headers=headers)
                    if answer.status_code == 202:
                        break
                    assert answer.status_code >= 500, answer.text  # only the hub's going away
                except httpx.HTTPError:
                    pass
                time.sleep(0.2)


def _wait_delivered(project: Path, target: HttpTarget, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(target.counts()) >= count and _delivered(project) >= count:
            return
        time.sleep(0.25)
    raise AssertionError(f"delivered {len(target.counts())} of {count} in {timeout} s")


def _engine(project: Path) -> Any:
    return make_engine(f"sqlite:///{project / '.conveyor' / 'ledger.db'}")


def _delivered(project: Path) -> int:
    engine = _engine(project)
    d = DeliveryRow.__table__
    with engine.connect() as conn:
        count = conn.execute(
            select(func.count()).select_from(d).where(d.c.status == "delivered")
        ).scalar_one()
    engine.dispose()
    return int(count)


def _metric(text: str, name: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name) and not line.startswith("#")
    )


def _delivers_every_message_once(
    hub_project: tuple[Path, str, str], target: HttpTarget, n: int
) -> None:
    project, token, reader = hub_project
    up = Up(project, _free_port())
    try:
        run = uuid.uuid4().hex[:6]
        messages = [_message(i, run) for i in range(n)]
        started = time.monotonic()
        _post_all(up.url, token, messages)
        _wait_delivered(project, target, n, timeout=300)
        elapsed = time.monotonic() - started
        assert len(target.counts()) == n
        assert set(target.counts().values()) == {1}
        metrics = httpx.get(f"{up.url}/metrics", headers={"Authorization": f"Bearer {reader}"}).text
        engine = _engine(project)
        with engine.connect() as conn:
            stored = conn.execute(select(func.count()).select_from(MessageRow.__table__)).scalar()
        engine.dispose()
        assert _metric(metrics, 'conveyor_messages_total{source="mes",status="accepted"') == stored
        assert stored == n
        delivered = 'conveyor_deliveries{status="delivered",target="erp"}'
        assert _metric(metrics, delivered) == _delivered(project) == n
        assert _metric(metrics, 'conveyor_delivery_latency_seconds_count{target="erp"}') == n
        assert elapsed < 280
    finally:
        assert up.stop() == 0
    assert "api: http://127.0.0.1" in up.log.read_text()
    assert "worker: targets erp" in up.log.read_text()


def test_up_delivers_2000_posted_messages_exactly_once(
    hub_project: tuple[Path, str, str], target: HttpTarget
) -> None:
    _delivers_every_message_once(hub_project, target, 2000)


@pytest.mark.slow
def test_up_delivers_10000_posted_messages_exactly_once(
    hub_project: tuple[Path, str, str], target: HttpTarget
) -> None:
    _delivers_every_message_once(hub_project, target, 10_000)


def test_sigterm_during_a_burst_loses_and_repeats_nothing(
    hub_project: tuple[Path, str, str], target: HttpTarget
) -> None:
    project, token, _ = hub_project
    port = _free_port()
    n = 1500
    run = uuid.uuid4().hex[:6]
    messages = [_message(i, run) for i in range(n)]
    up = Up(project, port)
    poster = threading.Thread(target=_post_all, args=(up.url, token, messages))
    poster.start()
    deadline = time.monotonic() + 60
    while len(target.counts()) < 200 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert up.stop() == 0  # mid-burst: posting and delivering
    during = len(target.counts())
    assert during > 0
    again = Up(project, port)
    try:
        poster.join(timeout=120)
        assert not poster.is_alive()
        _wait_delivered(project, target, n, timeout=120)
        counts = target.counts()
        assert len(counts) == n
        assert set(counts.values()) == {1}, {k: v for k, v in counts.items() if v != 1}
    finally:
        assert again.stop() == 0
