"""``conveyor up``: the whole hub in one process — the HTTP API, delivery workers for every
target, inbound pollers on their intervals (``systems.<name>.poll_every``) and receive loops for
every system whose connector receives (file drops, queues).

Each component runs the code its separate process runs (``create_app`` as ``serve``, ``Worker``
as ``run``, ``poll_streams`` / ``receive_units`` as ``poll`` / ``receive``), on threads of this
process. Stopping (SIGINT, SIGTERM, or ``stop()``) goes in order: the API stops taking requests
and finishes those in flight, pollers and receivers finish their pass (a pass commits in batches,
a unit is acknowledged only after its commit), and the worker finishes its in-flight deliveries
and gives back what it had claimed. Nothing is lost: whatever was not done is still in the ledger
for the next start.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from conveyor.redact import install_log_filter, safe_text

if TYPE_CHECKING:
    from conveyor.api.metrics import Metrics
    from conveyor.config import Project, SystemConfig
    from conveyor.ledger import Ledger

log = logging.getLogger(__name__)
RECEIVE_EVERY_S = 2.0
"""How often a receiving system is looked at when ``poll_every`` does not say."""
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")


def redact_uvicorn_logs() -> None:
    """Put ``conveyor.redact``'s filter on uvicorn's loggers (their own handlers, which the root
    logger's filter does not see): no token or secret reaches a log line."""
    for name in UVICORN_LOGGERS:
        logger = logging.getLogger(name)
        install_log_filter(logger)
        from conveyor.redact import RedactingFilter

        if not any(isinstance(f, RedactingFilter) for f in logger.filters):
            logger.addFilter(RedactingFilter())


@dataclass
class Inbound:
    """One poller or receive loop: a system, what it does, how often."""

    system: SystemConfig
    action: str
    """``poll`` or ``receive``."""
    every_s: float
    passes: int = 0
    last_error: str | None = None
    thread: threading.Thread | None = field(default=None, repr=False)


class OneMachine:
    """The hub in one process (see the module docstring)."""

    def __init__(
        self,
        project: Project,
        *,
        host: str = "127.0.0.1",
        port: int = 8000,
        concurrency: int | None = None,
        say: Callable[[str], None] = print,
    ) -> None:
        from conveyor.api import create_app
        from conveyor.api.metrics import Metrics
        from conveyor.ledger import Ledger

        self.project = project
        self.say = say
        self.stopping = threading.Event()
        self.ledger: Ledger = Ledger.open(project)
        self.ledger.upgrade()  # the embedded default starts from nothing: create or migrate
        self.metrics: Metrics = Metrics(self.ledger, systems=project.systems)
        self.app = create_app(project, ledger=self.ledger, metrics=self.metrics)
        import uvicorn

        self.config = uvicorn.Config(
            self.app,
            host=host,
            port=port,
            lifespan="off",
            log_level="warning",
            timeout_graceful_shutdown=15,
            server_header=False,
        )
        redact_uvicorn_logs()
        self.server = uvicorn.Server(self.config)
        self.worker = self._worker(concurrency)
        self.inbound = self._inbound()
        self._threads: list[threading.Thread] = []
        self.host, self.port = host, port

    def _worker(self, concurrency: int | None) -> Any:
        from conveyor.delivery.worker import Worker, WorkerOptions, project_targets

        targets = project_targets(self.project)
        if not targets:
            return None
        options = WorkerOptions.from_project(self.project, concurrency=concurrency)
        return Worker(
            self.ledger.engine,
            targets=targets,
            broker_url=self.project.broker_url,
            project=self.project,
            options=options,
        )

    def _inbound(self) -> list[Inbound]:
        from conveyor.errors import ConfigError
        from conveyor.runtime import registry

        found: list[Inbound] = []
        for system in self.project.systems.values():
            try:
                cls = registry.load(system.connector)
            except ConfigError as exc:
                self.say(f"{system.name}: not taken in ({safe_text(exc, 200)})")
                continue
            if "poll" in cls.capabilities and system.poll_every:
                found.append(Inbound(system, "poll", float(system.poll_every)))
            if "receive" in cls.capabilities:
                every = float(system.poll_every or RECEIVE_EVERY_S)
                found.append(Inbound(system, "receive", every))
        return found

    # ------------------------------------------------------------------ running
    def start(self) -> None:
        """Start every component and say one line for each."""
        url = self.ledger.engine.url.render_as_string(hide_password=True)
        self.say(f"ledger: {url}")
        api = threading.Thread(target=self.server.run, name="api", daemon=True)
        api.start()
        self._threads.append(api)
        deadline = time.monotonic() + 20
        while not self.server.started and api.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        if not self.server.started:
            raise RuntimeError(f"the API did not start on {self.host}:{self.port}")
        self.say(f"api: http://{self.host}:{self.port} (OpenAPI at /openapi.json)")
        if self.worker is not None:
            transport = "rabbitmq" if self.project.broker_url else "embedded"
            delivering = threading.Thread(target=self.worker.run, name="worker", daemon=True)
            delivering.start()
            self._threads.append(delivering)
            self.say(
                f"worker: targets {', '.join(self.worker.targets)} ({transport} transport, "
                f"{self.worker.options.concurrency} threads)"
            )
        else:
            self.say("worker: no routes, nothing to deliver")
        for inbound in self.inbound:
            inbound.thread = threading.Thread(
                target=self._loop, args=(inbound,), name=f"{inbound.action}-{inbound.system.name}"
            )
            inbound.thread.start()
            self.say(
                f"{inbound.action}: {inbound.system.name} ({inbound.system.connector}) every "
                f"{inbound.every_s:g} s"
            )
        if not self.inbound:
            self.say("inbound: no poller or receiver (set systems.<name>.poll_every)")

    def _loop(self, inbound: Inbound) -> None:
        from conveyor.api.app import AlertChecker
        from conveyor.mapping import MappingEngine
        from conveyor.runtime import registry
        from conveyor.runtime.inbound import poll_streams, receive_units

        alerts = AlertChecker(self.project, self.ledger)
        engine = None
        connector = None
        while not self.stopping.is_set():
            try:
                if engine is None:
                    engine = MappingEngine.load(self.project)
                if connector is None:
                    connector = registry.create(inbound.system)
                    if not connector.supports(inbound.action):
                        # declared by the class, not by these settings (a files system that
                        # only writes an outbox): nothing to do, say so once
                        self.say(f"{inbound.action}: {inbound.system.name} has nothing to take in")
                        break
                if inbound.action == "poll":
                    counts: dict[str, int] = {}
                    for result in poll_streams(self.ledger, engine, connector):
                        for status, amount in result.counts.items():
                            counts[status] = counts.get(status, 0) + amount
                            self.metrics.count(
                                inbound.system.name, result.message_type, status, amount
                            )
                else:
                    received = receive_units(self.ledger, engine, connector)
                    counts = received.counts
                    for status, amount in counts.items():
                        self.metrics.count(inbound.system.name, None, status, amount)
                alerts.nudge(counts.get("accepted", 0))
                inbound.passes += 1
                inbound.last_error = None
                self.metrics.polled(inbound.system.name)
            except Exception as exc:  # committed batches stay; the next pass goes on from there
                inbound.last_error = safe_text(exc, 500)
                log.warning("%s of %s failed: %s", inbound.action, inbound.system.name, exc)
            self.stopping.wait(inbound.every_s)
        if connector is not None:
            try:
                connector.close()
            except Exception as exc:
                log.warning("closing %s: %s", inbound.system.name, exc)

    def stop(self) -> None:
        """Ask every component to stop (safe from a signal handler)."""
        self.stopping.set()

    def wait(self) -> None:
        """Block until ``stop()``, then shut down in order (see the module docstring)."""
        while not self.stopping.wait(0.5):
            pass
        self.server.should_exit = True
        for inbound in self.inbound:
            if inbound.thread is not None:
                inbound.thread.join(timeout=120)
        if self.worker is not None:
            self.worker.stop()
        for thread in self._threads:
            thread.join(timeout=90)
        self.app.state.hub.accepter.stop()  # the API answered its last request already
        self.say("stopped")
