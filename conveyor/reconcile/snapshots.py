"""Stock snapshots: one system's on-hand stock, read as canonical rows in column chunks.

Sources:

- a **file** given on the command line: a canonical ``stock_snapshot`` message (JSON or JSON lines,
  no mapping needed), a canonical CSV (header ``material,location,lot,quantity,uom[,description]``:
  the tabular form of the same rows), or a file in the system's own format (CSV, JSON, XML) read
  through the system's mapping;
- a **connector**'s ``snapshot()`` (raw rows of the system, through its mapping);
- the **hub**'s own stock positions (optionally rolled back to an earlier ``as_of``).

Every row that cannot be read, validated, mapped or converted to the base unit is kept in
``Snapshot.unmapped`` with where it came from and why; nothing is left out silently. Every snapshot
has a content hash (sha256 of the file's bytes, or of the JSON lines of the rows a connector or the
hub gave), and ``SnapshotStore`` keeps a compressed copy under that hash.

Rows travel in ``Chunk``s as the source holds them (the CSV reader's lists, tuples otherwise);
validation works on whole chunks at C speed (joined keys and quantities checked by one regular
expression each), and only a chunk that fails is checked row by row to say exactly what is wrong.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from itertools import islice, repeat
from operator import itemgetter
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NamedTuple

from conveyor.errors import MappingError, Problem, RecordError, ValidationError
from conveyor.quantity import QuantityError, format_quantity, parse_quantity

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from conveyor.connector import Connector
    from conveyor.reconcile.reference import Reference

SEP = "\x1f"
"""Joins material, location and lot into one key string (refused inside the values themselves)."""
CHUNK_ROWS = 50_000
LIMITS = {"material": 100, "location": 100, "lot": 100, "uom": 20}
CANONICAL_CSV_REQUIRED = ("material", "location", "quantity", "uom")
_BAD_QUANTITY = re.compile(r"^(?!-?[0-9]{1,26}(?:\.[0-9]{1,12})?$)", re.M)
_LONG_VALUE = re.compile(r"(?:^|\x1f)[^\x1f\n]{101}", re.M)

Progress = Callable[[int], None]
"""Called with how much was read since the last call (bytes for files, rows otherwise)."""


@dataclass
class Unmapped:
    """A snapshot row that could not take part in the comparison, and exactly why."""

    system: str
    source: str
    line: int | None
    stage: str
    """``parse`` · ``validate`` · ``map`` · ``uom``"""
    reason: str
    problems: list[dict[str, Any]]
    record: str

    def as_dict(self) -> dict[str, Any]:
        """JSON form for reports and the stored run."""
        return {
            "system": self.system,
            "source": self.source,
            "line": self.line,
            "stage": self.stage,
            "reason": self.reason,
            "problems": self.problems,
            "record": self.record,
        }


class Fields(NamedTuple):
    """Where each canonical field sits in a chunk's rows (None: absent, i.e. no lot / no text)."""

    material: int
    location: int
    lot: int | None
    quantity: int
    uom: int
    description: int | None


CANONICAL_FIELDS = Fields(0, 1, 2, 3, 4, 5)
"""Rows as ``(material, location, lot, quantity, uom, description)``."""
HUB_FIELDS = Fields(0, 1, 2, 3, 4, None)
"""Rows as ``(material, location, lot, quantity, uom)``."""


class Chunk:
    """Canonical rows of one snapshot, as the source holds them (CSV rows as lists, others as
    tuples) with ``fields`` saying where each field sits. Quantities are canonical text or
    ``Decimal`` in the base unit. Columns are taken out at C speed when asked for."""

    __slots__ = ("_keys", "_pairs", "_quantities", "fields", "first_line", "lines", "rows")

    def __init__(
        self,
        rows: list[Any],
        fields: Fields = CANONICAL_FIELDS,
        *,
        lines: list[int | None] | None = None,
        first_line: int | None = None,
    ) -> None:
        self.rows = rows
        self.fields = fields
        self.lines = lines
        self.first_line = first_line
        self._keys: list[str] | None = None
        self._pairs: set[tuple[str, str]] | None = None
        self._quantities: list[Any] | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def line(self, index: int) -> int | None:
        """The source line (or record number) of row ``index``."""
        if self.lines is not None:
            return self.lines[index]
        return None if self.first_line is None else self.first_line + index

    def column(self, name: str) -> list[Any]:
        """One field of every row (``""`` for an absent lot or description)."""
        index = getattr(self.fields, name)
        if index is None:
            return [""] * len(self.rows)
        return list(map(itemgetter(index), self.rows))

    def value(self, index: int, name: str) -> Any:
        """One field of one row."""
        position = getattr(self.fields, name)
        return "" if position is None else self.rows[index][position]

    def quantities(self) -> list[Any]:
        """The quantity of every row."""
        if self._quantities is None:
            self._quantities = list(map(itemgetter(self.fields.quantity), self.rows))
        return self._quantities

    def keys(self, lot_level: bool = True) -> list[str]:
        """``material␟location␟lot`` of every row (lot left empty when not ``lot_level``)."""
        f = self.fields
        if lot_level and self._keys is not None:
            return self._keys
        if lot_level and f.lot is not None:
            keys = list(map(SEP.join, map(itemgetter(f.material, f.location, f.lot), self.rows)))
        else:
            n = len(self.rows)
            keys = list(
                map(
                    SEP.join,
                    zip(
                        map(itemgetter(f.material), self.rows),
                        map(itemgetter(f.location), self.rows),
                        repeat("", n),
                        strict=True,
                    ),
                )
            )
        if lot_level:
            self._keys = keys
        return keys

    def pairs(self) -> set[tuple[str, str]]:
        """The distinct (material, uom) of the chunk."""
        if self._pairs is None:
            self._pairs = set(map(itemgetter(self.fields.material, self.fields.uom), self.rows))
        return self._pairs

    def has_lots(self) -> bool:
        """True when some row has a lot."""
        return self.fields.lot is not None and any(map(itemgetter(self.fields.lot), self.rows))

    def descriptions(self) -> dict[str, str]:
        """The first non-empty description of each material in the chunk."""
        f = self.fields
        if f.description is None:
            return {}
        described = filter(itemgetter(f.description), reversed(self.rows))
        return dict(map(itemgetter(f.material, f.description), described))

    def select(self, keep: Sequence[int]) -> Chunk:
        """Only the rows at ``keep``."""
        return Chunk(
            [self.rows[i] for i in keep],
            self.fields,
            lines=[self.line(i) for i in keep],
        )

    def replace(self, index: int, quantity: Decimal, uom: str) -> None:
        """Set row ``index``'s quantity and unit (after a unit conversion)."""
        row = list(self.rows[index])
        row[self.fields.quantity] = quantity
        row[self.fields.uom] = uom
        self.rows[index] = row
        self._pairs = self._quantities = None

    def record(self, index: int) -> str:
        """Row ``index`` as JSON text (for the unmapped list)."""
        row = {
            "material": self.value(index, "material"),
            "location": self.value(index, "location"),
            "lot": self.value(index, "lot"),
            "quantity": _text(self.value(index, "quantity")),
            "uom": self.value(index, "uom"),
        }
        return json.dumps(row, ensure_ascii=False, default=str)


def _text(value: Any) -> str:
    return format_quantity(value) if isinstance(value, Decimal) else str(value)


class Snapshot:
    """One system's snapshot. Iterate ``chunks()`` once; afterwards ``sha256``, ``rows`` and
    ``unmapped`` are known."""

    kind = "file"

    def __init__(
        self,
        system: str,
        source: str,
        *,
        canonical: bool,
        tracks_lots: bool | None = None,
        as_of: datetime | None = None,
        size: int | None = None,
    ) -> None:
        self.system = system
        self.source = source
        self.canonical = canonical
        self.tracks_lots = tracks_lots
        """Declared by config; None = inferred (a snapshot without any lot is lot-less)."""
        self.as_of = as_of
        self.size = size
        self.sha256: str | None = None
        self.rows = 0
        self.unmapped: list[Unmapped] = []
        self.lots_seen = False
        self.mapping_version: str | None = None
        self.stored_path: str | None = None

    def chunks(
        self, progress: Progress | None = None, store: SnapshotStore | None = None
    ) -> Iterator[Chunk]:
        """The snapshot's valid canonical rows, in chunks (unmapped rows go to ``unmapped``)."""
        raise NotImplementedError

    @property
    def lot_level(self) -> bool:
        """True when this system is compared per lot."""
        return self.tracks_lots if self.tracks_lots is not None else self.lots_seen

    def info(self) -> dict[str, Any]:
        """The run's record of this input."""
        return {
            "system": self.system,
            "source": self.source,
            "kind": self.kind,
            "sha256": self.sha256,
            "rows": self.rows,
            "unmapped": len(self.unmapped),
            "as_of": self.as_of.isoformat() if self.as_of else None,
            "canonical": self.canonical,
            "lot_level": self.lot_level,
            "mapping_version": self.mapping_version,
            "stored_path": self.stored_path,
        }

    # --------------------------------------------------------------- shared helpers
    def _reject(self, line: int | None, stage: str, error: Exception | str, record: Any) -> None:
        problems: list[dict[str, Any]] = []
        if isinstance(error, RecordError):
            problems = [p.as_dict() for p in error.problems]
        reason = str(error)
        text = record if isinstance(record, str) else _record_text(record)
        self.unmapped.append(
            Unmapped(self.system, self.source, line, stage, reason, problems, text)
        )

    def _valid(self, chunk: Chunk, reference: Reference | None, *, text: bool) -> Chunk:
        """Validate a chunk of canonical rows (whole columns at once; row by row only when a
        column check fails), then convert quantities outside the base unit."""
        if not _bulk_valid(chunk, text=text):
            chunk = self._valid_rows(chunk)
        if not self.lots_seen and chunk.has_lots():
            self.lots_seen = True
        if reference is not None:
            chunk = self._to_base_units(chunk, reference)
        return chunk

    def _valid_rows(self, chunk: Chunk) -> Chunk:
        keep: list[int] = []
        for index in range(len(chunk)):
            problems, quantity = row_problems(
                chunk.value(index, "material"),
                chunk.value(index, "location"),
                chunk.value(index, "lot"),
                chunk.value(index, "quantity"),
                chunk.value(index, "uom"),
            )
            if problems or quantity is None:
                line = chunk.line(index)
                for problem in problems:
                    problem.line = line
                self._reject(line, "validate", ValidationError(problems), chunk.record(index))
            else:
                chunk.replace(index, quantity, chunk.value(index, "uom"))
                keep.append(index)
        return chunk.select(keep)

    def _to_base_units(self, chunk: Chunk, reference: Reference) -> Chunk:
        """Convert rows whose unit is not the material's base unit (master data decides)."""
        targets: dict[tuple[str, str], str] = {}
        for material, uom in chunk.pairs():
            info = reference.material(material)
            if info is not None and info.base_uom and info.base_uom != uom:
                targets[(material, uom)] = info.base_uom
        if not targets:
            return chunk
        keep: list[int] = []
        f = chunk.fields
        pairs = list(map(itemgetter(f.material, f.uom), chunk.rows))
        for index, pair in enumerate(pairs):
            base = targets.get(pair)
            if base is None:
                keep.append(index)
                continue
            try:
                quantity = parse_quantity(chunk.value(index, "quantity"))
                chunk.replace(index, reference.convert(pair[0], quantity, pair[1], base), base)
                keep.append(index)
            except (MappingError, QuantityError) as exc:
                self._reject(chunk.line(index), "uom", exc, chunk.record(index))
        return chunk if len(keep) == len(chunk) else chunk.select(keep)


def row_problems(
    material: Any, location: Any, lot: Any, quantity: Any, uom: Any
) -> tuple[list[Problem], Decimal | None]:
    """Why one canonical row is invalid (empty list when it is fine) and its quantity."""
    problems: list[Problem] = []
    for name, value, required in (
        ("material", material, True),
        ("location", location, True),
        ("lot", lot, False),
        ("uom", uom, True),
    ):
        limit = LIMITS[name]
        if not isinstance(value, str):
            problems.append(Problem(name, value, "type", f"{name} must be text"))
        elif required and not value:
            problems.append(Problem(name, value, "required", f"{name} is empty"))
        elif len(value) > limit:
            problems.append(Problem(name, value, "maxLength", f"longer than {limit} characters"))
        elif SEP in value:
            problems.append(Problem(name, value, "characters", "contains a control character"))
    parsed: Decimal | None = None
    try:
        parsed = parse_quantity(quantity)
        exponent = parsed.as_tuple().exponent
        if isinstance(exponent, int) and exponent < -12:
            problems.append(Problem("quantity", quantity, "decimal", "more than 12 decimal places"))
    except QuantityError as exc:
        problems.append(Problem("quantity", quantity, "decimal", str(exc)))
    return problems, parsed


def _bulk_valid(chunk: Chunk, *, text: bool) -> bool:
    """Whole-chunk checks at C speed over the joined keys and quantities; False sends the chunk
    through ``row_problems`` row by row (which says exactly what is wrong)."""
    n = len(chunk)
    if n == 0:
        return True
    try:
        joined = "\n".join(chunk.keys(True))
    except TypeError:
        return False  # a value that is not text
    if joined.count(SEP) != 2 * n or joined.count("\n") != n - 1:
        return False  # a separator or a line break inside a value
    if joined.startswith(SEP) or "\n" + SEP in joined or SEP + SEP in joined:
        return False  # an empty material or location
    if max(map(len, chunk.keys(True))) > LIMITS["material"] and _LONG_VALUE.search(joined):
        return False  # a value longer than 100 characters (three values fit in a short key)
    for _, uom in chunk.pairs():
        if not isinstance(uom, str) or not uom or len(uom) > LIMITS["uom"]:
            return False
    if not text:
        return True
    try:
        numbers = "\n".join(chunk.quantities())
    except TypeError:
        return False
    return numbers.count("\n") == n - 1 and _BAD_QUANTITY.search(numbers) is None


def _record_text(record: Any) -> str:
    try:
        return json.dumps(record, ensure_ascii=False, default=str, sort_keys=True)
    except (TypeError, ValueError):
        return repr(record)


# ------------------------------------------------------------------------------------ files
class _HashingReader(io.RawIOBase):
    """Reads a binary file, hashing and counting the bytes on the way (one pass for both)."""

    def __init__(self, raw: IO[bytes], progress: Progress | None) -> None:
        self.raw = raw
        self.sha = hashlib.sha256()
        self.progress = progress

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self.raw.readinto(buffer)  # type: ignore[attr-defined]
        if n:
            view = memoryview(buffer)[:n]
            self.sha.update(view)
            if self.progress is not None:
                self.progress(n)
        return int(n or 0)


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes."""
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


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
        with self.path.open("rb") as raw:
            hashing = _HashingReader(raw, progress)
            text = io.TextIOWrapper(
                io.BufferedReader(hashing, 1 << 20), encoding="utf-8-sig", newline=""
            )
            reader = csv.reader(text)
            header = [h.strip().lower() for h in next(reader, [])]
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
                if min(map(len, rows)) < width:
                    rows, lines = self._drop_short(rows, first, width)
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
        """Record a read of the whole file by another reader (the columnar one) instead of
        ``chunks``: every row valid, none unmapped."""
        self.sha256 = sha256
        self.rows = rows
        self.lots_seen = lots_seen
        if progress is not None and self.size:
            progress(self.size)
        if store is not None:
            self.stored_path = str(store.put_file(self.path, sha256))

    def _drop_short(
        self, rows: list[list[str]], first: int, width: int
    ) -> tuple[list[list[str]], list[int | None]]:
        kept: list[list[str]] = []
        lines: list[int | None] = []
        for offset, row in enumerate(rows):
            if len(row) >= width:
                kept.append(row)
                lines.append(first + offset)
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


def _is_canonical_csv(path: Path) -> bool:
    with path.open(encoding="utf-8-sig", errors="replace", newline="") as fh:
        header = next(csv.reader(fh), [])
    return canonical_positions([h.strip().lower() for h in header]) is not None


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
        as_of = _parse_time(message["payload"]["as_of"])
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


def _parse_time(text: str) -> datetime:
    from conveyor.messages import _parse_timestamp

    return _parse_timestamp(text)


def _is_canonical_json(path: Path) -> bool:
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
        for line, raw in self.records():
            self.rows += 1
            if progress is not None:
                progress(1)
            if self.path is None:  # a connector's rows: hash and keep what it gave
                encoded = (_record_text(raw) + "\n").encode()
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
                        self.as_of = _parse_time(moment)
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

    def _emit(
        self, batch: list[tuple[str, str, str, Decimal, str, str]], lines: list[int | None]
    ) -> Iterator[Chunk]:
        chunk = self._valid(Chunk(batch, lines=lines), None, text=False)
        if len(chunk):
            yield chunk


# ------------------------------------------------------------------ system formats (raw)
def xml_records(path: Path) -> Iterator[tuple[int | None, Any]]:
    """Records of an XML file: one per B2MML ``MaterialLot`` element, else one per child of the
    root element; each a dict of local names (attributes as ``@name``, repeated children as
    lists). No entity is resolved and nothing is fetched from the network."""
    from lxml import etree

    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
    try:
        root = etree.parse(str(path), parser).getroot()
    except etree.XMLSyntaxError as exc:
        line = exc.lineno if isinstance(exc.lineno, int) else None
        yield line, ValueError(f"not well-formed XML: {exc}")
        return
    lots = [el for el in root.iter() if isinstance(el.tag, str) and _local(el.tag) == "MaterialLot"]
    elements = lots or [el for el in root if isinstance(el.tag, str)]
    for element in elements:
        number: Any = element.sourceline
        yield (number if isinstance(number, int) else None), _element_dict(element)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _element_dict(element: Any) -> Any:
    children = [c for c in element if isinstance(c.tag, str)]
    if not children and not element.attrib:
        return (element.text or "").strip()
    out: dict[str, Any] = {f"@{_local(k)}": v for k, v in element.attrib.items()}
    for child in children:
        name = _local(child.tag)
        value = _element_dict(child)
        if name in out:
            if not isinstance(out[name], list):
                out[name] = [out[name]]
            out[name].append(value)
        else:
            out[name] = value
    text = (element.text or "").strip()
    if text:
        out["#text"] = text
    return out


# ----------------------------------------------------------------------- connectors, hub
def connector_snapshot(
    system: str,
    connector: Connector,
    *,
    reference: Reference,
    tracks_lots: bool | None = None,
    as_of: datetime | None = None,
) -> Snapshot:
    """The snapshot a connector gives (raw rows of its system, through its mapping)."""

    def records() -> Iterator[tuple[int | None, Any]]:
        try:
            for record in connector.snapshot():
                yield record.line, record.data
        finally:
            connector.close()

    if not reference.has_mapping(system):
        return CanonicalRowsSnapshot(
            system,
            f"connector:{connector.kind}",
            records,
            reference=reference,
            tracks_lots=tracks_lots,
            as_of=as_of,
        )
    return MappedSnapshot(
        system,
        f"connector:{connector.kind}",
        records,
        reference=reference,
        tracks_lots=tracks_lots,
        as_of=as_of,
        kind="connector",
    )


class CanonicalRowsSnapshot(Snapshot):
    """Rows that are already canonical dicts (a connector of a system without a mapping)."""

    kind = "connector"

    def __init__(
        self,
        system: str,
        source: str,
        records: Callable[[], Iterator[tuple[int | None, Any]]],
        *,
        reference: Reference | None,
        tracks_lots: bool | None = None,
        as_of: datetime | None = None,
    ) -> None:
        super().__init__(system, source, canonical=True, tracks_lots=tracks_lots, as_of=as_of)
        self.records = records
        self.reference = reference

    def chunks(
        self, progress: Progress | None = None, store: SnapshotStore | None = None
    ) -> Iterator[Chunk]:
        sha = hashlib.sha256()
        capture = store.capture(".jsonl") if store is not None else None
        rows: list[tuple[Any, ...]] = []
        lines: list[int | None] = []
        for line, raw in self.records():
            self.rows += 1
            encoded = (_record_text(raw) + "\n").encode()
            sha.update(encoded)
            if capture is not None:
                capture.write(encoded)
            if progress is not None:
                progress(1)
            if not isinstance(raw, dict) or not all(k in raw for k in CANONICAL_CSV_REQUIRED):
                self._reject(
                    line,
                    "map",
                    MappingError(
                        [
                            Problem(
                                "$",
                                None,
                                "mapping.missing",
                                f"no mapping for system {self.system!r} and the row is not "
                                "canonical (material, location, quantity, uom)",
                                line=line,
                            )
                        ]
                    ),
                    raw,
                )
                continue
            rows.append(
                (
                    raw["material"],
                    raw["location"],
                    raw.get("lot") or "",
                    raw["quantity"],
                    raw["uom"],
                    str(raw.get("description") or ""),
                )
            )
            lines.append(line)
            if len(rows) >= CHUNK_ROWS:
                yield from self._emit(rows, lines)
                rows, lines = [], []
        if rows:
            yield from self._emit(rows, lines)
        self.sha256 = sha.hexdigest()
        if capture is not None:
            self.stored_path = str(capture.finish(self.sha256))

    def _emit(self, rows: list[tuple[Any, ...]], lines: list[int | None]) -> Iterator[Chunk]:
        # values of a connector may be numbers or anything: validate them row by row
        chunk = self._valid_rows(Chunk(rows, lines=lines))
        chunk = self._valid(chunk, self.reference, text=False)
        if len(chunk):
            yield chunk


class HubSnapshot(Snapshot):
    """The hub's own stock positions; with ``as_of`` in the past, movements accepted later are
    taken back out, so the hub is seen as it stood then."""

    kind = "hub"

    def __init__(
        self, engine: Engine, *, as_of: datetime | None = None, system: str = "hub"
    ) -> None:
        super().__init__(system, "hub ledger", canonical=True, tracks_lots=True, as_of=as_of)
        self.engine = engine

    def chunks(
        self, progress: Progress | None = None, store: SnapshotStore | None = None
    ) -> Iterator[Chunk]:
        from sqlalchemy import select

        from conveyor.ledger.models import MessageRow, StockMovementRow, StockPositionRow

        positions = StockPositionRow.__table__
        later: dict[tuple[str, str, str], Decimal] = {}
        if self.as_of is not None:
            movements = StockMovementRow.__table__
            messages = MessageRow.__table__
            query = (
                select(
                    movements.c.material,
                    movements.c.location,
                    movements.c.lot,
                    movements.c.quantity,
                )
                .join(messages, messages.c.id == movements.c.message_pk)
                .where(messages.c.accepted_at > self.as_of)
            )
            with self.engine.connect() as conn:
                for r in conn.execute(query):
                    key = (r.material, r.location, r.lot)
                    later[key] = later.get(key, Decimal(0)) + r.quantity
        sha = hashlib.sha256()
        capture = store.capture(".jsonl") if store is not None else None
        current = select(
            positions.c.material,
            positions.c.location,
            positions.c.lot,
            positions.c.quantity,
            positions.c.uom,
        ).order_by(positions.c.material, positions.c.location, positions.c.lot)
        with self.engine.connect() as conn:
            result = conn.execution_options(yield_per=CHUNK_ROWS).execute(current)
            for part in result.partitions():
                rows: list[tuple[str, str, str, Decimal, str]] = []
                for row in part:
                    material, location, lot, held, uom = row
                    quantity: Decimal = held - later.get((material, location, lot), Decimal(0))
                    if quantity != 0:
                        rows.append((material, location, lot, quantity, uom))
                yield from self._emit(rows, sha, capture, progress)
        self.sha256 = sha.hexdigest()
        if capture is not None:
            self.stored_path = str(capture.finish(self.sha256))

    def _emit(
        self,
        rows: list[tuple[str, str, str, Decimal, str]],
        sha: Any,
        capture: _Capture | None,
        progress: Progress | None,
    ) -> Iterator[Chunk]:
        self.rows += len(rows)
        if progress is not None:
            progress(len(rows))
        if not rows:
            return
        encoded = "".join(
            json.dumps(
                {
                    "material": m,
                    "location": loc,
                    "lot": lot,
                    "quantity": format_quantity(q),
                    "uom": u,
                },
                ensure_ascii=False,
            )
            + "\n"
            for m, loc, lot, q, u in rows
        ).encode()
        sha.update(encoded)
        if capture is not None:
            capture.write(encoded)
        chunk = Chunk(list(rows), HUB_FIELDS)
        if not self.lots_seen and chunk.has_lots():
            self.lots_seen = True
        yield chunk


# ------------------------------------------------------------------------- opening files
def open_snapshot_file(
    system: str,
    path: Path,
    *,
    reference: Reference,
    tracks_lots: bool | None = None,
    as_of: datetime | None = None,
) -> Snapshot:
    """A snapshot from a file: canonical (JSON message or canonical CSV, any system name) or
    the system's own format through its mapping. A snapshot's own time (the message's
    ``as_of``, or the ``as_of`` its mapping reads from the rows) wins over ``as_of``, which
    dates a canonical CSV; snapshots left without a time get the run's."""
    if not path.is_file():
        raise FileNotFoundError(f"snapshot file not found: {path}")
    suffix = path.suffix.lower()
    if suffix in (".json", ".jsonl", ".ndjson") and _is_canonical_json(path):
        return CanonicalJsonSnapshot(system, path, reference=reference, tracks_lots=tracks_lots)
    if suffix in (".csv", ".tsv", ".txt") and _is_canonical_csv(path):
        return CanonicalCsvSnapshot(
            system, path, reference=reference, tracks_lots=tracks_lots, as_of=as_of
        )
    return MappedSnapshot(
        system,
        str(path),
        lambda: reference.read_file(system, path),
        reference=reference,
        tracks_lots=tracks_lots,
        size=path.stat().st_size,
        path=path,
    )


# ------------------------------------------------------------------------------ the store
class SnapshotStore:
    """Content-addressed copies of snapshots: ``<root>/<sha256>.<ext>.gz``, each kept once."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path_for(self, sha256: str, suffix: str) -> Path:
        """Where the snapshot with this hash is kept."""
        return self.root / sha256[:2] / f"{sha256}{suffix}.gz"

    def put_file(self, path: Path, sha256: str) -> Path:
        """Keep a compressed copy of ``path`` (unless one with this hash is already kept)."""
        target = self.path_for(sha256, path.suffix.lower() or ".dat")
        if target.exists():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".tmp")
        with (
            os.fdopen(fd, "wb") as out,
            path.open("rb") as src,
            gzip.GzipFile(fileobj=out, mode="wb", compresslevel=1, mtime=0) as gz,
        ):
            shutil.copyfileobj(src, gz, 1 << 20)
        os.replace(tmp, target)
        return target

    def capture(self, suffix: str) -> _Capture:
        """A writer for a streamed snapshot; ``finish(sha256)`` files it under its hash."""
        self.root.mkdir(parents=True, exist_ok=True)
        return _Capture(self, suffix)


class _Capture:
    def __init__(self, store: SnapshotStore, suffix: str) -> None:
        self.store = store
        self.suffix = suffix
        fd, self.tmp = tempfile.mkstemp(dir=store.root, suffix=".tmp")
        self._file = os.fdopen(fd, "wb")
        self._gz = gzip.GzipFile(fileobj=self._file, mode="wb", compresslevel=1, mtime=0)

    def write(self, data: bytes) -> None:
        self._gz.write(data)

    def finish(self, sha256: str) -> Path:
        self._gz.close()
        self._file.close()
        target = self.store.path_for(sha256, self.suffix)
        if target.exists():
            os.unlink(self.tmp)
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.tmp, target)
        return target
