"""Deterministic faults aimed at one document (``Faults.fail_keys`` / ``drop_keys``): the first
call whose body carries the text is answered 503, or committed and left unanswered; each text is
used once, and ``hits`` says what was done."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from simulators._erp import ErpSimulator, Faults, SimRequest, SimResponse, SimServer, start


class Recorder(ErpSimulator):
    """Commits every body it is sent (the smallest simulator)."""

    name = "recorder"

    def __init__(self, faults: Faults) -> None:
        super().__init__(faults=faults)
        self.committed: list[bytes] = []

    def handle_api(self, request: SimRequest) -> SimResponse:
        self.committed.append(request.body)
        return SimResponse(body=b'{"ok": true}')


@pytest.fixture
def server() -> Iterator[SimServer]:
    running = start(Recorder(Faults(fail_keys=["KEY-1"], drop_keys=["KEY-2"])))
    try:
        yield running
    finally:
        running.shutdown()


def _post(server: SimServer, text: str) -> requests.Response:
    return requests.post(f"{server.url}/save", data=text.encode(), timeout=5)


def test_fail_key_answers_503_once_and_commits_nothing(server: SimServer) -> None:
    recorder = server.simulator
    assert isinstance(recorder, Recorder)
    assert _post(server, '{"memo": "KEY-1"}').status_code == 503
    assert recorder.committed == []
    assert _post(server, '{"memo": "KEY-1"}').status_code == 200  # used once
    assert recorder.committed == [b'{"memo": "KEY-1"}']
    assert recorder.faults.hits == [("fail_keys", "KEY-1")]


def test_drop_key_commits_then_drops_the_answer_once(server: SimServer) -> None:
    recorder = server.simulator
    assert isinstance(recorder, Recorder)
    with pytest.raises(requests.ConnectionError):
        _post(server, '{"memo": "KEY-2"}')
    assert recorder.committed == [b'{"memo": "KEY-2"}']  # committed, never answered
    assert _post(server, '{"memo": "KEY-2"}').status_code == 200
    assert _post(server, '{"memo": "OTHER"}').status_code == 200
    assert recorder.faults.hits == [("drop_keys", "KEY-2")]


def test_keys_are_set_through_sim_faults(server: SimServer) -> None:
    answer = requests.post(
        f"{server.url}/_sim/faults", json={"fail_keys": ["KEY-9"]}, timeout=5
    ).json()
    assert answer["fail_keys"] == ["KEY-9"]
    assert _post(server, "KEY-9").status_code == 503
    hits = requests.get(f"{server.url}/_sim/faults", timeout=5).json()["hits"]
    assert hits == [["fail_keys", "KEY-9"]]
