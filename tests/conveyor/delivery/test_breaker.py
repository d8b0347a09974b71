"""The breaker of a worker: a target that did not answer is left alone for a backoff that grows
with each failed probe (bounded by ``retry.max_delay_s``); any answer closes it."""

from __future__ import annotations

import socket
import time

import requests

from conveyor.config import RetryPolicy
from conveyor.delivery.breaker import TargetBreaker
from conveyor.errors import AmbiguousDeliveryError, TransientError
from conveyor.runtime.http import classify
from tests.support.hub_process import free_port
from tests.support.scripted import RawServer


def test_a_target_without_answer_is_left_alone_until_its_backoff_passed() -> None:
    breaker = TargetBreaker(RetryPolicy(max_attempts=5, base_delay_s=0.04, max_delay_s=0.16))
    assert breaker.wait_s("erp") is None
    first = breaker.failed("erp")
    assert 0.02 <= first <= 0.04
    wait = breaker.wait_s("erp")
    assert wait is not None
    assert 0 < wait <= first
    assert breaker.down() == ["erp"]
    assert breaker.wait_s("wms") is None  # the others are not touched
    assert breaker.failed("erp") <= first  # another thread's failure meanwhile: no longer wait
    for low, high in ((0.04, 0.08), (0.08, 0.16), (0.08, 0.16)):  # bounded by max_delay_s
        time.sleep(0.17)  # the wait has passed: the next failure is the next probe's
        assert breaker.wait_s("erp") is None
        assert low <= breaker.failed("erp") <= high
    breaker.answered("erp")
    assert breaker.wait_s("erp") is None
    assert breaker.down() == []


def _failure(url: str, timeout: float = 2.0) -> requests.RequestException:
    try:
        requests.post(url, json={}, timeout=timeout)
    except requests.RequestException as exc:
        return exc
    raise AssertionError(f"{url} answered")


def test_only_failures_without_an_answer_mark_a_target_down() -> None:
    port = free_port()  # nothing listens there: refused
    refused = classify(_failure(f"http://127.0.0.1:{port}/"), name="erp", what="post", sends=True)
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never answers
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/"
        timed_out = classify(_failure(url, 0.3), name="erp", what="post", sends=True)
    cut_off = RawServer((b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n{", True))
    lost = classify(_failure(cut_off.url), name="erp", what="post", sends=True)
    assert isinstance(refused, TransientError)
    assert refused.no_answer
    assert isinstance(timed_out, AmbiguousDeliveryError)
    assert timed_out.no_answer
    assert isinstance(lost, AmbiguousDeliveryError)
    assert not lost.no_answer  # the target was there: an answer cut off is no outage
    assert not TransientError("HTTP 503").no_answer
