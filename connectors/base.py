"""The connector contract: what every connector (REST, Kingdee, Yonyou, SAP SOAP, B2MML, CSV, …)
provides. A connector speaks its system's format; the mapping layer turns that into canonical
messages and back, so no connector knows another.

A connector declares ``capabilities`` instead of callers testing with ``if``-chains:

- ``receive``  — yields raw records pushed or dropped to it (files, HTTP push, AMQP);
- ``poll``     — fetches new raw records since a cursor (REST/SOAP pulls);
- ``send``     — posts one external document (outbound-mapped) and returns its reference;
- ``lookup``   — finds a document by the hub's key (so an ambiguous send is checked, not repeated);
- ``idempotency_key`` — the target deduplicates by a key we pass (e.g. YonBIP ``resubmitCheckKey``);
- ``snapshot`` — returns the system's on-hand stock as raw rows for reconciliation.

Errors are classified where they happen: raise ``TransientError`` (retry),
``AmbiguousDeliveryError``
(may have committed), ``RejectedError`` (business refusal) or another ``TerminalError``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass(frozen=True)
class RawRecord:
    """One record as an external system gave it, with where it came from (for parking)."""

    data: Any
    file: str | None = None
    line: int | None = None
    cursor: str | None = None
    """The position after this record, saved as the connector's checkpoint once it is accepted."""


@dataclass(frozen=True)
class SendResult:
    """What a target answered to a posting: its document number, and whether it already had it."""

    external_ref: str | None
    already_present: bool = False
    detail: Mapping[str, Any] = field(default_factory=dict)


class Connector:
    """Base class of every connector. Override what the capabilities say you support.

    ``name`` is the system name from ``conveyor.yaml``; ``settings`` are its non-secret settings,
    validated against ``config_schema``; secrets are read from the environment (``secret(...)``) or
    an Airflow Connection, never from settings, and never logged.
    """

    kind: ClassVar[str] = "base"
    capabilities: ClassVar[frozenset[str]] = frozenset()
    config_schema: ClassVar[dict[str, Any]] = {"type": "object"}

    def __init__(
        self, name: str, settings: Mapping[str, Any] | None = None, *, connection: str | None = None
    ) -> None:
        self.name = name
        self.settings = dict(settings or {})
        self.connection = connection
        self._validate_settings()

    def _validate_settings(self) -> None:
        from jsonschema import Draft202012Validator

        from conveyor.errors import ConfigError

        errors = sorted(
            Draft202012Validator(self.config_schema).iter_errors(self.settings), key=str
        )
        if errors:
            where = ".".join(str(p) for p in errors[0].absolute_path) or "settings"
            raise ConfigError(f"system {self.name!r} ({self.kind}): {where}: {errors[0].message}")

    def supports(self, capability: str) -> bool:
        """True when the connector declares ``capability``."""
        return capability in self.capabilities

    def secret(self, field_name: str) -> str | None:
        """A secret for this system: ``CONVEYOR_<CONNECTION or NAME>_<FIELD>`` from the
        environment."""
        import os

        prefix = (self.connection or self.name).upper().replace("-", "_")
        return os.environ.get(f"CONVEYOR_{prefix}_{field_name.upper()}")

    # ---- inbound
    def receive(self) -> Iterator[RawRecord]:
        """Raw records waiting at this connector (files dropped, pushed documents)."""
        raise NotImplementedError(f"{self.kind} does not receive")

    def poll(self, cursor: str | None) -> Iterator[RawRecord]:
        """Raw records changed since ``cursor`` (None: from the configured start)."""
        raise NotImplementedError(f"{self.kind} does not poll")

    # ---- outbound
    def send(
        self,
        document: Mapping[str, Any],
        *,
        message_type: str,
        key: str,
        idempotency_key: str | None = None,
    ) -> SendResult:
        """Post one outbound-mapped document; ``key`` is the hub's business key."""
        raise NotImplementedError(f"{self.kind} does not send")

    def lookup(self, *, message_type: str, key: str) -> SendResult | None:
        """The target's document for the hub's ``key``, or None when it has none."""
        raise NotImplementedError(f"{self.kind} cannot look documents up")

    # ---- reconciliation
    def snapshot(self) -> Iterator[RawRecord]:
        """The system's on-hand stock as raw rows (mapped by the system's ``stock_snapshot``
        mapping)."""
        raise NotImplementedError(f"{self.kind} gives no stock snapshot")

    def close(self) -> None:
        """Release sessions and sockets."""
