"""The REST connector: what it posts, how it classifies answers, lookups, auth, registration.

Every test talks to a real server on 127.0.0.1 (a scripted one that answers what the test says and
keeps what it received, or the recording target), so what is checked is what goes over the wire.
"""

from __future__ import annotations

import base64
import json
import queue
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from connectors.http import RestConnector
from conveyor.errors import (
    AmbiguousDeliveryError,
    ConfigError,
    RejectedError,
    TransientError,
    is_transient,
)
from conveyor.runtime import registry
from tests.support.recording_target import RecordingTarget


@dataclass
class Answer:
    """One scripted answer."""

    status: int = 200
    body: Any = None
    """JSON-encoded unless bytes."""
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


@dataclass
class Received:
    """One request as the server read it."""

    method: str
    path: str
    peer: tuple[str, int]
    """The client's address: the same for requests on one kept-alive connection."""
    headers: Message
    """Case-insensitive, as HTTP headers are."""
    body: bytes


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    answers: queue.Queue[Answer]
    received: list[Received]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server.received.append(
            Received(self.command, self.path, self.client_address, self.headers, body)
        )
        try:
            answer = self.server.answers.get_nowait()
        except queue.Empty:
            answer = Answer(200, {"id": "D0"})
        if answer.delay_s:
            time.sleep(answer.delay_s)
        if isinstance(answer.body, bytes):
            data = answer.body
        else:
            data = b"" if answer.body is None else json.dumps(answer.body).encode()
        try:
            self.send_response(answer.status)
            for name, value in answer.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:  # the client gave up waiting
            self.close_connection = True

    do_GET = do_POST = do_PUT = _serve


class Scripted:
    """A real HTTP server on loopback that answers from a script."""

    def __init__(self) -> None:
        self.server = _Server(("127.0.0.1", 0), _Handler)
        self.server.answers = queue.Queue()
        self.server.received = []
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """Base URL."""
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @property
    def received(self) -> list[Received]:
        """Requests in arrival order."""
        return self.server.received

    def answer(self, *answers: Answer) -> None:
        """Queue the next answers."""
        for item in answers:
            self.server.answers.put(item)


@pytest.fixture
def server() -> Iterator[Scripted]:
    """A scripted HTTP server on 127.0.0.1."""
    scripted = Scripted()
    scripted.thread.start()
    yield scripted
    scripted.server.shutdown()
    scripted.server.server_close()


def connector(server: Scripted, **settings: object) -> RestConnector:
    return RestConnector("erp", {"url": f"{server.url}/api/documents", **settings})


def test_send_posts_json_with_the_key_and_returns_the_document_number(server: Scripted) -> None:
    server.answer(Answer(201, {"data": {"number": "4900001234"}}))
    result = connector(server, ref_field="data.number").send(
        {"material": "M1", "quantity": Decimal("2.500")},
        message_type="production_output",
        key="mes:GR-1/1",
    )
    assert result.external_ref == "4900001234"
    assert not result.already_present
    call = server.received[0]
    assert (call.method, call.path) == ("POST", "/api/documents")
    assert json.loads(call.body) == {"material": "M1", "quantity": "2.5"}
    assert call.headers["X-Conveyor-Key"] == "mes:GR-1/1"
    assert call.headers["Content-Type"] == "application/json"
    assert "Idempotency-Key" not in call.headers


def test_connections_are_reused_and_the_message_type_fills_the_url(server: Scripted) -> None:
    rest = RestConnector("erp", {"url": f"{server.url}/api/{{message_type}}?v=2", "method": "PUT"})
    for n in range(3):
        rest.send({"n": n}, message_type="stock_transfer", key=f"k{n}")
    assert [(r.method, r.path) for r in server.received] == [("PUT", "/api/stock_transfer?v=2")] * 3
    assert len({r.peer for r in server.received}) == 1  # one kept-alive connection carried all
    rest.close()


def test_location_header_is_the_reference_when_the_body_has_none(server: Scripted) -> None:
    server.answer(Answer(201, None, headers={"Location": "/documents/77"}))
    assert connector(server).send({}, message_type="t", key="k").external_ref == "/documents/77"


@pytest.mark.parametrize("status", [429, 500, 502, 503, 408])
def test_throttling_and_server_errors_are_transient(server: Scripted, status: int) -> None:
    server.answer(Answer(status, b"busy"))
    with pytest.raises(TransientError, match=f"HTTP {status}: busy") as caught:
        connector(server).send({}, message_type="t", key="k")
    assert is_transient(caught.value)
    assert not isinstance(caught.value, AmbiguousDeliveryError)


def test_a_business_error_is_rejected_with_the_response_text(server: Scripted) -> None:
    server.answer(Answer(422, {"message": "物料 M1 已冻结 (material blocked)"}))
    with pytest.raises(RejectedError, match="HTTP 422") as caught:
        connector(server).send({}, message_type="t", key="k")
    assert "material blocked" in str(caught.value)
    assert not is_transient(caught.value)


def test_gateway_timeout_and_read_timeout_are_ambiguous(server: Scripted) -> None:
    server.answer(Answer(504, b""), Answer(201, {"id": "late"}, delay_s=0.5))
    rest = connector(server, timeout_s=0.2)
    with pytest.raises(AmbiguousDeliveryError, match="504"):
        rest.send({}, message_type="t", key="k")
    with pytest.raises(AmbiguousDeliveryError, match=r"no answer within 0\.2 s") as caught:
        rest.send({}, message_type="t", key="k")
    assert is_transient(caught.value)
    assert len(server.received) == 2  # the second request did reach the server
    rest.close()


def test_refused_connections_are_plain_transient() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    rest = RestConnector("erp", {"url": f"http://127.0.0.1:{port}/documents", "timeout_s": 1})
    with pytest.raises(TransientError, match="cannot connect") as caught:
        rest.send({}, message_type="t", key="k")
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
        rest = RestConnector("erp", {"url": f"http://127.0.0.1:{port}/d", "timeout_s": 0.2})
        with pytest.raises(TransientError, match="connect timeout") as caught:
            rest.send({}, message_type="t", key="k")
        assert not isinstance(caught.value, AmbiguousDeliveryError)
        for sock in filler:
            sock.close()


def test_lookup_finds_or_not_and_declares_the_capability(server: Scripted) -> None:
    plain = connector(server)
    assert not plain.supports("lookup")
    with pytest.raises(NotImplementedError):
        plain.lookup(message_type="t", key="k")
    looking = connector(server, lookup_url=f"{server.url}/api/documents/{{key}}")
    assert looking.supports("lookup")
    server.answer(Answer(200, {"id": "D1"}), Answer(404, {"error": "none"}), Answer(503, b"x"))
    found = looking.lookup(message_type="t", key="mes:GR-1/1")
    assert found is not None
    assert (found.external_ref, found.already_present) == ("D1", True)
    assert looking.lookup(message_type="t", key="mes:GR-2/1") is None
    with pytest.raises(TransientError, match="503"):
        looking.lookup(message_type="t", key="mes:GR-3/1")
    assert [(r.method, r.path) for r in server.received] == [
        ("GET", "/api/documents/mes%3AGR-1%2F1"),
        ("GET", "/api/documents/mes%3AGR-2%2F1"),
        ("GET", "/api/documents/mes%3AGR-3%2F1"),
    ]


def test_idempotency_key_is_sent_only_to_targets_that_take_it(server: Scripted) -> None:
    deduping = connector(server, idempotency_header="resubmitCheckKey")
    assert deduping.supports("idempotency_key")
    assert not connector(server).supports("idempotency_key")
    deduping.send({}, message_type="t", key="k", idempotency_key="abc")
    assert server.received[0].headers["resubmitCheckKey"] == "abc"


def test_bearer_token_comes_from_the_environment(
    server: Scripted, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigError, match="TOKEN"):
        connector(server, auth="bearer").send({}, message_type="t", key="k")
    assert server.received == []  # nothing went out without the credentials
    monkeypatch.setenv("CONVEYOR_ERP_TOKEN", "s3cret")
    connector(server, auth="bearer", headers={"X-Site": "1000"}).send({}, message_type="t", key="k")
    sent = server.received[-1].headers
    assert (sent["Authorization"], sent["X-Site"]) == ("Bearer s3cret", "1000")


def test_basic_auth_comes_from_the_environment(
    server: Scripted, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigError, match="USERNAME"):
        connector(server, auth="basic").send({}, message_type="t", key="k")
    monkeypatch.setenv("CONVEYOR_ERP_USERNAME", "hub")
    monkeypatch.setenv("CONVEYOR_ERP_PASSWORD", "pw")
    connector(server, auth="basic").send({}, message_type="t", key="k")
    expected = "Basic " + base64.b64encode(b"hub:pw").decode()
    assert server.received[-1].headers["Authorization"] == expected


def test_settings_are_validated_and_the_entry_point_is_registered() -> None:
    with pytest.raises(ConfigError, match="url"):
        RestConnector("erp", {})
    with pytest.raises(ConfigError):
        RestConnector("erp", {"url": "ftp://nope"})
    assert registry.load("rest") is RestConnector


def test_a_timeout_after_the_target_committed_is_ambiguous_on_a_real_socket() -> None:
    with RecordingTarget() as target:
        target.configure(hang_keys="k", hang_s=0.6)
        slow = RestConnector("erp", {"url": f"{target.url}/documents", "timeout_s": 0.2})
        with pytest.raises(AmbiguousDeliveryError):
            slow.send({"a": 1}, message_type="t", key="k")
        assert target.counts() == {"k": 1}  # it did commit
        assert slow.send({"a": 2}, message_type="t", key="k2").external_ref == "DOC-0000002"
        slow.close()


def test_a_connection_the_server_closed_while_idle_is_replaced(server: Scripted) -> None:
    rest = connector(server)
    rest.send({}, message_type="t", key="k1")
    server.answer(Answer(201, {"id": "D2"}, headers={"Connection": "close"}))
    assert rest.send({}, message_type="t", key="k2").external_ref == "D2"  # then it closes
    assert rest.send({}, message_type="t", key="k3").external_ref == "D0"
    peers = [r.peer for r in server.received]
    assert peers[0] == peers[1] != peers[2]  # kept alive, then a new connection after the close
    for wire in rest._origin(server.url)._idle:
        wire.sock.shutdown(socket.SHUT_RDWR)  # as if the server dropped it while idle
    time.sleep(0.15)
    assert rest.send({}, message_type="t", key="k4").external_ref == "D0"
    assert [r.headers["X-Conveyor-Key"] for r in server.received] == ["k1", "k2", "k3", "k4"]
    rest.close()


def test_plain_http_goes_through_the_proxy_the_environment_names(
    server: Scripted, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy = server.url.replace("http://", "http://hub:s%40cret@")
    monkeypatch.setenv("HTTP_PROXY", proxy)
    monkeypatch.setenv("http_proxy", proxy)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    rest = RestConnector("erp", {"url": "http://erp.example:8000/api/documents?site=1"})
    assert rest.send({}, message_type="t", key="k").external_ref == "D0"
    call = server.received[0]
    assert call.path == "http://erp.example:8000/api/documents?site=1"  # absolute request line
    assert call.headers["Host"] == "erp.example:8000"
    expected = "Basic " + base64.b64encode(b"hub:s@cret").decode()
    assert call.headers["Proxy-Authorization"] == expected
    rest.close()


class RawServer:
    """Answers each request with the next raw byte string, then closes when told to."""

    def __init__(self, *answers: tuple[bytes, bool]) -> None:
        self.answers = list(answers)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        """Base URL."""
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}"

    def _serve(self) -> None:
        while self.answers:
            conn, _ = self.listener.accept()
            with conn:
                while self.answers:
                    data = b""
                    while b"\r\n\r\n" not in data:
                        data += conn.recv(65536)
                    head, _, rest = data.partition(b"\r\n\r\n")
                    length = 0
                    for line in head.split(b"\r\n")[1:]:
                        name, _, value = line.partition(b":")
                        if name.strip().lower() == b"content-length":
                            length = int(value)
                    while len(rest) < length:
                        rest += conn.recv(65536)
                    answer, close = self.answers.pop(0)
                    conn.sendall(answer)
                    if close:
                        break


def test_chunked_answers_and_answers_that_end_at_close_are_read_whole() -> None:
    raw = RawServer(
        (
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nTransfer-Encoding: chunked"
            b'\r\n\r\n7\r\n{"id": \r\n6\r\n"C-1"}\r\n0\r\n\r\n',
            False,
        ),
        (b'HTTP/1.1 201 Created\r\nConnection: close\r\n\r\n{"id": "E-2"}', True),
    )
    rest = RestConnector("erp", {"url": f"{raw.url}/documents", "timeout_s": 2})
    assert rest.send({}, message_type="t", key="k1").external_ref == "C-1"
    assert rest.send({}, message_type="t", key="k2").external_ref == "E-2"
    rest.close()


def test_an_answer_cut_off_midway_is_ambiguous() -> None:
    raw = RawServer((b'HTTP/1.1 201 Created\r\nContent-Length: 40\r\n\r\n{"id": ', True))
    rest = RestConnector("erp", {"url": f"{raw.url}/documents", "timeout_s": 2})
    with pytest.raises(AmbiguousDeliveryError, match="during its answer"):
        rest.send({}, message_type="t", key="k")
    rest.close()


def test_a_connection_closed_without_an_answer_is_plain_transient() -> None:
    raw = RawServer((b"", True))
    rest = RestConnector("erp", {"url": f"{raw.url}/documents", "timeout_s": 2})
    with pytest.raises(TransientError, match="connection lost") as caught:
        rest.send({}, message_type="t", key="k")
    assert not isinstance(caught.value, AmbiguousDeliveryError)
    rest.close()


def test_header_values_that_could_split_the_request_are_refused(server: Scripted) -> None:
    with pytest.raises(ValueError, match="X-Conveyor-Key"):
        connector(server).send({}, message_type="t", key="k\r\nX-Evil: 1")
    with pytest.raises(ValueError, match="header name"):
        connector(server, headers={"Bad Name": "x"}).send({}, message_type="t", key="k")
    assert server.received == []


@pytest.fixture
def tls_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Scripted]:
    """The scripted server behind TLS with a self-signed certificate for 127.0.0.1, trusted
    through ``REQUESTS_CA_BUNDLE``."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    command = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
    command += ["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"]
    subprocess.run(
        [*command, "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
    scripted = Scripted()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    scripted.server.socket = context.wrap_socket(scripted.server.socket, server_side=True)
    scripted.thread.start()
    yield scripted
    scripted.server.shutdown()
    scripted.server.server_close()


def test_https_is_verified_against_the_configured_bundle(
    tls_server: Scripted, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = tls_server.url.replace("http://", "https://")
    rest = RestConnector("erp", {"url": f"{url}/api/documents", "timeout_s": 5})
    assert rest.send({"a": 1}, message_type="t", key="k1").external_ref == "D0"
    assert rest.send({"a": 2}, message_type="t", key="k2").external_ref == "D0"
    assert [json.loads(r.body) for r in tls_server.received] == [{"a": 1}, {"a": 2}]
    assert len({r.peer for r in tls_server.received}) == 1  # one kept-alive TLS connection
    rest.close()
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    untrusting = RestConnector("erp", {"url": f"{url}/api/documents", "timeout_s": 5})
    with pytest.raises(TransientError, match="cannot connect"):  # never sent: certificate refused
        untrusting.send({"a": 3}, message_type="t", key="k3")
    assert len(tls_server.received) == 2
