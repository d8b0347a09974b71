"""Source: canonical ``stock_snapshot`` messages in a file (one JSON object, an array, or JSON
lines), validated against the message schema; no mapping needed."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor.errors import Problem, ValidationError
from conveyor.reconcile.sources.base import CHUNK_ROWS, Chunk, Progress, Snapshot, parse_time
from conveyor.reconcile.sources.store import SnapshotStore, file_sha256

if TYPE_CHECKING:
    from conveyor.reconcile.reference import Reference


class CanonicalJsonSnapshot(Snapshot):
    """One or more canonical ``stock_snapshot`` messages (a JSON object, array or JSON lines)."""

    def __init__(
        self,
        system: str,
        path: Path,
        *,
        reference: Reference | None = None,
        tracks_lots: bool | None = None,
    ) -> None:
        super().__init__(
            system, str(path), canonical=True, tracks_lots=tracks_lots, size=path.stat().st_size
        )
        self.path = path
        self.reference = reference

    def chunks(
        self, progress: Progress | None = None, store: SnapshotStore | None = None
    ) -> Iterator[Chunk]:
        self.sha256 = file_sha256(self.path)
        for line, record in _json_documents(self.path):
            if isinstance(record, Exception):
                self._reject(line, "parse", record, "")
                continue
            rows = self._validated_rows(line, record)
            if progress is not None:
                progress(0)
            for start in range(0, len(rows), CHUNK_ROWS):
                part = rows[start : start + CHUNK_ROWS]
                chunk = Chunk(
                    [
                        (
                            r["material"],
                            r["location"],
                            r.get("lot") or "",
                            r["quantity"],
                            r["uom"],
                            r.get("description") or "",
                        )
                        for r, _ in part
                    ],
                    lines=[number for _, number in part],
                )
                chunk = self._valid(chunk, self.reference, text=False)
                if len(chunk):
                    yield chunk
        if progress is not None and self.size:
            progress(self.size)
        if store is not None:
            self.stored_path = str(store.put_file(self.path, self.sha256))

    def _validated_rows(self, line: int, record: Any) -> list[tuple[dict[str, Any], int]]:
        """The message's valid rows (with their row number); invalid rows go to ``unmapped``;
        an invalid envelope rejects the whole message with its rows counted."""
        from conveyor.messages import validate

        rows = record.get("payload", {}).get("rows") if isinstance(record, dict) else None
        count = len(rows) if isinstance(rows, list) else 1
        if not isinstance(record, dict) or record.get("type") != "stock_snapshot":
            self.rows += count
            self._reject(line, "validate", "not a stock_snapshot message", record)
            return []
        assert isinstance(rows, list) or rows is None
        rows = rows if isinstance(rows, list) else []
        self.rows += len(rows)
        bad: dict[int, list[Problem]] = {}
        try:
            message = validate(record)
        except ValidationError as exc:
            envelope: list[Problem] = []
            for problem in exc.problems:
                match = re.match(r"^\$\.payload\.rows\[(\d+)\]", problem.field)
                if match:
                    bad.setdefault(int(match.group(1)), []).append(problem)
                else:
                    envelope.append(problem)
            if envelope:
                self._reject(line, "validate", ValidationError(envelope), "(envelope)")
                for row in rows:
                    self._reject(line, "validate", "its message is invalid", row)
                return []
            rest = {
                **record,
                "payload": {
                    **record["payload"],
                    "rows": [r for i, r in enumerate(rows) if i not in bad],
                },
            }
            message = validate(rest)
        for index in sorted(bad):
            problems = bad[index]
            for problem in problems:
                problem.file, problem.line = self.source, line
            self._reject(line, "validate", ValidationError(problems), rows[index])
        as_of = parse_time(message["payload"]["as_of"])
        self.as_of = as_of if self.as_of is None else max(self.as_of, as_of)
        numbers = [i + 1 for i in range(len(rows)) if i not in bad]
        return list(zip(message["payload"]["rows"], numbers, strict=True))


def _json_documents(path: Path) -> Iterator[tuple[int, Any]]:
    """Records of a JSON file: one (pretty-printed) object, an array, or JSON lines."""
    from conveyor.messages import loads, read_records

    text = path.read_bytes().decode("utf-8-sig")
    if text.lstrip().startswith("{"):
        try:
            yield 1, loads(text)
            return
        except ValueError:
            pass  # not one object: JSON lines
    yield from read_records(path)


def is_canonical_json(path: Path) -> bool:
    """True when the first JSON record is a ``stock_snapshot`` message."""
    from conveyor.messages import loads

    with path.open("rb") as fh:
        head = fh.read(1 << 16).decode("utf-8-sig", errors="replace").lstrip()
    if head.startswith("["):
        head = head[1:].lstrip()
    first_line = head.split("\n", 1)[0]
    try:
        record = loads(first_line)
    except ValueError:
        match = re.search(r'"type"\s*:\s*"([a-z_]+)"', head)
        return bool(match and match.group(1) == "stock_snapshot")
    return isinstance(record, dict) and record.get("type") == "stock_snapshot"
