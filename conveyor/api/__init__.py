"""The hub's HTTP API: ``create_app(project)`` (FastAPI), tokens and scopes, metrics.

See ``conveyor/api/app.py`` for the routes and ``docs/api.md`` for clients."""

from __future__ import annotations

from conveyor.api.app import ApiSettings, create_app

__all__ = ["ApiSettings", "create_app"]
