"""Source: canonical ``stock_snapshot`` messages in a file (one JSON object, an array, or JSON
lines), validated against the message schema; no mapping needed. ``json_documents`` reads JSON
files for every source (a system's own JSON export too): any encoding ingest reads, and a line
that cannot be read is listed with its line instead of stopping the run."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor.errors import Problem, ValidationError
from conveyor.mapping.readers import file_encoding
from conveyor.reconcile.sources.base import (
    CHUNK_ROWS,
    ESCAPED,
    Chunk,
    Progress,
    Snapshot,
    parse_time,
    undecodable_error,
)
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
        for line, record in json_documents(self.path):
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


def json_documents(path: Path) -> Iterator[tuple[int, Any]]:
    """Records of a JSON file as ``(line, record or the error that kept it from being read)``:
    one (pretty-printed) object, an array, or JSON lines, in the file's encoding as ingest
    detects it (``conveyor.mapping.readers.file_encoding``). A JSON line holding bytes that are
    not text in that encoding, or nested too deeply to read, gives its error (listed with its
    line) and the other lines are read; a whole document gives one error for itself."""
    encoding = file_encoding(path)
    text = path.read_bytes().decode(encoding, errors="surrogateescape").lstrip("\ufeff")
    source = str(path)
    head = text.lstrip()
    deep = False
    if head.startswith(("{", "[")):
        escaped = ESCAPED.search(text)
        try:
            record = _loads(text)
        except RecursionError:
            deep = True
        except ValueError as exc:
            if head.startswith("["):
                yield getattr(exc, "lineno", 1), exc
                return
        else:
            if escaped:
                yield (
                    _line_of(text, escaped.start()),
                    undecodable_error(source, _line_of(text, escaped.start()), encoding),
                )
            elif head.startswith("["):
                if not isinstance(record, list):  # pragma: no cover - "[" opens a list
                    record = [record]
                yield from ((index + 1, item) for index, item in enumerate(record))
            else:
                yield _line_of(text, len(text) - len(head)), record
            return
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if ESCAPED.search(line):
            yield lineno, undecodable_error(source, lineno, encoding)
            continue
        try:
            yield lineno, _loads(line)
        except RecursionError:
            yield lineno, ValueError(f"JSON nested too deeply to read (line {lineno})")
            if deep:
                return  # one document, too deep: one error, not one per line
        except ValueError as exc:
            if deep:
                yield lineno, ValueError(f"JSON nested too deeply to read (line {lineno})")
                return
            yield lineno, exc
        deep = False


def _loads(text: str) -> Any:
    from conveyor.messages import loads

    return loads(text)


def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def is_canonical_json(path: Path) -> bool:
    """True when the first JSON record is a ``stock_snapshot`` message."""
    with path.open("rb") as fh:
        head = fh.read(1 << 16).decode(file_encoding(path), errors="replace")
    head = head.lstrip("\ufeff").lstrip()
    if head.startswith("["):
        head = head[1:].lstrip()
    first_line = head.split("\n", 1)[0]
    try:
        record = _loads(first_line)
    except (ValueError, RecursionError):
        match = re.search(r'"type"\s*:\s*"([a-z_]+)"', head)
        return bool(match and match.group(1) == "stock_snapshot")
    return isinstance(record, dict) and record.get("type") == "stock_snapshot"
