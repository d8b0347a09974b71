"""The HTTP layer every HTTP connector uses: how each failure is classified (with ``responses``
for answers, with real sockets on loopback for what only a socket can do), timeouts, TLS, proxies,
pooling and shared sessions."""

from __future__ import annotations

import base64
import socket
from decimal import Decimal
from typing import Any

import pytest
import requests
import responses

from conveyor import redact
from conveyor.errors import AmbiguousDeliveryError, RejectedError, TransientError
from conveyor.runtime import http
from conveyor.runtime.http import HttpClient, retry_after
from tests.support.scripted import Answer, RawServer, Scripted

URL = "http://erp.example/api/documents"


def client(**settings: Any) -> HttpClient:
    return HttpClient("erp", {"timeout_s": 2, **settings})


@responses.activate
@pytest.mark.parametrize(
    ("status", "error", "ambiguous"),
    [
        (500, TransientError, False),
        (408, TransientError, False),
        (502, AmbiguousDeliveryError, True),
        (504, AmbiguousDeliveryError, True),
        (422, RejectedError, False),
        (404, RejectedError, False),
    ],
)
def test_answers_are_classified_in_one_place(
    status: int, error: type[Exception], ambiguous: bool
) -> None:
    responses.post(URL, status=status, body="busy or refused")
    with pytest.raises(error, match=f"erp: send: HTTP {status}: busy or refused") as caught:
        client().post_json(URL, {"a": 1})
    assert isinstance(caught.value, AmbiguousDeliveryError) is ambiguous


@responses.activate
def test_throttling_carries_the_retry_after_the_target_asked_for() -> None:
    responses.post(URL, status=429, headers={"Retry-After": "7"})
    responses.post(URL, status=503, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})
    responses.post(URL, status=503)
    waits = []
    for _ in range(3):
        with pytest.raises(TransientError) as caught:
            client().post_json(URL, {})
        assert not isinstance(caught.value, AmbiguousDeliveryError)
        waits.append(caught.value.retry_after_s)
    assert waits == [7.0, 0.0, None]  # a date in the past: no wait; none given: the backoff's
    assert retry_after("soon") is None


@responses.activate
def test_a_refusal_keeps_the_targets_text_redacted_and_clipped() -> None:
    redact.remember("tok-1234567890")
    echoed = "material blocked; request had Authorization: Bearer tok-1234567890 " + "x" * 5000
    responses.post(URL, status=422, body=echoed)
    with pytest.raises(RejectedError) as caught:
        client().post_json(URL, {})
    text = str(caught.value)
    assert "material blocked" in text
    assert "tok-1234567890" not in text
    assert len(text) < 700
    redact.forget_all()


@responses.activate
def test_an_unparseable_answer_to_a_posting_is_ambiguous() -> None:
    responses.post(URL, status=201, body="<html>proxy page</html>")
    rest = client()
    answer = rest.post_json(URL, {})
    with pytest.raises(AmbiguousDeliveryError, match="not JSON"):
        rest.answer_json(answer)


@responses.activate
def test_every_call_has_connect_and_read_timeouts() -> None:
    responses.post(URL, json={"id": "D1"})
    responses.get(URL, status=404)
    rest = client(timeout_s=3, connect_timeout_s=0.5)
    assert rest.post_json(URL, {"n": 1}).json() == {"id": "D1"}
    assert rest.get(URL) is None
    for call in responses.calls:
        assert call.request.req_kwargs["timeout"] == (0.5, 3.0)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_refused_connection_was_not_sent_and_is_plain_transient() -> None:
    url = f"http://127.0.0.1:{_free_port()}/documents"
    with pytest.raises(TransientError, match="not sent") as caught:
        client().post_json(url, {})
    assert not isinstance(caught.value, AmbiguousDeliveryError)


def test_a_dns_failure_was_not_sent() -> None:
    with pytest.raises(TransientError, match="not sent") as caught:
        client().post_json("http://no-such-host.invalid/documents", {})
    assert not isinstance(caught.value, AmbiguousDeliveryError)


def test_a_connect_timeout_is_plain_transient() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)  # never accepts: once the backlog is full, connects hang
        port = listener.getsockname()[1]
        filler = [socket.create_connection(("127.0.0.1", port), timeout=1)]
        for _ in range(3):  # fill the accept queue until a connect times out
            probe = socket.socket()
            probe.settimeout(0.2)
            try:
                probe.connect(("127.0.0.1", port))
                filler.append(probe)
            except TimeoutError:
                probe.close()
                break
        else:
            pytest.skip("this kernel accepts every connect: no connect timeout to provoke")
        with pytest.raises(TransientError, match="connect timeout") as caught:
            client(timeout_s=0.2).post_json(f"http://127.0.0.1:{port}/d", {})
        assert not isinstance(caught.value, AmbiguousDeliveryError)
        for sock in filler:
            sock.close()


def test_a_read_timeout_after_sending_is_ambiguous(server: Scripted) -> None:
    server.answer(Answer(201, {"id": "late"}, delay_s=0.5))
    with pytest.raises(AmbiguousDeliveryError, match="no answer in time") as caught:
        client(timeout_s=0.2).post_json(f"{server.url}/documents", {})
    assert caught.value.transient
    assert len(server.received) == 1  # it did reach the server


def test_a_connection_closed_after_the_request_was_written_is_ambiguous() -> None:
    raw = RawServer((b"", True))  # reads the whole request, then closes without a word
    with pytest.raises(AmbiguousDeliveryError, match="lost after sending"):
        client().post_json(f"{raw.url}/documents", {"a": 1})


def test_an_answer_cut_off_midway_is_ambiguous() -> None:
    raw = RawServer((b'HTTP/1.1 201 Created\r\nContent-Length: 40\r\n\r\n{"id": ', True))
    with pytest.raises(AmbiguousDeliveryError):
        client().post_json(f"{raw.url}/documents", {})


def test_a_failed_lookup_is_only_transient() -> None:
    raw = RawServer((b"", True))
    with pytest.raises(TransientError) as caught:
        client().get(f"{raw.url}/documents/k")
    assert not isinstance(caught.value, AmbiguousDeliveryError)


def test_connections_are_pooled_and_closed_with_the_client(server: Scripted) -> None:
    rest = client()
    for _ in range(3):
        rest.post_json(f"{server.url}/documents", {})
    assert len({r.peer for r in server.received}) == 1  # one kept-alive connection carried all
    session = rest.session
    rest.close()
    assert rest.closed
    assert len(session.adapters["http://"].poolmanager.pools) == 0  # type: ignore[attr-defined]


def test_pools_are_sized_to_the_workers_concurrency() -> None:
    http.set_pool_size(6)
    try:
        rest = client()
        adapter = rest.session.adapters["https://"]
        assert adapter._pool_maxsize == 6  # type: ignore[attr-defined]
        assert adapter.max_retries.total == 0  # type: ignore[attr-defined]
        rest.close()
    finally:
        http.set_pool_size(4)


def test_zeep_posts_on_the_same_session() -> None:
    rest = client()
    transport = rest.zeep_transport()
    assert transport.session is rest.session
    rest.close()


def test_https_is_verified_against_the_configured_ca_bundle(tls_server: Scripted) -> None:
    url = tls_server.url.replace("http://", "https://") + "/documents"
    with pytest.raises(TransientError, match="not sent") as caught:  # certificate refused
        client().post_json(url, {"a": 0})
    assert not isinstance(caught.value, AmbiguousDeliveryError)
    assert tls_server.received == []
    trusting = client(ca_bundle=tls_server.ca_bundle)
    assert trusting.post_json(url, {"a": 1}).json() == {"id": "D0"}
    trusting.post_json(url, {"a": 2})
    assert len({r.peer for r in tls_server.received}) == 1  # one kept-alive TLS connection
    trusting.close()


def test_proxies_come_from_the_environment(
    server: Scripted, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy = server.url.replace("http://", "http://hub:s%40cret@")
    monkeypatch.setenv("HTTP_PROXY", proxy)
    monkeypatch.setenv("http_proxy", proxy)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    rest = client()
    assert rest.post_json("http://erp.example:8000/api/documents?site=1", {}).json()["id"] == "D0"
    call = server.received[0]
    assert call.path == "http://erp.example:8000/api/documents?site=1"  # absolute request line
    expected = "Basic " + base64.b64encode(b"hub:s@cret").decode()
    assert call.headers["Proxy-Authorization"] == expected
    rest.close()


def test_requests_errors_never_leave_the_layer_unclassified() -> None:
    error = http.classify(
        requests.exceptions.ChunkedEncodingError("cut"), name="erp", what="send", sends=True
    )
    assert isinstance(error, AmbiguousDeliveryError)


def test_an_answer_nested_past_the_parsers_stack_is_not_json() -> None:
    """Found by fuzzing (tests/fuzz/test_erp_answers.py): the JSON parser's ``RecursionError``
    escaped every connector that read such an answer."""
    with pytest.raises(ValueError, match="nests deeper"):
        http.loads_answer(b"[" * 100_000)
    assert http.loads_answer(b'{"qty": 1.10}') == {"qty": Decimal("1.10")}


@pytest.mark.parametrize("value", [{"a": 1}, [1], "x1", None])
def test_an_integer_the_answer_lacks_is_transient(value: Any) -> None:
    with pytest.raises(TransientError, match="where an integer belongs"):
        http.answer_int(value, name="erp", what="pageCount")
    assert http.answer_int("12", name="erp", what="pageCount") == 12
