"""``http-target``: a generic HTTP target that records documents by the hub's key, for the
connector conformance suite, the delivery tests and the benchmarks (``conveyor simulate
http-target``). Served by the standard library's ``ThreadingHTTPServer`` (a thread per
connection, so answers with latency overlap), keep-alive HTTP/1.1.

    POST /documents          one JSON document (the hub's key in ``X-Conveyor-Key``) → {"id": …};
                             or an array of {"key": K, "document": D} (or documents carrying a
                             ``key`` field) → [{"key": K, "id": …} | {"key": K, "status": 422,
                             "error": …}, …]
    GET  /documents?key=K    200 {"id": …, "document": …} when it holds K, else 404
    GET  /documents/<K>      the same, K URL-quoted in the path
    GET  /_sim/documents     everything it holds: {"documents": {K: {"id", "posts"}}, …}
    GET  /_sim/stats         {"documents": n, "posts": n, "duplicates": n}
    GET  /_sim/records       {"counts": {K: posts}, "first_seen": {K: epoch seconds}}
    POST /_sim/config        change the behaviour (JSON with fields of ``Behaviour``)
    POST /_sim/reset         forget everything

Faults, deterministic when asked: per key (``reject`` patterns → a 4xx business error,
``fail_first`` 5xx answers per key, ``hang_keys``: commit then answer too late, ``drop_keys``:
commit then close the connection without an answer) or by chance from a seeded generator
(``fail_rate``: 503 before anything is recorded, ``drop_answer_rate``: commit then drop);
``delay_s`` latency on every posting; ``refuse(seconds)`` closes the port for a while (a
service that is down) and serves again with what it holds; ``echo_headers`` repeats the
request's headers in error answers (as some gateways do — the hub must never store what they
carry); ``idempotent`` honours ``Idempotency-Key``.
"""

from __future__ import annotations

import contextlib
import fnmatch
import itertools
import json
import random
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field, fields
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from simulators import Options

MAX_BODY = 64 * 1024 * 1024


@dataclass
class Behaviour:
    """How the target answers (change it at run time with ``configure`` or ``/_sim/config``)."""

    delay_s: float = 0.0
    fail_first: int = 0
    """Answer the first N postings of each key with ``fail_status``."""
    fail_status: int = 500
    fail_rate: float = 0.0
    """Share of postings answered 503 (nothing recorded)."""
    retry_after: str | None = None
    """``Retry-After`` value sent with 429/503 answers."""
    reject: dict[str, int] = field(default_factory=dict)
    """Key pattern → 4xx status answered with a business error text."""
    hang_keys: str | None = None
    """Key pattern: record, then wait ``hang_s`` before answering."""
    hang_s: float = 2.0
    drop_keys: str | list[str] | None = None
    """Key pattern(s): record, then close the connection without answering (once per key)."""
    drop_answer_rate: float = 0.0
    """Share of postings recorded and then not answered (the connection is closed)."""
    seed: int | None = None
    echo_headers: bool = False
    idempotent: bool = False


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
    target: HttpTarget


class _Drop(Exception):
    """Close the connection without answering (the documents were recorded)."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    wbufsize = 64 * 1024
    """Buffered: an answer's head and body leave in one write (flushed after each request), so
    that no answer waits out a delayed ACK between two small segments."""
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: a benchmark's server must not spend its time on logging."""

    def setup(self) -> None:
        super().setup()
        self.server.target._opened(self.connection)

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        self.server.target._closed(self.connection)

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if not 0 <= length <= MAX_BODY:
            raise ValueError("body too large")
        return self.rfile.read(length) if length else b""

    def _answer(self, status: int, data: Any, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(data).encode()
        self.send_response_only(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _dispatch(self) -> None:
        target = self.server.target
        if target.refusing.is_set():  # the service is down: nothing read, nothing answered
            self.close_connection = True
            return
        try:
            status, data, headers = target.handle(
                self.command, self.path, dict(self.headers.items()), self._body()
            )
        except _Drop:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(2)
            return
        except (ValueError, TypeError) as exc:
            status, data, headers = 400, {"error": f"{type(exc).__name__}: {exc}"}, {}
        try:
            self._answer(status, data, headers)
        except OSError:  # the client gave up waiting
            self.close_connection = True

    do_GET = do_POST = do_PUT = _dispatch


class HttpTarget:
    """The server and what it holds (thread-safe). ``start()`` serves on a background thread;
    use it as a context manager in tests."""

    def __init__(
        self, port: int = 0, behaviour: Behaviour | None = None, *, host: str = "127.0.0.1"
    ) -> None:
        self.behaviour = behaviour or Behaviour()
        self._server = _Server((host, port), _Handler)
        self._server.target = self
        self._thread: threading.Thread | None = None
        self._serving = threading.Event()
        self.refusing = threading.Event()
        """Set while ``refuse`` keeps the port closed."""
        self._lock = threading.Lock()
        self._random = random.Random(self.behaviour.seed)
        self._open: set[Any] = set()
        self.posts: dict[str, list[float]] = defaultdict(list)
        self.bodies: dict[str, Any] = {}
        self.refs: dict[str, str] = {}
        self.attempts: dict[str, int] = defaultdict(int)
        self.idempotency: dict[str, str] = {}
        self.dropped: set[str] = set()
        self.headers_seen: dict[str, str | None] = {}
        """The ``Idempotency-Key`` of each key's last posting."""
        self.requests = 0
        self._numbers = itertools.count(1)
        self._recorded = 0

    @classmethod
    def from_options(cls, options: Options) -> HttpTarget:
        """A target from the shared simulator options (``conveyor simulate http-target``)."""
        behaviour = Behaviour(
            delay_s=options.latency_ms / 1000.0,
            fail_rate=options.fail_rate,
            drop_answer_rate=options.drop_answer_rate,
            reject=dict.fromkeys(options.reject_keys, 422),
            seed=options.seed,
            echo_headers=options.echo_headers,
        )
        return cls(options.port, behaviour)

    # ---- serving
    @property
    def port(self) -> int:
        """The port it listens on."""
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:40123``."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> HttpTarget:
        """Serve on a background thread."""
        self._serving.set()  # a stop() right after start() must still end the loop
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve on this thread until ``stop``."""
        self._serving.set()
        try:
            self._server.serve_forever(poll_interval=0.2)
        finally:
            self._serving.clear()

    def stop(self) -> None:
        """Stop serving; open connections are shut down."""
        if self._serving.is_set():  # shutdown() waits for a serving loop: only ask a running one
            self._server.shutdown()
        self._server.server_close()
        with self._lock:
            still_open = list(self._open)
        for sock in still_open:
            with contextlib.suppress(OSError):
                sock.shutdown(2)
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def refuse(self, seconds: float) -> None:
        """Refuse connections for ``seconds`` (``simulators.refuse_for``), then serve again with
        everything recorded kept; blocks meanwhile."""
        from simulators import refuse_for

        refuse_for(self._server, seconds, self.refusing, self.start)

    def __enter__(self) -> HttpTarget:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _opened(self, sock: Any) -> None:
        with self._lock:
            self._open.add(sock)

    def _closed(self, sock: Any) -> None:
        with self._lock:
            self._open.discard(sock)

    def open_connections(self) -> int:
        """Client connections open now (a client that closed its pool has none)."""
        with self._lock:
            return len(self._open)

    # ---- requests
    def handle(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, Any, dict[str, str]]:
        """``(status, data, headers)`` for one request; raises ``_Drop`` to drop the answer."""
        parts = urlsplit(path)
        route = parts.path
        if method in ("POST", "PUT"):
            if route == "/_sim/config":
                self.configure(**json.loads(body or b"{}"))
                return 200, {"ok": True}, {}
            if route == "/_sim/reset":
                self.reset()
                return 200, {"ok": True}, {}
            return self._posting(headers, json.loads(body) if body else None)
        if method == "GET":
            if route == "/_sim/documents":
                return 200, self.holdings(), {}
            if route == "/_sim/stats":
                return 200, self.stats(), {}
            if route == "/_sim/records":
                return 200, self.snapshot(), {}
            key: str | None = None
            if route.startswith("/documents/"):
                key = unquote(route[len("/documents/") :])
            elif route.rstrip("/") == "/documents":
                found = parse_qs(parts.query).get("key")
                key = found[0] if found else None
            if key is not None:
                with self._lock:
                    ref = self.refs.get(key)
                    document = self.bodies.get(key)
                if ref is None:
                    return 404, {"error": f"no document {key}"}, {}
                return 200, {"id": ref, "key": key, "document": document}, {}
            return 404, {"error": "unknown path"}, {}
        return 405, {"error": f"method {method} not allowed"}, {}

    def _posting(self, headers: dict[str, str], data: Any) -> tuple[int, Any, dict[str, str]]:
        b = self.behaviour
        lowered = {k.lower(): v for k, v in headers.items()}
        if b.delay_s:
            time.sleep(b.delay_s)
        with self._lock:
            self.requests += 1
            unlucky = b.fail_rate and self._random.random() < b.fail_rate
        if unlucky:
            extra = {"Retry-After": b.retry_after} if b.retry_after else {}
            return 503, self._error("simulated outage", headers), extra
        if isinstance(data, list):
            results = [self._one(*self._item(entry), headers) for entry in data]
            answers = [{"key": key, **answer} for key, (_status, answer, _h) in results]
            self._after([key for key, (status, _a, _h) in results if status == 201])
            return 200, answers, {}
        key = lowered.get("x-conveyor-key") or ""
        _key, (status, answer, extra) = self._one(
            key, data, lowered.get("idempotency-key"), headers
        )
        self._after([key] if status == 201 else [])
        return status, answer, extra

    @staticmethod
    def _item(entry: Any) -> tuple[str, Any, str | None]:
        if isinstance(entry, dict) and "document" in entry:
            return str(entry.get("key") or ""), entry["document"], entry.get("idempotency_key")
        key = entry.get("key") if isinstance(entry, dict) else None
        return str(key or ""), entry, None

    def _error(self, text: str, headers: dict[str, str]) -> dict[str, Any]:
        if self.behaviour.echo_headers:
            echoed = "; ".join(f"{k}: {v}" for k, v in headers.items())
            return {"error": f"{text} (request: {echoed})", "request_headers": headers}
        return {"error": text}

    def _one(
        self, key: str, document: Any, idempotency_key: str | None, headers: dict[str, str]
    ) -> tuple[str, tuple[int, dict[str, Any], dict[str, str]]]:
        """Record one document: ``(key, (status, answer, headers))``."""
        b = self.behaviour
        with self._lock:
            self.attempts[key] += 1
            attempt = self.attempts[key]
            self.headers_seen[key] = idempotency_key
            if b.idempotent and idempotency_key and idempotency_key in self.idempotency:
                return key, (200, {"id": self.idempotency[idempotency_key], "duplicate": True}, {})
            if attempt <= b.fail_first:
                error = self._error(f"simulated outage (attempt {attempt})", headers)
                extra = {"Retry-After": b.retry_after} if b.retry_after else {}
                return key, (b.fail_status, {"status": b.fail_status, **error}, extra)
            for pattern, status in b.reject.items():
                if fnmatch.fnmatchcase(key, pattern):
                    error = self._error(f"document {key} refused: material is blocked", headers)
                    return key, (status, {"status": status, **error}, {})
            ref = f"DOC-{next(self._numbers):07d}"
            self.posts[key].append(time.time())
            self._recorded += 1
            self.bodies[key] = document
            self.refs.setdefault(key, ref)
            if idempotency_key:
                self.idempotency[idempotency_key] = ref
        return key, (201, {"id": ref}, {})

    def _after(self, keys: list[str]) -> None:
        """Hang or drop the answer of a posting that was recorded, when told to."""
        b = self.behaviour
        drop = False
        with self._lock:
            patterns = [b.drop_keys] if isinstance(b.drop_keys, str) else (b.drop_keys or [])
            for key in keys:
                chosen = any(fnmatch.fnmatchcase(key, pattern) for pattern in patterns)
                if chosen and key not in self.dropped:
                    self.dropped.add(key)
                    drop = True
            if not drop and b.drop_answer_rate and self._random.random() < b.drop_answer_rate:
                drop = True
        if drop:
            raise _Drop
        if b.hang_keys and any(fnmatch.fnmatchcase(k, b.hang_keys) for k in keys):
            time.sleep(b.hang_s)

    # ---- the behaviour
    def configure(self, **changes: Any) -> None:
        """Change the behaviour (fields of ``Behaviour``)."""
        known = {f.name for f in fields(Behaviour)}
        with self._lock:
            for name, value in changes.items():
                if name not in known:
                    raise TypeError(f"unknown behaviour {name!r}")
                setattr(self.behaviour, name, value)
                if name == "seed":
                    self._random = random.Random(value)

    def reset(self) -> None:
        """Forget everything recorded."""
        with self._lock:
            for kept in (self.posts, self.bodies, self.refs, self.attempts, self.idempotency):
                kept.clear()
            self.dropped.clear()
            self.headers_seen.clear()
            self._recorded = 0
            self.requests = 0

    # ---- what tests count
    def lookup(self, key: str) -> str | None:
        """The reference of a recorded document."""
        with self._lock:
            return self.refs.get(key)

    def counts(self) -> dict[str, int]:
        """Postings recorded per key."""
        with self._lock:
            return {k: len(v) for k, v in self.posts.items()}

    def duplicates(self) -> dict[str, int]:
        """Keys recorded more than once."""
        return {k: n for k, n in self.counts().items() if n > 1}

    def document(self, key: str) -> Any:
        """The JSON document recorded for ``key``."""
        with self._lock:
            return self.bodies[key]

    def stats(self) -> dict[str, int]:
        """Documents held, postings recorded, duplicate postings."""
        with self._lock:
            documents = len(self.posts)
            return {
                "documents": documents,
                "posts": self._recorded,
                "duplicates": self._recorded - documents,
                "requests": self.requests,
            }

    def snapshot(self) -> dict[str, Any]:
        """Counts and first arrival per key."""
        with self._lock:
            return {
                "counts": {k: len(v) for k, v in self.posts.items()},
                "first_seen": {k: v[0] for k, v in self.posts.items() if v},
            }

    def holdings(self) -> dict[str, Any]:
        """Everything it holds, by key (``GET /_sim/documents``)."""
        with self._lock:
            return {
                "documents": {
                    k: {"id": self.refs[k], "posts": len(v)} for k, v in self.posts.items()
                },
                "posts": self._recorded,
            }
