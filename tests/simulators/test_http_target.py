"""The ``http-target`` simulator over real HTTP: recording by key, single and batch postings,
lookups, deterministic faults, what it exposes at ``/_sim/documents``, and ``conveyor simulate``."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from simulators import Options, available, load
from simulators.http_target import HttpTarget

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def target() -> Iterator[HttpTarget]:
    with HttpTarget() as simulator:
        yield simulator


def post(target: HttpTarget, body: Any, key: str | None = None) -> requests.Response:
    headers = {"X-Conveyor-Key": key} if key else {}
    return requests.post(f"{target.url}/documents", json=body, headers=headers, timeout=5)


def test_a_document_is_recorded_by_key_and_found_again(target: HttpTarget) -> None:
    answer = post(target, {"material": "M1"}, key="mes:GR-1/1")
    assert answer.status_code == 201
    ref = answer.json()["id"]
    found = requests.get(f"{target.url}/documents", params={"key": "mes:GR-1/1"}, timeout=5)
    assert found.json() == {"id": ref, "key": "mes:GR-1/1", "document": {"material": "M1"}}
    assert requests.get(f"{target.url}/documents/mes%3AGR-1%2F1", timeout=5).json()["id"] == ref
    missing = requests.get(f"{target.url}/documents", params={"key": "nope"}, timeout=5)
    assert missing.status_code == 404
    held = requests.get(f"{target.url}/_sim/documents", timeout=5).json()
    assert held == {"documents": {"mes:GR-1/1": {"id": ref, "posts": 1}}, "posts": 1}


def test_an_array_is_answered_per_document(target: HttpTarget) -> None:
    target.configure(reject={"bad": 422})
    answer = post(
        target,
        [{"key": "a", "document": {"n": 1}}, {"key": "bad", "document": {}}, {"key": "c", "n": 3}],
    )
    results = answer.json()
    assert answer.status_code == 200
    assert [r["key"] for r in results] == ["a", "bad", "c"]
    assert results[0]["id"].startswith("DOC-")
    assert results[1] == {
        "key": "bad",
        "status": 422,
        "error": "document bad refused: material is blocked",
    }
    assert target.counts() == {"a": 1, "c": 1}
    assert target.document("c") == {"key": "c", "n": 3}  # a document carrying its own key


def test_commit_then_drop_the_answer_once_per_key(target: HttpTarget) -> None:
    target.configure(drop_keys=["k"])
    with pytest.raises(requests.ConnectionError):
        post(target, {}, key="k")
    assert target.counts() == {"k": 1}  # committed
    assert post(target, {}, key="k").status_code == 201  # the next posting is answered
    assert target.dropped == {"k"}


def test_random_faults_are_repeatable_with_a_seed() -> None:
    def outcomes() -> list[int]:
        with HttpTarget(behaviour=None) as simulator:
            simulator.configure(fail_rate=0.3, seed=7)
            return [post(simulator, {}, key=f"k{n}").status_code for n in range(30)]

    first, second = outcomes(), outcomes()
    assert first == second
    assert 0 < first.count(503) < 30


def test_throttling_says_when_to_come_back_and_errors_can_echo_headers(
    target: HttpTarget,
) -> None:
    target.configure(fail_first=1, fail_status=429, retry_after="3", echo_headers=True)
    answer = requests.post(
        f"{target.url}/documents",
        json={},
        headers={"X-Conveyor-Key": "k", "Authorization": "Bearer abc"},
        timeout=5,
    )
    assert answer.status_code == 429
    assert answer.headers["Retry-After"] == "3"
    assert "Authorization: Bearer abc" in answer.json()["error"]


def test_latency_overlaps_across_connections() -> None:
    import threading
    import time

    with HttpTarget() as simulator:
        simulator.configure(delay_s=0.3)
        threads = [threading.Thread(target=post, args=(simulator, {}, f"k{n}")) for n in range(4)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert time.monotonic() - started < 1.0  # served together, not one after another
        assert len(simulator.counts()) == 4


def test_it_is_registered_and_made_from_the_shared_options() -> None:
    assert "http-target" in available()
    simulator = load("http-target").from_options(
        Options(latency_ms=20, fail_rate=0.1, reject_keys=["x*"], seed=1)
    )
    try:
        b = simulator.behaviour
        assert (b.delay_s, b.fail_rate, b.reject, b.seed) == (0.02, 0.1, {"x*": 422}, 1)
    finally:
        simulator.stop()


def test_conveyor_simulate_prints_the_url_first_and_serves_until_stopped() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "conveyor", "simulate", "http-target", "--port", "0"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        answer = requests.post(
            f"{url}/documents", json={"a": 1}, headers={"X-Conveyor-Key": "k"}, timeout=5
        )
        assert answer.status_code == 201
        stats = json.loads(requests.get(f"{url}/_sim/stats", timeout=5).text)
        assert stats["documents"] == 1
    finally:
        process.terminate()
        assert process.wait(10) == 0


def test_an_unknown_kind_gets_a_suggestion() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "conveyor", "simulate", "http-targt"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode != 0
    assert "Did you mean 'http-target'" in done.stderr
