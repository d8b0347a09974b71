"""Idempotent delivery: never post a document twice to a target.

The ledger allows one successful delivery per (message, target). When an attempt may have reached
the target without us hearing the answer (a timeout after sending, a worker that died mid-call),
the delivery is marked ``needs_lookup`` and the next attempt first asks the connector to look the
document up by the hub's key. A connector that cannot look documents up but deduplicates by an
idempotency key (e.g. YonBIP ``resubmitCheckKey``) is simply sent again with the same key; one that
can do neither gets ``NeedsCheckError``: a person checks the target instead of risking a double
posting.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from typing import Any

from conveyor.connector import Connector, SendResult
from conveyor.errors import NeedsCheckError

KEY_NAMESPACE = uuid.UUID("5f1c2b0e-8a53-4f0e-9a54-6f3c7d1e2a90")


def business_key(message: Mapping[str, Any]) -> str:
    """The hub's key of a message towards targets: ``<source>:<key>`` (unique in the ledger)."""
    return f"{message['source']}:{message['key']}"


def idempotency_key(message_id: str, target: str) -> str:
    """A stable key per (message, target): the same on every attempt and every replay."""
    return str(uuid.uuid5(KEY_NAMESPACE, f"{message_id}/{target}"))


def look_up_first(connector: Connector, *, message_type: str, key: str) -> SendResult | None:
    """Before posting again what an earlier attempt may have posted: the target's document when
    it has it (``already_present``), None when it may be posted (it has not got it, or it
    deduplicates by idempotency key), ``NeedsCheckError`` when nobody can tell."""
    if connector.supports("lookup"):
        found = connector.lookup(message_type=message_type, key=key)
        if found is None:
            return None
        return SendResult(found.external_ref, already_present=True, detail=found.detail)
    if connector.supports("idempotency_key"):
        return None
    raise NeedsCheckError(
        f"an earlier attempt may have reached {connector.name}, which cannot look "
        f"documents up: check whether it has {key} before replaying"
    )


def deliver(
    connector: Connector,
    document: Mapping[str, Any],
    *,
    message_type: str,
    key: str,
    idem_key: str | Callable[[], str],
    needs_lookup: bool,
) -> SendResult:
    """Send ``document`` unless the target already has it (checked when ``needs_lookup``).

    ``idem_key`` may be given as a function: it is only worked out for targets that take one."""
    dedupes = connector.supports("idempotency_key")
    if needs_lookup:
        found = look_up_first(connector, message_type=message_type, key=key)
        if found is not None:
            return found
    return connector.send(
        document,
        message_type=message_type,
        key=key,
        idempotency_key=(idem_key if isinstance(idem_key, str) else idem_key())
        if dedupes
        else None,
    )
