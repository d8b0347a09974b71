"""Source: raw rows of a system (its own file format, or its connector) through the system's
``stock_snapshot`` mapping."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor.errors import MappingError, Problem, ValidationError
from conveyor.reconcile.sources.base import (
    CHUNK_ROWS,
    Chunk,
    Progress,
    Snapshot,
    parse_time,
    record_text,
)
from conveyor.reconcile.sources.store import SnapshotStore, file_sha256

if TYPE_CHECKING:
    from conveyor.reconcile.reference import Reference


class MappedSnapshot(Snapshot):
    """Raw rows of a system (its own file format, or its connector) through its mapping."""

    def __init__(
        self,
        system: str,
        source: str,
        records: Callable[[], Iterator[tuple[int | None, Any]]],
        *,
        reference: Reference,
        tracks_lots: bool | None = None,
        as_of: datetime | None = None,
        size: int | None = None,
        path: Path | None = None,
        kind: str = "file",
    ) -> None:
        super().__init__(
            system, source, canonical=False, tracks_lots=tracks_lots, as_of=as_of, size=size
        )
        self.kind = kind
        self.records = records
        self.reference = reference
        self.path = path
        self.mapping_version = reference.version(system)

    def chunks(
        self, progress: Progress | None = None, store: SnapshotStore | None = None
    ) -> Iterator[Chunk]:
        sha = hashlib.sha256()
        capture = store.capture(".jsonl") if store is not None and self.path is None else None
        mapper = self.reference.map_snapshot_row
        file = self.source if self.path is not None else None
        batch: list[tuple[str, str, str, Decimal, str, str]] = []
        lines: list[int | None] = []
        dated = self.as_of is not None
        for line, raw in self._read():
            self.rows += 1
            if progress is not None:
                progress(1)
            if self.path is None:  # a connector's rows: hash and keep what it gave
                encoded = (record_text(raw) + "\n").encode()
                sha.update(encoded)
                if capture is not None:
                    capture.write(encoded)
            if isinstance(raw, Exception):
                self._reject(line, "parse", raw, "")
                continue
            try:
                mapped = mapper(self.system, raw, file=file, line=line)
                if not dated:
                    moment = self.reference.snapshot_as_of(self.system, raw)
                    if moment:
                        self.as_of = parse_time(moment)
                    dated = True
            except MappingError as exc:
                self._reject(line, "map", exc, raw)
                continue
            batch.append(
                (
                    mapped.material,
                    mapped.location,
                    mapped.lot or "",
                    mapped.quantity,
                    mapped.uom,
                    str(getattr(mapped, "description", "") or ""),
                )
            )
            lines.append(line)
            if len(batch) >= CHUNK_ROWS:
                yield from self._emit(batch, lines)
                batch, lines = [], []
        if batch:
            yield from self._emit(batch, lines)
        if self.path is not None:
            self.sha256 = file_sha256(self.path)
            if store is not None:
                self.stored_path = str(store.put_file(self.path, self.sha256))
        else:
            self.sha256 = sha.hexdigest()
            if capture is not None:
                self.stored_path = str(capture.finish(self.sha256))

    def _read(self) -> Iterator[tuple[int | None, Any]]:
        """The source's records; a reader that stops on bytes that are not text in the file's
        encoding, or on data nested too deeply to read, ends the run with an error naming the
        file and the last line read (instead of a bare decoding error or a traceback)."""
        line: int | None = None
        try:
            for line, raw in self.records():
                yield line, raw
        except (UnicodeDecodeError, RecursionError) as exc:
            after = f"after line {line}" if line is not None else "at its start"
            what = (
                f"bytes that are not {exc.encoding} text"
                if isinstance(exc, UnicodeDecodeError)
                else "data nested too deeply to read"
            )
            raise ValidationError(
                [
                    Problem(
                        "$",
                        None,
                        "encoding" if isinstance(exc, UnicodeDecodeError) else "nesting",
                        f"{what} {after}",
                        file=self.source,
                        line=None if line is None else line + 1,
                    )
                ]
            ) from None

    def _emit(
        self, batch: list[tuple[str, str, str, Decimal, str, str]], lines: list[int | None]
    ) -> Iterator[Chunk]:
        chunk = self._valid(Chunk(batch, lines=lines), None, text=False)
        if len(chunk):
            yield chunk
