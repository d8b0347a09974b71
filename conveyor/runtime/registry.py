"""Find connector classes: entry points of ``conveyor.connectors`` by short name, or
``module:Class``.

A broken plugin is warned about and skipped, not fatal; a typo gets "Did you mean …?".
"""

from __future__ import annotations

import difflib
import importlib
import logging
from functools import cache
from importlib.metadata import entry_points
from typing import Any

from conveyor.connector import Connector
from conveyor.errors import ConfigError

log = logging.getLogger(__name__)


@cache
def available() -> dict[str, Any]:
    """Registered connector entry points by name (not imported yet)."""
    return {ep.name: ep for ep in entry_points(group="conveyor.connectors")}


def load(name: str) -> type[Connector]:
    """The connector class for ``name`` (entry-point name or ``package.module:Class``)."""
    if ":" in name:
        module, _, attr = name.partition(":")
        cls = getattr(importlib.import_module(module), attr)
    else:
        eps = available()
        if name not in eps:
            close = difflib.get_close_matches(name, eps, n=1)
            hint = (
                f" Did you mean {close[0]!r}?"
                if close
                else f" Known: {', '.join(sorted(eps)) or 'none'}."
            )
            raise ConfigError(f"No such connector: {name!r}.{hint}")
        try:
            cls = eps[name].load()
        except Exception as exc:  # a broken plugin must not take the hub down
            log.warning("connector %s failed to load: %s", name, exc)
            raise ConfigError(f"connector {name!r} failed to load: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, Connector)):
        raise ConfigError(f"{name!r} is not a Connector class")
    return cls


def create(system: Any) -> Connector:
    """Instantiate the connector of a ``SystemConfig``."""
    cls = load(system.connector)
    return cls(system.name, system.settings, connection=system.connection)
