"""Routes: which targets a message goes to (type + source wildcards, optional JMESPath conditions).

Routing runs inside ``ledger.accept``: the outbox rows for every target are written in the same
transaction as the message, and a message that matches no route is recorded with ``routes = 0``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any


def _as_tuple(value: str | Sequence[str] | None, default: str = "*") -> tuple[str, ...]:
    if value is None:
        return (default,)
    if isinstance(value, str):
        return (value,)
    return tuple(value)


@dataclass(frozen=True)
class Route:
    """Message types × sources (wildcards) → targets, when every condition matches."""

    types: tuple[str, ...]
    sources: tuple[str, ...]
    targets: tuple[str, ...]
    when: tuple[tuple[str, str], ...] = ()
    name: str = ""
    _compiled: tuple[Any, ...] = field(default=(), compare=False, repr=False)

    def matches(self, message: dict[str, Any]) -> bool:
        """True when the message's type, source and conditions all match."""
        if not any(fnmatchcase(message["type"], t) for t in self.types):
            return False
        if not any(fnmatchcase(message["source"], s) for s in self.sources):
            return False
        for (_, pattern), expression in zip(self.when, self._compiled, strict=True):
            value = expression.search(message)
            if value is None or not fnmatchcase(str(value), pattern):
                return False
        return True


class Router:
    """Resolve a message's targets; a system never receives its own messages back."""

    def __init__(self, routes: Sequence[Route] = ()) -> None:
        self.routes = tuple(routes)
        self._static = all(not route.when for route in self.routes)
        self._cache: dict[tuple[str, str], list[str]] = {}

    @classmethod
    def from_config(cls, specs: Sequence[dict[str, Any]]) -> Router:
        """Build from the ``routes:`` list of ``conveyor.yaml``."""
        import jmespath

        routes = []
        for index, spec in enumerate(specs):
            when = tuple((expr, str(pattern)) for expr, pattern in (spec.get("when") or {}).items())
            routes.append(
                Route(
                    types=_as_tuple(spec["type"]),
                    sources=_as_tuple(spec.get("source")),
                    targets=tuple(spec["targets"]),
                    when=when,
                    name=spec.get("name") or f"route {index + 1}",
                    _compiled=tuple(jmespath.compile(expr) for expr, _ in when),
                )
            )
        return cls(routes)

    def targets(self, message: dict[str, Any]) -> list[str]:
        """Targets in route order, without duplicates and without the message's own source."""
        if self._static:  # no conditions: the answer depends on type and source only
            cache_key = (message["type"], message["source"])
            cached = self._cache.get(cache_key)
            if cached is None:
                cached = self._cache[cache_key] = self._resolve(message)
            return list(cached)
        return self._resolve(message)

    def _resolve(self, message: dict[str, Any]) -> list[str]:
        out: list[str] = []
        for route in self.routes:
            if route.matches(message):
                out.extend(t for t in route.targets if t != message["source"] and t not in out)
        return out


def ordering_key(message: dict[str, Any]) -> str:
    """Messages with the same ordering key reach a target in acceptance order: same order, else
    same source document (the business key without its line suffix), else same material."""
    payload = message["payload"]
    if payload.get("order_id"):
        return f"order:{payload['order_id']}"
    if payload.get("reversal_of"):
        return f"doc:{message['source']}:{str(payload['reversal_of']).rsplit('/', 1)[0]}"
    return f"doc:{message['source']}:{message['key'].rsplit('/', 1)[0]}"
