"""The project: ``conveyor.yaml`` (systems, routes, retry, tolerances), its folders and its URLs."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from conveyor import limits as _limits
from conveyor.errors import ConfigError
from conveyor.ledger.db import default_url
from conveyor.paths import project_dir
from conveyor.routing import Router
from conveyor.yamlfile import load_validated

CONFIG_FILE = "conveyor.yaml"


@dataclass(frozen=True)
class SystemConfig:
    """One external system as declared in ``conveyor.yaml``."""

    name: str
    connector: str
    role: str = "other"
    mapping: str | None = None
    connection: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    tracks_lots: bool = True
    batch_size: int = 100
    """Documents per ``send_batch`` call when the connector can send batches (1: one per call)."""
    poll_every: float | None = None
    """Seconds between polls or receive passes under ``conveyor up`` (None: see the schema)."""


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff with jitter for transient delivery failures."""

    max_attempts: int = 8
    base_delay_s: float = 1.0
    max_delay_s: float = 300.0


@dataclass
class Project:
    """A project directory and its configuration (an empty config when there is no file)."""

    root: Path
    raw: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, root: str | os.PathLike[str] | None = None) -> Project:
        """Load ``conveyor.yaml`` from ``root`` (``--project``/``CONVEYOR_PROJECT``/cwd)."""
        directory = project_dir(root)
        path = directory / CONFIG_FILE
        if not path.exists():
            project = cls(root=directory)
        else:
            loaded = load_validated(path, "conveyor.schema.json")
            project = cls(root=directory, raw=loaded.data or {})
        _limits.use(project.limits)
        return project

    @cached_property
    def limits(self) -> _limits.Limits:
        """How much of an input is read, kept or printed (``limits:``; see ``conveyor.limits``)."""
        return _limits.Limits.from_config(self.raw.get("limits"))

    @property
    def db_url(self) -> str:
        """The ledger URL (``CONVEYOR_DB_URL`` or the project's SQLite file)."""
        return default_url(self.root)

    @property
    def broker_url(self) -> str | None:
        """``CONVEYOR_BROKER_URL``; None selects the embedded transport."""
        return os.environ.get("CONVEYOR_BROKER_URL") or None

    @cached_property
    def systems(self) -> dict[str, SystemConfig]:
        """Declared systems by name."""
        return {
            name: SystemConfig(name=name, **spec)
            for name, spec in (self.raw.get("systems") or {}).items()
        }

    def system(self, name: str) -> SystemConfig:
        """One system, or ``ConfigError`` naming the ones that exist."""
        try:
            return self.systems[name]
        except KeyError:
            known = ", ".join(sorted(self.systems)) or "none"
            raise ConfigError(
                f"unknown system {name!r} (declared: {known})", file=CONFIG_FILE
            ) from None

    @cached_property
    def router(self) -> Router:
        """The routes of ``conveyor.yaml``."""
        return Router.from_config(self.raw.get("routes") or [])

    @cached_property
    def retry(self) -> RetryPolicy:
        """The delivery retry policy."""
        return RetryPolicy(**(self.raw.get("retry") or {}))

    @property
    def alerts_on_accept(self) -> bool:
        """``alerts.on_accept``: check for stock alerts after every accept (default on)."""
        return bool((self.raw.get("alerts") or {}).get("on_accept", True))

    @property
    def mappings_dir(self) -> Path:
        """``<project>/mappings``."""
        return self.root / "mappings"

    @property
    def master_data_dir(self) -> Path:
        """``<project>/master_data``."""
        return self.root / "master_data"
