"""Simulators: local stand-ins for the systems the hub talks to, faithful to the interface facts in
DIALECTS.md — both the demo's systems and the tests' and benchmarks' servers. Each registers in the
``conveyor.simulators`` entry-point group (``http-target`` here; the ERP simulators the same way)
and runs with
``conveyor simulate KIND [--port P] [--latency-ms N] [--fail-rate X] [--drop-answer-rate X]``.

A simulator class takes ``Options`` (the shared command-line shape), has ``url``, ``start()``,
``serve_forever()`` and ``stop()``; ``load(kind)`` finds one by name, answering a typo with
"Did you mean …?".
"""

from __future__ import annotations

import difflib
import socket
import socketserver
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from importlib.metadata import entry_points
from typing import Any, Protocol


@dataclass
class Options:
    """What every simulator takes from ``conveyor simulate``."""

    port: int = 0
    """0: pick a free port."""
    latency_ms: float = 0.0
    fail_rate: float = 0.0
    """Share of requests answered with a transient error (5xx)."""
    drop_answer_rate: float = 0.0
    """Share of postings committed and then answered with nothing (the connection is closed)."""
    reject_keys: list[str] = field(default_factory=list)
    """Key patterns refused with a business error (deterministic faults for tests)."""
    seed: int | None = None
    """Seed of the random faults, so that a test can count them."""
    echo_headers: bool = False
    """Error answers repeat the request's headers (as some real gateways do)."""
    extra: dict[str, Any] = field(default_factory=dict)


class Simulator(Protocol):
    """What ``conveyor simulate`` runs."""

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:40123``."""
        ...

    def serve_forever(self) -> None:
        """Serve on this thread until ``stop``."""
        ...

    def stop(self) -> None:
        """Stop serving and close connections."""
        ...


@cache
def available() -> dict[str, Any]:
    """Registered simulators by name (entry points, not imported yet)."""
    return {ep.name: ep for ep in entry_points(group="conveyor.simulators")}


def load(kind: str) -> Any:
    """The simulator class registered as ``kind``."""
    from conveyor.errors import ConfigError

    found = available()
    if kind not in found:
        close = difflib.get_close_matches(kind, found, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else f" Known: {', '.join(sorted(found))}."
        raise ConfigError(f"No such simulator: {kind!r}.{hint}")
    return found[kind].load()


def refuse_for(
    server: socketserver.TCPServer,
    seconds: float,
    refusing: threading.Event,
    serve_again: Callable[[], object],
) -> None:
    """Refuse connections for ``seconds``, as a system whose service is down: the serving loop
    ends and the listening socket is closed (a new connection is refused by the kernel), and
    ``refusing`` is set so that a kept-alive connection's next request is closed unanswered and
    unread; then the server listens on the same port again and ``serve_again`` starts its loop.
    What the simulator holds is kept. Blocks for ``seconds``."""
    refusing.set()
    try:
        socketserver.BaseServer.shutdown(server)  # the loop only: not a subclass's full stop
        server.socket.close()
        time.sleep(seconds)
        server.socket = socket.socket(server.address_family, server.socket_type)
        server.server_bind()
        server.server_activate()
    finally:
        refusing.clear()
    serve_again()
