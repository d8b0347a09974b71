"""What ``conveyor_on_parked`` does with the parking events that started it: log each (what was
parked, where, why) and hand the list to a notifier — ``airflow.on_parked.notifier`` in
``conveyor.yaml``, a ``module:function`` taking the list of events (e-mail, chat, a ticket)."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

log = logging.getLogger(__name__)


def parking_events(triggering: Mapping[Any, Iterable[Any]]) -> list[dict[str, Any]]:
    """The events carried by the asset events that triggered the run (each asset event's
    ``extra["payload"]`` is one message of the queue), in order."""
    found: list[dict[str, Any]] = []
    for events in triggering.values():
        for asset_event in events:
            extra = getattr(asset_event, "extra", None) or {}
            payload = extra.get("payload")
            if isinstance(payload, Mapping):
                found.append(dict(payload))
    return found


def describe(event: Mapping[str, Any]) -> str:
    """One line for the log: a parked delivery (target, message) or input record (file:line)."""
    if event.get("kind") == "delivery":
        return (
            f"delivery #{event.get('delivery_id')} to {event.get('target')} {event.get('status')}: "
            f"{event.get('type')} {event.get('source')}/{event.get('key')}: {event.get('reason')}"
        )
    where = f"{event.get('file')}:{event.get('line')}" if event.get("file") else "-"
    return (
        f"record #{event.get('parked_id')} from {event.get('system')} parked at "
        f"{event.get('stage')} ({where}): {event.get('reason')}"
    )


def load_notifier(spec: str) -> Callable[[list[dict[str, Any]]], Any]:
    """``module:function`` as a callable."""
    module, _, name = spec.partition(":")
    if not module or not name:
        raise ValueError(f"notifier {spec!r}: expected module:function")
    found = getattr(importlib.import_module(module), name)
    if not callable(found):
        raise ValueError(f"notifier {spec!r} is not callable")
    return found  # type: ignore[no-any-return]


def notify(events: list[dict[str, Any]], notifier: str | None) -> None:
    """Log every event, then call the notifier (when one is configured) with all of them."""
    from conveyor.redact import safe_text

    for event in events:
        log.warning("parked: %s", safe_text(describe(event)))
    if notifier and events:
        load_notifier(notifier)(events)
