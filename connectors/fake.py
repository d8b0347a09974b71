"""An in-memory stand-in connector for tests and demos: records what it is sent, can fail on
purpose, answers lookups and snapshots from memory, and serves records to polls and receives.

Settings: ``fail_first`` (transient failures before success), ``reject`` (always refuse with a
business error), ``records`` (inline raw records, or canonical messages) or ``records_file``
(a JSON-lines file, read lazily — large polls stream), ``snapshot_rows``. A poll's cursor is the
number of records already handed out of that stream; every stream reads the same records, filtered
to the stream's message type when a record names its ``type``.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from conveyor.connector import (
    BatchItem,
    Connector,
    ItemResult,
    RawRecord,
    ReceivedUnit,
    SendResult,
    Stream,
)
from conveyor.errors import ConfigError, RejectedError, TransientError

MESSAGE_TYPES = (
    "production_order",
    "material_consumption",
    "production_output",
    "stock_transfer",
    "stock_adjustment",
    "material_request",
    "stock_snapshot",
)


class FakeConnector(Connector):
    """A connector that keeps everything in memory (a stand-in: reported as one where used)."""

    kind = "fake"
    stand_in = True
    capabilities = frozenset(
        {"poll", "receive", "send", "send_batch", "lookup", "snapshot", "health"}
    )
    streams = tuple(Stream(name=t, message_type=t, source="memory") for t in MESSAGE_TYPES)
    config_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "fail_first": {"type": "integer", "minimum": 0},
            "reject": {"type": "string"},
            "records": {"type": "array"},
            "records_file": {"type": "string"},
            "snapshot_rows": {"type": "array"},
            "password": {"type": "string", "secret": True},
        },
        "additionalProperties": False,
    }

    def __init__(
        self, name: str, settings: Mapping[str, Any] | None = None, *, connection: str | None = None
    ) -> None:
        super().__init__(name, settings, connection=connection)
        self.sent: dict[str, Mapping[str, Any]] = {}
        self.calls = 0
        self.closed = False
        self._numbers = itertools.count(1)
        self._lock = threading.Lock()

    def _records(self) -> Iterator[Any]:
        if "records_file" in self.settings:
            path = Path(self.settings["records_file"])
            if not path.is_file():
                raise ConfigError(f"system {self.name!r}: records_file {path} does not exist")
            with path.open(encoding="utf-8") as lines:
                for line in lines:
                    if line.strip():
                        yield json.loads(line)
        else:
            yield from self.settings.get("records", [])

    def poll(self, stream: str, cursor: str | None) -> Iterator[RawRecord]:
        wanted = self.stream(stream).message_type
        start = int(cursor or 0)
        for index, record in enumerate(self._records(), start=1):
            if index <= start:
                continue
            if isinstance(record, Mapping) and record.get("type", wanted) != wanted:
                continue
            yield RawRecord(record, file=f"{self.name}:{wanted}", line=index, cursor=str(index))

    def receive(self) -> Iterator[ReceivedUnit]:
        records = [
            RawRecord(record, file=f"{self.name}:memory", line=index)
            for index, record in enumerate(self._records(), start=1)
        ]
        if records:
            yield ReceivedUnit(name=f"{self.name}:memory", records=records)

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

    def send_batch(self, items: Sequence[BatchItem]) -> list[ItemResult]:
        results = []
        for item in items:
            try:
                result = self.send(item.document, message_type=item.message_type, key=item.key)
            except (RejectedError, TransientError) as exc:
                results.append(ItemResult(item.key, error=exc))
            else:
                results.append(ItemResult(item.key, result=result))
        return results

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

    def check(self) -> str:
        return f"{self.name}: in-memory stand-in, nothing to reach"

    def close(self) -> None:
        self.closed = True
