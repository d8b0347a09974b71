"""An in-memory stand-in connector for tests and demos: records what it is sent, can fail on
purpose, answers lookups and snapshots from memory, and serves records to polls and receives.

Settings: ``fail_first`` (transient failures before success), ``reject`` (always refuse with a
business error), ``reject_keys`` (refuse keys matching these patterns), ``drop_answer_keys``
(keep the document, then fail as if the answer were lost: ambiguous, once per key),
``echo_secret`` (errors repeat the ``PASSWORD`` secret, as a careless target echoes credentials:
the hub must never store it), ``notes`` (what the target says alongside every posting and
lookup answer, as ``SendResult.detail["notes"]``: texts or message dicts), ``store`` (keep
documents in a named in-process store shared by every fake connector with that name — a worker's
threads then see one target), ``records`` (inline raw records, or canonical messages) or
``records_file`` (a JSON-lines file, read lazily — large polls stream), ``snapshot_rows``. A
poll's cursor is the number of records already handed out of that stream; every stream reads the
same records, filtered to the stream's message type when a record names its ``type``. The
conformance suite runs against it (``tests/connectors/test_fake.py``).
"""

from __future__ import annotations

import fnmatch
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
from conveyor.errors import AmbiguousDeliveryError, ConfigError, RejectedError, TransientError

MESSAGE_TYPES = (
    "production_order",
    "material_consumption",
    "production_output",
    "stock_transfer",
    "stock_adjustment",
    "material_request",
    "stock_snapshot",
)


class _Store:
    """What a fake target holds: documents by key, how often each was posted, numbering."""

    def __init__(self) -> None:
        self.sent: dict[str, Mapping[str, Any]] = {}
        self.refs: dict[str, str] = {}
        self.posts: dict[str, int] = {}
        self.dropped: set[str] = set()
        self.numbers = itertools.count(1)
        self.lock = threading.Lock()


_stores: dict[str, _Store] = {}
_stores_lock = threading.Lock()


def shared_store(name: str) -> _Store:
    """The in-process store called ``name`` (made on first use)."""
    with _stores_lock:
        return _stores.setdefault(name, _Store())


class FakeConnector(Connector):
    """A connector that keeps everything in memory (a stand-in: reported as one where used)."""

    kind = "fake"
    stand_in = True
    thread_safe = True
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
            "reject_keys": {"type": "array", "items": {"type": "string"}},
            "drop_answer_keys": {"type": "array", "items": {"type": "string"}},
            "echo_secret": {"type": "boolean"},
            "notes": {"type": "array", "items": {"type": ["string", "object"]}},
            "store": {"type": "string"},
            "password": {"type": "string", "secret": True},
        },
        "additionalProperties": False,
    }

    def __init__(
        self, name: str, settings: Mapping[str, Any] | None = None, *, connection: str | None = None
    ) -> None:
        super().__init__(name, settings, connection=connection)
        store = self.settings.get("store")
        self.store = shared_store(store) if store else _Store()
        self.sent = self.store.sent
        self.calls = 0
        self.closed = False
        self._lock = self.store.lock

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
                raise RejectedError(self._echo(str(self.settings["reject"])))
            if _matches(key, self.settings.get("reject_keys")):
                raise RejectedError(self._echo(f"{self.name}: document {key} refused"))
            if self.calls <= int(self.settings.get("fail_first", 0)):
                raise TransientError(f"{self.name}: simulated outage (call {self.calls})")
            store = self.store
            if key in store.sent:
                return SendResult(store.refs[key], already_present=True, detail=self._detail())
            store.sent[key] = document
            store.refs[key] = f"{self.name.upper()}-{next(store.numbers):06d}"
            store.posts[key] = store.posts.get(key, 0) + 1
            if _matches(key, self.settings.get("drop_answer_keys")) and key not in store.dropped:
                store.dropped.add(key)
                raise AmbiguousDeliveryError(f"{self.name}: kept {key}, then the answer was lost")
            return SendResult(store.refs[key], detail=self._detail())

    def _detail(self) -> dict[str, Any]:
        """The answer's detail: the configured ``notes``, when there are any."""
        notes = self.settings.get("notes")
        return {"notes": list(notes)} if notes else {}

    def _echo(self, text: str) -> str:
        """The refusal's text as a connector passes it on: redacted (``conveyor.redact``), even
        when the stand-in target, told to by ``echo_secret``, repeats the login it was given."""
        from conveyor.redact import safe_text

        if self.settings.get("echo_secret"):
            text = f"{text} (login was {self.secret('username')}:{self.secret('password')})"
        return safe_text(text)

    def send_batch(self, items: Sequence[BatchItem]) -> list[ItemResult]:
        results = []
        for item in items:
            try:
                result = self.send(item.document, message_type=item.message_type, key=item.key)
            except (RejectedError, TransientError) as exc:  # ambiguous ones too (transient)
                results.append(ItemResult(item.key, error=exc))
            else:
                results.append(ItemResult(item.key, result=result))
        return results

    def lookup(self, *, message_type: str, key: str) -> SendResult | None:
        with self._lock:
            ref = self.store.refs.get(key)
        return None if ref is None else SendResult(ref, already_present=True, detail=self._detail())

    def snapshot(self) -> Iterator[RawRecord]:
        for index, row in enumerate(self.settings.get("snapshot_rows", []), start=1):
            yield RawRecord(row, line=index)

    def check(self) -> str:
        return f"{self.name}: in-memory stand-in, nothing to reach"

    def close(self) -> None:
        self.closed = True


def _matches(key: str, patterns: Any) -> bool:
    return any(fnmatch.fnmatchcase(key, pattern) for pattern in patterns or ())
