"""Real HTTP servers on loopback for connector and HTTP-layer tests: ``Scripted`` answers what a
test queued and keeps what it received; ``RawServer`` answers with raw bytes (cut-off answers,
closed connections); ``tls_server`` is ``Scripted`` behind TLS with a throwaway certificate."""

from __future__ import annotations

import contextlib
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
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest


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
        self.ca_bundle: str | None = None

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


@contextlib.contextmanager
def serving(tls: ssl.SSLContext | None = None) -> Iterator[Scripted]:
    """A scripted HTTP server on 127.0.0.1 for the length of the block (behind ``tls`` when
    given; ``url`` still says ``http://``)."""
    scripted = Scripted()
    if tls is not None:
        scripted.server.socket = tls.wrap_socket(scripted.server.socket, server_side=True)
    scripted.thread.start()
    try:
        yield scripted
    finally:
        scripted.server.shutdown()
        scripted.server.server_close()


@pytest.fixture
def server() -> Iterator[Scripted]:
    """A scripted HTTP server on 127.0.0.1."""
    with serving() as scripted:
        yield scripted


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


@pytest.fixture
def tls_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Scripted]:
    """The scripted server behind TLS with a self-signed certificate for 127.0.0.1 (its file is
    ``scripted.ca_bundle``; not trusted by default)."""
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
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    scripted = Scripted()
    scripted.ca_bundle = str(cert)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    scripted.server.socket = context.wrap_socket(scripted.server.socket, server_side=True)
    scripted.thread.start()
    yield scripted
    scripted.server.shutdown()
    scripted.server.server_close()
