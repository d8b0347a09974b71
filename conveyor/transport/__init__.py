"""Transports: how deliveries travel from the ledger's outbox to the delivery workers.

``create(url, ...)`` picks one by the URL's scheme: no URL or ``embedded://`` is the embedded
transport (the outbox table is the queue), ``amqp://``/``amqps://`` is RabbitMQ. A third-party
transport is named by its full path, ``package.module:Class``; a typo gets "Did you mean …?".
Each transport is complete in one module, whose docstring states its features and URL format.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from conveyor.errors import ConfigError
from conveyor.transport.base import Depth, Envelope, Job, Transport

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from conveyor.config import RetryPolicy

ALIASES: dict[str, str] = {
    "embedded": "conveyor.transport.embedded:EmbeddedTransport",
    "amqp": "conveyor.transport.rabbitmq:RabbitMQTransport",
    "amqps": "conveyor.transport.rabbitmq:RabbitMQTransport",
}


def scheme_of(url: str | None) -> str:
    """The scheme of a transport URL; ``embedded`` when there is none."""
    if not url:
        return "embedded"
    return url.split("://", 1)[0].lower() if "://" in url else url


def resolve(url: str | None) -> type[Any]:
    """The transport class for ``url`` (alias by scheme, or ``module:Class`` with ``+`` before
    the URL, e.g. ``mypkg.transport:Kafka+kafka://host``)."""
    name = scheme_of(url)
    path = ALIASES.get(name)
    if path is None and url and "+" in url and ":" in url.split("+", 1)[0]:
        path = url.split("+", 1)[0]
    if path is None:
        close = difflib.get_close_matches(name, ALIASES, n=1)
        hint = f" Did you mean {close[0]}?" if close else f" Known: {', '.join(sorted(ALIASES))}."
        raise ConfigError(f"No such transport: {name}.{hint}")
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)  # type: ignore[no-any-return]


def create(
    url: str | None,
    *,
    engine: Engine,
    consumer_id: str | None = None,
    policy: RetryPolicy | None = None,
    options: Mapping[str, Any] | None = None,
) -> Transport:
    """A transport for ``url`` (None: embedded), not started yet."""
    from conveyor.config import RetryPolicy

    cls = resolve(url)
    if url and "+" in url and scheme_of(url) not in ALIASES:
        url = url.split("+", 1)[1]
    transport: Transport = cls(
        url or "embedded://",
        engine=engine,
        consumer_id=consumer_id,
        policy=policy or RetryPolicy(),
        options=dict(options or {}),
    )
    return transport


__all__ = ["ALIASES", "Depth", "Envelope", "Job", "Transport", "create", "resolve", "scheme_of"]
