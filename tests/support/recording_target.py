"""A recording HTTP test target: a lean HTTP/1.1 server (keep-alive, one thread per connection) on
127.0.0.1 that records every posted document by business key, so tests and benches can count
deliveries (0 missing, 0 duplicates). It parses only what it needs and answers in one write, so
that a benchmark measures the hub rather than its test double.

It can misbehave on purpose, per business key: fail the first N posts of each key with 500 (or
``fail_status``), refuse keys matching a pattern with a 4xx business error (``reject``), answer
slowly (``delay_s``), or record a document and then not answer in time (``hang_keys``: the client
times out after the target committed — an ambiguous delivery). With ``idempotent`` it honours the
``Idempotency-Key`` header like a target that deduplicates.

    POST <any path>         record the body under the ``X-Conveyor-Key`` header → {"id": "DOC-n"}
    GET  /documents/<key>   200 {"id": …} when recorded, else 404 (the connector's lookup)
    GET  /_records          {"counts": {key: posts}, "first_seen": {key: epoch seconds}}
    GET  /_stats            {"documents": n, "posts": n, "duplicates": n}
    POST /_config           change behaviour at run time (JSON with the settings above)

Run it on its own with ``python -m tests.support.recording_target --port 8099``.
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import functools
import gc
import itertools
import json
import socket
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

MAX_HEAD = 64 * 1024
MAX_BODY = 16 * 1024 * 1024


@dataclass
class Behaviour:
    """How the target answers."""

    fail_first: int = 0
    fail_status: int = 500
    """The status of the simulated outage (e.g. 429, 502, 503)."""
    reject: dict[str, int] = field(default_factory=dict)
    """Key pattern → 4xx status answered with a business error text."""
    delay_s: float = 0.0
    hang_keys: str | None = None
    """Key pattern: record, then wait ``hang_s`` before answering."""
    hang_s: float = 2.0
    idempotent: bool = False


@dataclass
class _Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def keep_alive(self) -> bool:
        return self.headers.get("connection", "").lower() != "close"


class _Connection:
    """One client connection on its own thread: blocking reads, requests answered in order,
    each answer in one write. (Cheaper per request than an event loop on a busy machine: two
    system calls and a little parsing.)"""

    def __init__(self, target: RecordingTarget, sock: socket.socket) -> None:
        self.target = target
        self.sock = sock
        self.buffer = bytearray()

    def serve(self) -> None:
        sock = self.sock
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            while not self.target._stopping.is_set():
                request = self._next_request()
                if request is None:
                    return
                try:
                    status, data = self.target._handle(request)
                except Exception as exc:  # a bad control request: say so, keep serving
                    status, data = 400, {"error": f"{type(exc).__name__}: {exc}"}
                sock.sendall(_response(status, data, close=not request.keep_alive))
                if not request.keep_alive:
                    return
        except OSError:  # the client went away (or gave up waiting)
            return
        finally:
            self.target._forget(sock)
            sock.close()

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        if not data:
            return False
        self.buffer += data
        return True

    def _next_request(self) -> _Request | None:
        while (end := self.buffer.find(b"\r\n\r\n")) < 0:
            if len(self.buffer) > MAX_HEAD:
                self._fail(431)
                return None
            if not self._fill():
                return None
        lines = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
        try:
            method, path, _version = lines[0].split(" ", 2)
        except ValueError:
            self._fail(400)
            return None
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if "chunked" in headers.get("transfer-encoding", "").lower():
            self._fail(501)
            return None
        try:
            length = int(headers.get("content-length") or 0)
        except ValueError:
            self._fail(400)
            return None
        if not 0 <= length <= MAX_BODY:
            self._fail(413)
            return None
        start = end + 4
        while len(self.buffer) < start + length:
            if not self._fill():
                return None
        body = bytes(self.buffer[start : start + length])
        del self.buffer[: start + length]
        return _Request(method.upper(), path, headers, body)

    def _fail(self, status: int) -> None:
        self.sock.sendall(_response(status, {"error": "bad request"}, close=True))


def _response(status: int, data: Any, *, close: bool) -> bytes:
    body = json.dumps(data).encode()
    return b"%s%d\r\n%s\r\n%s" % (
        _head(status),
        len(body),
        b"Connection: close\r\n" if close else b"",
        body,
    )


@functools.cache
def _head(status: int) -> bytes:
    """Status line and fixed headers, up to the value of ``Content-Length``."""
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Status"
    return (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: "
    ).encode("latin-1")


class RecordingTarget:
    """The server and what it recorded (thread-safe)."""

    def __init__(self, port: int = 0, behaviour: Behaviour | None = None) -> None:
        self.behaviour = behaviour or Behaviour()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", port))
        self._sock.listen(256)
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self.posts: dict[str, list[float]] = defaultdict(list)
        self.bodies: dict[str, bytes] = {}
        self.refs: dict[str, str] = {}
        self.attempts: dict[str, int] = defaultdict(int)
        self.idempotency: dict[str, str] = {}
        self.headers_seen: dict[str, str | None] = {}
        self._numbers = itertools.count(1)
        self._recorded = 0

    @property
    def port(self) -> int:
        """The port it listens on."""
        return int(self._sock.getsockname()[1])

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:40123``."""
        return f"http://127.0.0.1:{self.port}"

    # ---- serving
    def start(self) -> RecordingTarget:
        """Serve on a background thread."""
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Accept connections on this thread until ``stop``; each is served by its own thread."""
        self._sock.settimeout(0.2)
        while not self._stopping.is_set():
            try:
                sock, _address = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:  # closed by stop
                return
            sock.settimeout(None)
            with self._lock:
                self._open.add(sock)
            threading.Thread(target=_Connection(self, sock).serve, daemon=True).start()

    def _forget(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.discard(sock)

    def stop(self) -> None:
        """Stop serving: no new connections, open ones are closed."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        self._sock.close()
        with self._lock:
            still_open = list(self._open)
        for sock in still_open:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> RecordingTarget:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _handle(self, request: _Request) -> tuple[int, Any]:
        """``(status, data)`` for one request (waits out ``delay_s`` and hangs)."""
        path = request.path
        if request.method in ("POST", "PUT"):
            if path == "/_config":
                self.configure(**json.loads(request.body or b"{}"))
                return 200, {"ok": True}
            if path == "/_reset":
                self.reset()
                return 200, {"ok": True}
            return self.post(
                request.headers.get("x-conveyor-key") or "",
                request.body,
                request.headers.get("idempotency-key"),
            )
        if request.method == "GET":
            if path == "/_records":
                return 200, self.snapshot()
            if path == "/_stats":
                return 200, self.stats()
            if path.startswith("/documents/"):
                ref = self.lookup(unquote(path[len("/documents/") :]))
                return (404, {"error": "not found"}) if ref is None else (200, {"id": ref})
            return 404, {"error": "unknown path"}
        return 405, {"error": f"method {request.method} not allowed"}

    # ---- the behaviour
    def configure(self, **changes: Any) -> None:
        """Change the behaviour (fields of ``Behaviour``)."""
        with self._lock:
            for name, value in changes.items():
                if not hasattr(self.behaviour, name):
                    raise TypeError(f"unknown behaviour {name!r}")
                setattr(self.behaviour, name, value)

    def reset(self) -> None:
        """Forget everything recorded."""
        with self._lock:
            self.posts.clear()
            self.bodies.clear()
            self.refs.clear()
            self.attempts.clear()
            self.idempotency.clear()
            self.headers_seen.clear()
            self._recorded = 0

    def post(self, key: str, body: bytes, idempotency_key: str | None) -> tuple[int, Any]:
        """Answer one posting (waiting ``delay_s`` first, and hanging after recording when
        the key matches ``hang_keys``)."""
        if self.behaviour.delay_s:
            time.sleep(self.behaviour.delay_s)
        status, data, hang = self._post(key, body, idempotency_key)
        if hang:
            time.sleep(hang)
        return status, data

    def _post(self, key: str, body: bytes, idempotency_key: str | None) -> tuple[int, Any, float]:
        """Record one posting: status, answer, and how long to hang before answering."""
        b = self.behaviour
        with self._lock:
            self.attempts[key] += 1
            attempt = self.attempts[key]
            self.headers_seen[key] = idempotency_key
            if b.idempotent and idempotency_key and idempotency_key in self.idempotency:
                return 200, {"id": self.idempotency[idempotency_key], "duplicate": True}, 0.0
            if attempt <= b.fail_first:
                return b.fail_status, {"error": f"simulated outage (attempt {attempt})"}, 0.0
            for pattern, status in b.reject.items():
                if fnmatch.fnmatchcase(key, pattern):
                    return (
                        status,
                        {"error": f"document {key} refused: material is blocked"},
                        0.0,
                    )
            ref = f"DOC-{next(self._numbers):07d}"
            self.posts[key].append(time.time())
            self._recorded += 1
            self.bodies[key] = body
            self.refs.setdefault(key, ref)
            if idempotency_key:
                self.idempotency[idempotency_key] = ref
            hang = b.hang_keys is not None and fnmatch.fnmatchcase(key, b.hang_keys)
        return 201, {"id": ref}, b.hang_s if hang else 0.0

    def lookup(self, key: str) -> str | None:
        """The reference of a recorded document."""
        with self._lock:
            return self.refs.get(key)

    # ---- what tests count
    def counts(self) -> dict[str, int]:
        """Posts recorded per key."""
        with self._lock:
            return {k: len(v) for k, v in self.posts.items()}

    def duplicates(self) -> dict[str, int]:
        """Keys recorded more than once."""
        return {k: n for k, n in self.counts().items() if n > 1}

    def document(self, key: str) -> Any:
        """The JSON document recorded for ``key``."""
        with self._lock:
            return json.loads(self.bodies[key])

    def stats(self) -> dict[str, int]:
        """Documents recorded, posts recorded, and duplicate posts (``/_stats``)."""
        with self._lock:
            documents = len(self.posts)
            posts = self._recorded
            return {"documents": documents, "posts": posts, "duplicates": posts - documents}

    def snapshot(self) -> dict[str, Any]:
        """Counts and first arrival per key (``/_records``)."""
        with self._lock:
            return {
                "counts": {k: len(v) for k, v in self.posts.items()},
                "first_seen": {k: v[0] for k, v in self.posts.items() if v},
            }


def main() -> None:
    """Serve until interrupted."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--port", type=int, default=8099)
    parser.add_argument("--fail-first", type=int, default=0)
    parser.add_argument("--delay-s", type=float, default=0.0)
    args = parser.parse_args()
    target = RecordingTarget(args.port, Behaviour(fail_first=args.fail_first, delay_s=args.delay_s))
    gc.freeze()  # a process of its own: collect young garbage seldom, never what was loaded
    gc.set_threshold(20_000, 10, 10)
    print(f"recording target on {target.url}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        target.serve_forever()


if __name__ == "__main__":
    main()
