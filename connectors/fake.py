"""An in-memory connector for tests and demos: records what it is sent, can fail on purpose, and
answers lookups and snapshots from memory. Settings: ``fail_first`` (transient failures before
success), ``reject`` (always refuse with a business error), ``records`` and ``snapshot_rows``."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

from connectors.base import Connector, RawRecord, SendResult
from conveyor.errors import RejectedError, TransientError


class FakeConnector(Connector):
    """A connector that keeps everything in memory."""

    kind = "fake"
    capabilities = frozenset({"receive", "send", "lookup", "snapshot"})
    config_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "fail_first": {"type": "integer", "minimum": 0},
            "reject": {"type": "string"},
            "records": {"type": "array"},
            "snapshot_rows": {"type": "array"},
        },
    }

    def __init__(
        self, name: str, settings: Mapping[str, Any] | None = None, *, connection: str | None = None
    ) -> None:
        super().__init__(name, settings, connection=connection)
        self.sent: dict[str, Mapping[str, Any]] = {}
        self.calls = 0
        self._numbers = itertools.count(1)
        self._lock = threading.Lock()

    def receive(self) -> Iterator[RawRecord]:
        for index, record in enumerate(self.settings.get("records", []), start=1):
            yield RawRecord(record, line=index)

    def send(
        self,
        document: Mapping[str, Any],
        *,
        message_type: str,
        key: str,
        idempotency_key: str | None = None,
    ) -> SendResult:
        with self._lock:
            self.calls += 1
            if self.settings.get("reject"):
                raise RejectedError(str(self.settings["reject"]))
            if self.calls <= int(self.settings.get("fail_first", 0)):
                raise TransientError(f"{self.name}: simulated outage (call {self.calls})")
            if key in self.sent:
                return SendResult(f"{self.name.upper()}-{key}", already_present=True)
            self.sent[key] = document
            return SendResult(f"{self.name.upper()}-{next(self._numbers):06d}")

    def lookup(self, *, message_type: str, key: str) -> SendResult | None:
        with self._lock:
            return (
                SendResult(f"{self.name.upper()}-{key}", already_present=True)
                if key in self.sent
                else None
            )

    def snapshot(self) -> Iterator[RawRecord]:
        for index, row in enumerate(self.settings.get("snapshot_rows", []), start=1):
            yield RawRecord(row, line=index)
