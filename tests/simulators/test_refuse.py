"""``refuse``: a running simulator stops listening for a while (a new connection is refused, a
kept-alive one is closed unanswered), then serves again on the same port with what it held —
for the http-target and for the ERP simulators' shared server."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
import requests

from simulators._erp import SimServer
from simulators.http_target import HttpTarget
from simulators.sap import serve as serve_sap


def _refusing(refuse: Callable[[float], None], refusing: threading.Event) -> threading.Thread:
    """``refuse(1.0)`` on a thread, returned once the port is closed."""
    thread = threading.Thread(target=refuse, args=(1.0,))
    thread.start()
    assert refusing.wait(5)
    time.sleep(0.2)  # the listening socket is closed right after the flag is set
    return thread


def test_the_http_target_refuses_then_serves_again_with_what_it_held() -> None:
    with HttpTarget() as target, requests.Session() as kept:
        first = kept.post(
            f"{target.url}/documents", json={"n": 1}, headers={"X-Conveyor-Key": "K1"}, timeout=5
        )
        assert first.status_code == 201
        thread = _refusing(target.refuse, target.refusing)
        with pytest.raises(requests.ConnectionError):
            requests.post(f"{target.url}/documents", json={"n": 2}, timeout=5)
        with pytest.raises(requests.ConnectionError):  # the kept-alive connection: closed
            kept.post(
                f"{target.url}/documents",
                json={"n": 3},
                headers={"X-Conveyor-Key": "K3"},
                timeout=5,
            )
        thread.join(10)
        again = requests.post(
            f"{target.url}/documents", json={"n": 4}, headers={"X-Conveyor-Key": "K4"}, timeout=5
        )
        assert again.status_code == 201
        assert target.counts() == {"K1": 1, "K4": 1}  # nothing was recorded while refusing


def test_an_erp_simulator_refuses_then_serves_again_on_the_same_port() -> None:
    server: SimServer = serve_sap()
    try:
        faults = f"{server.url}/_sim/faults"
        assert requests.post(faults, json={"latency_ms": 1}, timeout=5).status_code == 200
        port = server.server_address[1]
        thread = _refusing(server.refuse, server.refusing)
        with pytest.raises(requests.ConnectionError):
            requests.get(faults, timeout=5)
        thread.join(10)
        assert server.server_address[1] == port
        assert requests.get(faults, timeout=5).json()["latency_ms"] == 1  # state kept
    finally:
        server.shutdown()
