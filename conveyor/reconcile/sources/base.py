"""The shared base of every snapshot source: canonical rows travel in ``Chunk``s, a source is a
``Snapshot`` (``chunks()`` once, then ``sha256``, ``rows`` and ``unmapped`` are known), and the
checks every source applies to canonical rows (whole chunks at C speed, row by row only when a
chunk fails, to say exactly what is wrong).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from itertools import repeat
from operator import itemgetter
from typing import TYPE_CHECKING, Any, NamedTuple

from conveyor.errors import MappingError, Problem, RecordError, ValidationError
from conveyor.quantity import QuantityError, format_quantity, parse_quantity

if TYPE_CHECKING:
    from conveyor.reconcile.reference import Reference
    from conveyor.reconcile.sources.store import SnapshotStore

SEP = "\x1f"
"""Joins material, location and lot into one key string (refused inside the values themselves)."""
CHUNK_ROWS = 50_000
LIMITS = {"material": 100, "location": 100, "lot": 100, "uom": 20}
CANONICAL_CSV_REQUIRED = ("material", "location", "quantity", "uom")
_BAD_QUANTITY = re.compile(r"^(?!-?[0-9]{1,26}(?:\.[0-9]{1,12})?$)", re.M)
_LONG_VALUE = re.compile(r"(?:^|\x1f)[^\x1f\n]{101}", re.M)

ESCAPED = re.compile("[\udc80-\udcff]")
"""A byte that was not text in the file's encoding (read with ``errors="surrogateescape"``)."""

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
        self.encoding: str | None = None
        """The text encoding a file was read in (as detected), once read."""

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
        text = record if isinstance(record, str) else record_text(record)
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


def record_text(record: Any) -> str:
    """A raw record as JSON text (``repr`` when it is not JSON; cut short when it is nested too
    deeply to write out)."""
    try:
        return json.dumps(record, ensure_ascii=False, default=str, sort_keys=True)
    except (TypeError, ValueError):
        return repr(record)
    except RecursionError:
        return "(nested too deeply to show)"


def undecodable_error(source: str, line: int | None, encoding: str) -> ValidationError:
    """The error of a row (or line) holding bytes that are not text in ``encoding``."""
    return ValidationError(
        [
            Problem(
                "$",
                None,
                "encoding",
                f"bytes that are not {encoding} text (the file's encoding, as detected)",
                file=source,
                line=line,
            )
        ]
    )


def shown(cells: Sequence[str], encoding: str) -> list[str]:
    """Cells read with ``surrogateescape`` as text: each undecodable byte shown as ``\\xNN``."""
    return [
        cell.encode(encoding, "surrogateescape").decode(encoding, "backslashreplace")
        if ESCAPED.search(cell)
        else cell
        for cell in cells
    ]


def parse_time(text: str) -> datetime:
    """An ISO 8601 time as the canonical messages read it."""
    from conveyor.messages import _parse_timestamp

    return _parse_timestamp(text)
