"""What ``conveyor systems`` says about the declared systems: their connectors, capabilities,
streams and the message types routes send them (``describe``), and whether each is ready to run
(``check``): settings valid, secrets present — by name, never by value — and, for a connector that
declares ``health``, a live ``check()`` within a timeout.

A stand-in connector (``fake``) is reported as one; its secrets are optional, since it reaches
nothing.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from conveyor.errors import ConfigError
from conveyor.redact import safe_text

if TYPE_CHECKING:
    from conveyor.config import Project, SystemConfig
    from conveyor.connector import Connector

HEALTH_TIMEOUT_S = 10.0


@dataclass
class SystemInfo:
    """One declared system as ``systems list`` shows it."""

    name: str
    connector: str
    kind: str | None = None
    capabilities: list[str] = field(default_factory=list)
    streams: list[str] = field(default_factory=list)
    receives: list[str] = field(default_factory=list)
    """Message types (patterns) that routes send to this system."""
    stand_in: bool = False
    error: str | None = None
    """Why the connector could not be loaded, when it could not."""

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {
            "system": self.name,
            "connector": self.connector,
            "kind": self.kind,
            "capabilities": self.capabilities,
            "streams": self.streams,
            "receives": self.receives,
            "stand_in": self.stand_in,
            "error": self.error,
        }


def routed_to(project: Project, system: str) -> list[str]:
    """The message types (as the routes write them) that routes deliver to ``system``."""
    types: list[str] = []
    for route in project.router.routes:
        if system in route.targets and route.sources != (system,):
            types.extend(t for t in route.types if t not in types)
    return types


def describe(project: Project) -> list[SystemInfo]:
    """Every declared system, in name order (a connector that fails to load says why)."""
    from conveyor.runtime import registry

    out = []
    for name, system in sorted(project.systems.items()):
        info = SystemInfo(name, system.connector, receives=routed_to(project, name))
        try:
            cls = registry.load(system.connector)
        except ConfigError as exc:
            info.error = safe_text(exc)
        else:
            info.kind = cls.kind
            info.capabilities = sorted(cls.capabilities)
            info.streams = [s.name for s in cls.streams]
            info.stand_in = cls.stand_in
        out.append(info)
    return out


@dataclass
class CheckReport:
    """``systems check`` for one system. ``secrets`` maps each declared secret to whether it is
    set; ``health`` is what the live check saw (None when not declared or not reached)."""

    name: str
    connector: str
    kind: str | None = None
    stand_in: bool = False
    settings: str = "ok"
    secrets: dict[str, bool] = field(default_factory=dict)
    health: str | None = None
    health_ok: bool | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing is missing or failing."""
        return not self.problems

    @property
    def missing(self) -> list[str]:
        """Names of the declared secrets that are set nowhere."""
        return [name for name, present in self.secrets.items() if not present]

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form (secret names only, never values)."""
        return {
            "system": self.name,
            "connector": self.connector,
            "kind": self.kind,
            "stand_in": self.stand_in,
            "ok": self.ok,
            "settings": self.settings,
            "secrets": self.secrets,
            "missing_secrets": self.missing,
            "health": self.health,
            "health_ok": self.health_ok,
            "problems": self.problems,
        }


def check(
    project: Project, system: SystemConfig, *, timeout: float = HEALTH_TIMEOUT_S
) -> CheckReport:
    """Check one system: settings, secrets (names only) and, where declared, a live check."""
    from conveyor.runtime import registry
    from conveyor.runtime.secrets import env_name, is_set

    report = CheckReport(system.name, system.connector)
    try:
        cls = registry.load(system.connector)
    except ConfigError as exc:
        report.settings = safe_text(exc)
        report.problems.append(report.settings)
        return report
    report.kind, report.stand_in = cls.kind, cls.stand_in
    connection = system.connection or system.name
    report.secrets = {
        name: is_set(connection, name) for name in cls.required_secrets(system.settings)
    }
    if report.missing and not cls.stand_in:
        names = ", ".join(f"{name} ({env_name(connection, name)})" for name in report.missing)
        report.problems.append(f"secrets missing: {names}")
    try:
        connector = registry.create(system)
    except ConfigError as exc:
        report.settings = safe_text(exc)
        report.problems.append(report.settings)
        return report
    try:
        if connector.supports("health"):
            report.health_ok, report.health = _live_check(connector, timeout)
            if not report.health_ok:
                report.problems.append(f"live check: {report.health}")
    finally:
        connector.close()
    return report


def _live_check(connector: Connector, timeout: float) -> tuple[bool, str]:
    """Run ``connector.check()`` in a daemon thread, so a system that never answers costs
    ``timeout`` seconds and not the whole command."""
    outcome: list[tuple[bool, str]] = []

    def run() -> None:
        try:
            outcome.append((True, safe_text(connector.check(), 300)))
        except Exception as exc:  # any failure of the live check is its answer
            outcome.append((False, safe_text(f"{type(exc).__name__}: {exc}", 300)))

    thread = threading.Thread(target=run, name=f"check-{connector.name}", daemon=True)
    thread.start()
    thread.join(timeout)
    if not outcome:
        return False, f"no answer within {timeout:g} s"
    return outcome[0]
