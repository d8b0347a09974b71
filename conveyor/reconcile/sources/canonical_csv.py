"""Source: a canonical CSV file (``material,location,lot,quantity,uom[,description]``), read
with the csv module in chunks of rows (the engine in ``compare`` reads the UTF-8 files it can by
whole columns; this reader takes every other one and says exactly what is wrong with which row).

Encoding: detected as ingest detects it (``conveyor.mapping.readers.file_encoding``: a BOM decides,
UTF-8 when the text decodes as UTF-8, else GB18030 for a Chinese export). Bytes that are not text
in that encoding make their row unmapped (``parse``, with the line), never the whole run fail."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Sequence
from datetime import datetime
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING

from conveyor.errors import Problem, ValidationError
from conveyor.mapping.readers import file_encoding
from conveyor.reconcile.sources.base import (
    CANONICAL_CSV_REQUIRED,
    CHUNK_ROWS,
    ESCAPED,
    Chunk,
    Fields,
    Progress,
    Snapshot,
    shown,
    undecodable_error,
)
from conveyor.reconcile.sources.store import HashingReader, SnapshotStore

if TYPE_CHECKING:
    from conveyor.reconcile.reference import Reference


class CanonicalCsvSnapshot(Snapshot):
    """A CSV of canonical rows (``material,location,lot,quantity,uom[,description]``), UTF-8."""

    def __init__(
        self,
        system: str,
        path: Path,
        *,
        reference: Reference | None = None,
        tracks_lots: bool | None = None,
        as_of: datetime | None = None,
    ) -> None:
        super().__init__(
            system,
            str(path),
            canonical=True,
            tracks_lots=tracks_lots,
            as_of=as_of,
            size=path.stat().st_size,
        )
        self.path = path
        self.reference = reference

    def chunks(
        self, progress: Progress | None = None, store: SnapshotStore | None = None
    ) -> Iterator[Chunk]:
        encoding = self.encoding = file_encoding(self.path)
        with self.path.open("rb") as raw:
            hashing = HashingReader(raw, progress)
            # undecodable bytes become lone surrogates: their rows are listed, the rest is read
            text = io.TextIOWrapper(
                io.BufferedReader(hashing, 1 << 20),
                encoding=encoding,
                errors="surrogateescape",
                newline="",
            )
            reader = csv.reader(text)
            header = [h.strip().lstrip("\ufeff").lower() for h in next(reader, [])]
            positions = canonical_positions(header)
            if positions is None:
                raise ValidationError(
                    [
                        Problem(
                            "header",
                            ",".join(header),
                            "canonical_csv",
                            "a canonical CSV needs the columns "
                            + ", ".join(CANONICAL_CSV_REQUIRED),
                            file=self.source,
                            line=1,
                        )
                    ]
                )
            fields = Fields(
                material=positions["material"] or 0,
                location=positions["location"] or 0,
                lot=positions["lot"],
                quantity=positions["quantity"] or 0,
                uom=positions["uom"] or 0,
                description=positions["description"],
            )
            width = max(i for i in positions.values() if i is not None) + 1
            line = 1
            while True:
                rows = list(islice(reader, CHUNK_ROWS))
                if not rows:
                    break
                first = line + 1
                line += len(rows)
                if min(map(len, rows)) < width or ESCAPED.search("".join(map("".join, rows))):
                    rows, lines = self._drop_bad(rows, first, width)
                    chunk = Chunk(rows, fields, lines=lines)
                else:
                    chunk = Chunk(rows, fields, first_line=first)
                self.rows += len(rows)
                if not rows:
                    continue
                chunk = self._valid(chunk, self.reference, text=True)
                if len(chunk):
                    yield chunk
            # read to the end so the hash covers the whole file
            while hashing.readinto(bytearray(1 << 20)):
                pass
        self.sha256 = hashing.sha.hexdigest()
        if store is not None:
            self.stored_path = str(store.put_file(self.path, self.sha256))

    def mark_read(
        self,
        *,
        sha256: str,
        rows: int,
        lots_seen: bool,
        progress: Progress | None = None,
        store: SnapshotStore | None = None,
    ) -> None:
        """Record a read of the whole file by another reader (the engine's, by whole columns)
        instead of ``chunks``: every row valid, none unmapped."""
        self.sha256 = sha256
        self.rows = rows
        self.lots_seen = lots_seen
        if progress is not None and self.size:
            progress(self.size)
        if store is not None:
            self.stored_path = str(store.put_file(self.path, sha256))

    def _drop_bad(
        self, rows: list[list[str]], first: int, width: int
    ) -> tuple[list[list[str]], list[int | None]]:
        kept: list[list[str]] = []
        lines: list[int | None] = []
        for offset, row in enumerate(rows):
            undecodable = ESCAPED.search("".join(row))
            if len(row) >= width and not undecodable:
                kept.append(row)
                lines.append(first + offset)
            elif undecodable:
                self.rows += 1
                self._reject(
                    first + offset,
                    "parse",
                    undecodable_error(self.source, first + offset, self.encoding or "utf-8"),
                    json.dumps(shown(row, self.encoding or "utf-8"), ensure_ascii=False),
                )
            elif any(cell.strip() for cell in row):
                self.rows += 1
                self._reject(
                    first + offset,
                    "parse",
                    ValidationError(
                        [
                            Problem(
                                "$",
                                len(row),
                                "columns",
                                f"{len(row)} columns, the header has at least {width}",
                                file=self.source,
                                line=first + offset,
                            )
                        ]
                    ),
                    json.dumps(row, ensure_ascii=False),
                )
        return kept, lines


def canonical_positions(header: Sequence[str]) -> dict[str, int | None] | None:
    """Where each canonical column sits in a (stripped, lower-case) header; None when a required
    one is missing."""
    if not all(name in header for name in CANONICAL_CSV_REQUIRED):
        return None
    return {
        name: (header.index(name) if name in header else None)
        for name in ("material", "location", "lot", "quantity", "uom", "description")
    }


def is_canonical_csv(path: Path) -> bool:
    """True when the file's header names the canonical columns (in the file's own encoding)."""
    with path.open(encoding=file_encoding(path), errors="replace", newline="") as fh:
        header = next(csv.reader(fh), [])
    return canonical_positions([h.strip().lstrip("\ufeff").lower() for h in header]) is not None
