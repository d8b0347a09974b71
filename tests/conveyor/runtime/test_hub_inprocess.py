"""``OneMachine`` in this process: pollers on ``poll_every`` and receive loops feed the ledger,
the worker delivers, the metrics show the poll lag, and stopping ends every component."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from pathlib import Path

import httpx
import yaml

from connectors.fake import shared_store
from conveyor.api.tokens import TokenStore
from conveyor.config import Project
from conveyor.runtime.hub import OneMachine


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_pollers_receivers_worker_and_api_in_one_process(tmp_path: Path) -> None:
    store = f"up-{uuid.uuid4().hex[:8]}"
    records = [
        {
            "message_id": str(uuid.uuid4()),
            "type": "production_output",
            "source": "mes",
            "key": f"GR-{n}",
            "occurred_at": "2026-11-21T19:55:00+08:00",
            "schema_version": "1.0",
            "payload": {
                "order_id": "1",
                "material": "FG-1",
                "quantity": "2",
                "uom": "PCS",
                "location": "1000/FG",
            },
        }
        for n in range(20)
    ]
    config = {
        "systems": {
            "mes": {"connector": "fake", "poll_every": 0.2, "settings": {"records": records}},
            "erp": {"connector": "fake", "settings": {"store": store}},
        },
        "routes": [{"type": "production_output", "source": "mes", "targets": ["erp"]}],
        "alerts": {"on_accept": False},
    }
    (tmp_path / "conveyor.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    token = TokenStore.of_project(tmp_path).add("ops", "read")
    said: list[str] = []
    port = _port()
    machine = OneMachine(Project.load(tmp_path), port=port, say=said.append)
    machine.start()
    waiting = threading.Thread(target=machine.wait)
    waiting.start()
    try:
        deadline = time.monotonic() + 60
        while len(shared_store(store).sent) < 20 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert sorted(shared_store(store).sent) == sorted(f"mes:{r['key']}" for r in records)
        metrics = httpx.get(
            f"http://127.0.0.1:{port}/metrics", headers={"Authorization": f"Bearer {token}"}
        ).text
        assert 'conveyor_inbound_poll_lag_seconds{system="mes"}' in metrics
        accepted = sum(
            float(line.rsplit(" ", 1)[1])
            for line in metrics.splitlines()
            if line.startswith('conveyor_messages_total{source="mes",status="accepted"')
        )
        assert accepted == 20  # by the poller or the receive loop, whichever came first
    finally:
        machine.stop()
        waiting.join(timeout=120)
    assert not waiting.is_alive()
    assert any(line.startswith("api: http://127.0.0.1:") for line in said)
    assert "worker: targets erp (embedded transport, 4 threads)" in said
    assert "poll: mes (fake) every 0.2 s" in said
    assert "receive: mes (fake) every 0.2 s" in said
    assert said[-1] == "stopped"
    assert all(p.passes > 0 for p in machine.inbound)


def test_a_system_that_only_writes_files_gets_no_receive_loop_after_its_first_look(
    tmp_path: Path,
) -> None:
    config = {
        "systems": {"wms": {"connector": "files", "settings": {"outbox": str(tmp_path)}}},
        "alerts": {"on_accept": False},
    }
    (tmp_path / "conveyor.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    said: list[str] = []
    machine = OneMachine(Project.load(tmp_path), port=_port(), say=said.append)
    machine.start()
    try:
        (receiving,) = machine.inbound
        assert receiving.thread is not None
        receiving.thread.join(timeout=30)
        assert not receiving.thread.is_alive()
        assert "receive: wms has nothing to take in" in said
        assert receiving.last_error is None
    finally:
        machine.stop()
        machine.wait()
