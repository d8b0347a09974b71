"""File drops: the ``files`` connector, for the WMS and older ERPs that exchange files in a shared
folder (CSV, JSON, JSON lines, and any format of the ``conveyor.formats`` registry such as B2MML).

Receiving (``settings.root``): files dropped into ``root/inbox/`` whose names match
``settings.patterns`` are claimed into ``processing/`` by a rename, read as a stream, and handed to
the inbound driver as one ``ReceivedUnit`` each; the file moves to ``archive/`` (with a result
file) only after its records are committed, or to ``error/`` (with the reason) when it cannot be
read at all. A pattern's value is a canonical message type (the file is read as CSV, JSON or JSON
lines by its suffix and mapped with the system's inbound mapping) or a format name (its reader
says each record's type)::

    systems:
      wms:
        connector: files
        settings:
          root: /srv/exchange/wms
          patterns: {"moves_*.csv": stock_transfer, "*.xml": b2mml}
          ready: stable          # or: marker (a "<name>.done" file beside it)
          stable_seconds: 2
          outbox: /srv/exchange/wms/staging
          file_name: "{message_type}_{key}.csv"
          encoding: gbk

Each CSV row also carries ``_file`` (the first 16 hex digits of the file's SHA-256) and ``_line``,
so a mapping whose rows have no business key of their own names ``key: [_file, _line]``. Rows carry
their position as the cursor: a file interrupted by a crash is resumed after its last committed
batch (see ``conveyor.runtime.inbound``), and a file dropped again (same content) is archived
unread.

Sending (``settings.outbox``): ``send`` writes one CSV per document (``connectors.files.outbox``),
``lookup`` finds it again by the hub's key. Folders and their rules: ``connectors.files.inbox``.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

from connectors.files.inbox import FOLDERS, Claimed, DropFolders, safe_name
from connectors.files.outbox import FileWriter
from conveyor.connector import Connector, RawRecord, ReceivedUnit, SendResult
from conveyor.errors import ConfigError, TransientError
from conveyor.messages import MESSAGE_TYPES

log = logging.getLogger(__name__)

_BY_SUFFIX = {".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl"}
HASH_CHUNK = 1 << 20


def file_hash(path: Path) -> str:
    """``sha256:<hex>`` of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(HASH_CHUNK):
            digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"


class FilesConnector(Connector):
    """CSV / JSON / XML file drops in a shared folder (see the module docstring)."""

    kind = "files"
    capabilities = frozenset({"receive", "send", "lookup", "health"})
    config_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "root": {"type": "string", "minLength": 1, "description": "folder holding inbox/…"},
            "patterns": {
                "type": "object",
                "additionalProperties": {"type": "string", "minLength": 1},
                "description": "file-name pattern → canonical message type or format name",
            },
            "ready": {"enum": ["stable", "marker"], "default": "stable"},
            "stable_seconds": {"type": "number", "minimum": 0, "default": 2},
            "marker_suffix": {"type": "string", "minLength": 1, "default": ".done"},
            "poll_seconds": {"type": "number", "exclusiveMinimum": 0, "default": 5},
            "events": {
                "type": "boolean",
                "default": True,
                "description": "watch filesystem events (false: poll only, e.g. network shares)",
            },
            "csv": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "encoding": {"type": "string"},
                    "delimiter": {"type": "string", "minLength": 1, "maxLength": 1},
                    "quotechar": {"type": "string", "minLength": 1, "maxLength": 1},
                    "skip_rows": {"type": "integer", "minimum": 0},
                },
            },
            "row_fields": {"type": "boolean", "default": True},
            "outbox": {"type": "string", "minLength": 1},
            "file_name": {"type": "string", "minLength": 1},
            "encoding": {"type": "string", "minLength": 1},
            "delimiter": {"type": "string", "minLength": 1, "maxLength": 1},
        },
    }

    def __init__(
        self, name: str, settings: Mapping[str, Any] | None = None, *, connection: str | None = None
    ) -> None:
        super().__init__(name, settings, connection=connection)
        self._drop: DropFolders | None = None
        self._writer: FileWriter | None = None
        self._busy = 0
        self._wake = threading.Event()
        self._observer: Any = None
        if "root" in self.settings:
            patterns = self.settings.get("patterns") or {}
            if not patterns:
                raise ConfigError(f"system {name!r} (files): root needs patterns")
            for pattern, kind in patterns.items():
                if kind not in MESSAGE_TYPES:
                    from conveyor.formats import reader

                    try:
                        reader(kind)
                    except ConfigError as exc:
                        raise ConfigError(
                            f"system {name!r} (files): pattern {pattern!r}: {kind!r} is neither "
                            f"a message type nor a format ({exc})"
                        ) from None
            self._drop = DropFolders(
                Path(self.settings["root"]),
                patterns,
                ready=self.settings.get("ready", "stable"),
                stable_seconds=float(self.settings.get("stable_seconds", 2)),
                marker_suffix=self.settings.get("marker_suffix", ".done"),
            )
        else:
            self.narrow_capabilities("receive")
        if "outbox" in self.settings:
            self._writer = FileWriter(
                Path(self.settings["outbox"]),
                file_name=self.settings.get("file_name", "{message_type}_{key}.csv"),
                encoding=self.settings.get("encoding", "utf-8"),
                delimiter=self.settings.get("delimiter", ","),
            )
        else:
            self.narrow_capabilities("send", "lookup")

    @property
    def drop(self) -> DropFolders:
        """The receiving folders (ConfigError when ``root`` is not set)."""
        if self._drop is None:
            raise ConfigError(f"system {self.name!r} (files) has no root: it receives nothing")
        return self._drop

    @property
    def writer(self) -> FileWriter:
        """The outbound writer (ConfigError when ``outbox`` is not set)."""
        if self._writer is None:
            raise ConfigError(f"system {self.name!r} (files) has no outbox: it sends nothing")
        return self._writer

    # ------------------------------------------------------------------ receiving
    def receive(self) -> Iterator[ReceivedUnit]:
        """Files left in ``processing/`` by a crash, then the ready files of ``inbox/``, each
        claimed only when the driver asks for it."""
        drop = self.drop
        for claimed in drop.leftovers():
            yield self._unit(claimed)
        ready, refused, self._busy = drop.waiting()
        for name in refused:
            reason = f"{name}: not a regular file (a symbolic link is never followed)"
            log.warning("%s: %s", self.name, reason)
            drop.refuse(name, reason)
        for name in ready:
            taken = drop.claim(name)
            if taken is not None:
                yield self._unit(taken)

    def claim(self, name: str) -> ReceivedUnit | None:
        """The unit of one named file of ``inbox/`` (``ValueError`` for a name that would leave
        the folder or a file that is not regular); None when it is gone."""
        claimed = self.drop.claim(safe_name(name))
        return self._unit(claimed) if claimed is not None else None

    def pending(self) -> int:
        """Files of the last pass still being written (not yet ready)."""
        return self._busy

    def _unit(self, claimed: Claimed) -> ReceivedUnit:
        digest = file_hash(claimed.path)
        message_type = claimed.kind if claimed.kind in MESSAGE_TYPES else None
        fmt = (
            claimed.kind
            if message_type is None
            else _BY_SUFFIX.get(claimed.path.suffix.lower(), "csv")
        )
        outcome: dict[str, Any] = {}

        def report(counts: Mapping[str, Any]) -> None:
            outcome.update(counts)

        def ack() -> None:
            result: dict[str, Any] = {"file": claimed.name, "content_hash": digest}
            if outcome:
                result.update(outcome)
                result["parked_in"] = (
                    "the ledger's parked records (conveyor trace FILE, conveyor replay --records)"
                )
            else:
                result["already_taken_in"] = True
            where = self.drop.archive(claimed, result)
            log.info("%s: %s archived as %s", self.name, claimed.name, where.name)

        def fail(reason: str) -> None:
            where = self.drop.fail(claimed, reason)
            log.warning("%s: %s moved to error/ as %s: %s", self.name, claimed.name, where, reason)

        return ReceivedUnit(
            name=claimed.name,
            records=self._records(claimed, fmt, message_type, digest),
            ack=ack,
            fail=fail,
            message_type=message_type,
            content_hash=digest,
            report=report,
        )

    def _records(
        self, claimed: Claimed, fmt: str, message_type: str | None, digest: str
    ) -> Iterator[RawRecord]:
        from conveyor.formats import reader

        read = reader(fmt)
        tag = digest.removeprefix("sha256:")[:16]
        row_fields = fmt == "csv" and self.settings.get("row_fields", True)
        with open(claimed.path, "rb") as stream:
            for index, raw in enumerate(
                read(stream, name=claimed.name, settings=self.settings), start=1
            ):
                data = raw.data
                if row_fields and isinstance(data, dict):
                    data["_file"] = tag
                    data["_line"] = str(raw.line)
                yield RawRecord(
                    data,
                    file=claimed.name,
                    line=raw.line,
                    cursor=str(index),
                    message_type=raw.message_type or message_type,
                )

    # ------------------------------------------------------------------ waiting
    def wait_for_work(self, timeout: float | None = None) -> None:
        """Sleep until a file event in ``inbox/`` or ``timeout`` (default ``poll_seconds``): the
        polling fallback for shares that give no events is the timeout itself."""
        timeout = float(self.settings.get("poll_seconds", 5)) if timeout is None else timeout
        if self.settings.get("events", True) and self._observer is None:
            self._start_observer()
        if self._busy and self.drop.ready == "stable":
            timeout = min(timeout, max(self.drop.stable_seconds / 2, 0.1))
        self._wake.wait(timeout)
        self._wake.clear()

    def _start_observer(self) -> None:
        try:
            from watchdog.events import FileSystemEvent, FileSystemEventHandler
            from watchdog.observers import Observer

            wake = self._wake

            class _Handler(FileSystemEventHandler):
                def on_any_event(self, event: FileSystemEvent) -> None:
                    wake.set()

            observer = Observer()
            observer.schedule(_Handler(), str(self.drop.folder("inbox")), recursive=False)
            observer.daemon = True
            observer.start()
            self._observer = observer
        except Exception as exc:  # no events here (inotify limits, a share): polling still works
            log.warning("%s: no file events (%s); polling every interval", self.name, exc)
            self._observer = False

    # ------------------------------------------------------------------ sending
    def send(
        self,
        document: Mapping[str, Any],
        *,
        message_type: str,
        key: str,
        idempotency_key: str | None = None,
    ) -> SendResult:
        """Write ``document`` as a file in the outbox (never twice for one key). A folder that
        cannot be written (a share gone, a full disk) is transient: the delivery is retried."""
        try:
            name, present = self.writer.write(document, message_type=message_type, key=key)
        except OSError as exc:
            raise TransientError(f"outbox of {self.name}: {exc.strerror or exc}") from exc
        return SendResult(external_ref=name, already_present=present)

    def lookup(self, *, message_type: str, key: str) -> SendResult | None:
        """The file written for ``key``, or None."""
        name = self.writer.lookup(message_type, key)
        return SendResult(external_ref=name, already_present=True) if name else None

    def check(self) -> str:
        """The folders exist (or can be made) and can be written."""
        seen = []
        if self._drop is not None:
            for which in FOLDERS:
                folder = self._drop.folder(which)
                probe = folder / f".conveyor-check-{time.time_ns()}"
                probe.write_bytes(b"")
                probe.unlink()
            seen.append(f"drop {self._drop.root}")
        if self._writer is not None:
            self._writer.folder.mkdir(parents=True, exist_ok=True)
            seen.append(f"outbox {self._writer.folder}")
        return "writable: " + ", ".join(seen)

    def close(self) -> None:
        """Stop watching for file events."""
        if self._observer:
            self._observer.stop()
            self._observer.join(timeout=5)
        self._observer = None
