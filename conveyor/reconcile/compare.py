"""The compare engine: every system's snapshot gathered by columns, per material × location ×
lot, and every line classified by the rules of ``lines`` (written once, for every source).

Rows come in two ways, into one engine:

- a canonical CSV file that passes the checks is read whole with Arrow's multithreaded CSV
  reader (``read_canonical_csv``: material, location, lot and uom dictionary-encoded, quantities
  kept as text, every column checked against the rules of the row reader's bulk check,
  ``sources.base._bulk_valid``); a file that breaks any of them (an invalid quantity, an empty
  code, a short row…), needs a unit conversion, or gives a material another unit than the run
  knows, is read by its source's row reader instead, which says exactly what is wrong with which
  row;
- every other source (canonical JSON, a system's own file through its mapping, a connector, the
  hub's ledger, and such CSV files) gives ``Chunk``s of valid canonical rows (``add``).

Classifying (3 × 1,000,000 rows in a few hundred MB, quantities never parsed for exact matches):

- every row gets a line id (the codes of the dictionaries unified over the run, made dense);
- a line where every system has exactly one row and all of them give the same quantity text is
  an exact match, found with numpy and Arrow compute; one where they differ is made a ``Line``
  from its texts, read exactly as ``Decimal``;
- a line where a system has several rows (several bins, stock types…, or lots summed for a
  lot-less system), or a quantity a source gave as a ``Decimal``, is summed per system exactly
  (``Decimal``): equal tokens everywhere make an exact match, anything else a ``Line``.

Exact matches stay columns (``ArrowExact``) until a report asks for them, sorted by key.
"""

from __future__ import annotations

import csv
import hashlib
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from conveyor.quantity import format_quantity
from conveyor.reconcile.lines import (
    Line,
    LineMaker,
    Result,
    Transit,
    same_units,
    to_decimal,
)
from conveyor.reconcile.sources import LIMITS, SEP, Chunk, Unmapped, canonical_positions
from conveyor.reconcile.tolerance import Tolerance

if TYPE_CHECKING:
    from conveyor.reconcile.reference import Reference
    from conveyor.reconcile.sources import CanonicalCsvSnapshot, Progress, SnapshotStore

Codes = npt.NDArray[np.integer[Any]]

KEY_TYPE = pa.dictionary(pa.int32(), pa.string())
"""Codes are dictionary-encoded: a million rows of a few thousand materials cost 4 MB."""
BLOCK_SIZE = 4 << 20
QUANTITY = r"^-?[0-9]{1,26}(?:\.[0-9]{1,12})?$"
"""A canonical quantity, the pattern the row reader's bulk check accepts (``_BAD_QUANTITY``):
``Decimal(text)`` reads it exactly as ``parse_quantity`` does."""
_CANONICAL = re.compile(QUANTITY.strip("^$"))
KEY_LIMIT = 1 << 62
BITMAP_FACTOR = 64
"""Lines get dense ids from a bitmap of the key space while it has at most this many keys a row
(8 bytes a row), by hashing beyond."""
BATCH = 1 << 16
LARGE_TEXT = 1 << 31
"""Quantity text past this many bytes is combined as ``large_string`` (64-bit offsets)."""


_ARROW_TYPES = {
    np.dtype(np.int16): pa.int16(),
    np.dtype(np.int32): pa.int32(),
    np.dtype(np.int64): pa.int64(),
}


def _ints(values: npt.NDArray[Any], mask: npt.NDArray[np.bool_] | None = None) -> pa.Array:
    """A numpy integer array as an Arrow array sharing its memory (null where ``mask``).
    ``pa.array`` is not used here: it looks for pandas first, which imports it — a third of a
    second and tens of MB for nothing."""
    values = np.ascontiguousarray(values)
    validity = None
    nulls = 0
    if mask is not None:
        nulls = int(np.count_nonzero(mask))
        if nulls:
            validity = pa.py_buffer(np.packbits(~mask, bitorder="little"))
    return pa.Array.from_buffers(
        _ARROW_TYPES[values.dtype],
        len(values),
        [validity, pa.py_buffer(values)],
        null_count=nulls,
    )


def _texts(values: Sequence[str | None]) -> pa.Array:
    """Python strings (None: null) as an Arrow string array (not through ``pa.array``: see
    ``_ints``)."""
    encoded = [b"" if v is None else v.encode() for v in values]
    offsets = np.zeros(len(encoded) + 1, np.int64)
    np.cumsum(np.fromiter(map(len, encoded), np.int64, len(encoded)), out=offsets[1:])
    if offsets[-1] >= 1 << 31:
        raise ValueError("more text than one Arrow string array holds")
    mask = np.fromiter((v is None for v in values), np.bool_, len(values))
    nulls = int(np.count_nonzero(mask))
    return pa.Array.from_buffers(
        pa.string(),
        len(values),
        [
            pa.py_buffer(np.packbits(~mask, bitorder="little")) if nulls else None,
            pa.py_buffer(offsets.astype(np.int32)),
            pa.py_buffer(b"".join(encoded)),
        ],
        null_count=nulls,
    )


_SEP = _texts([SEP])[0]
_FALSE = pa.Array.from_buffers(pa.bool_(), 1, [None, pa.py_buffer(np.zeros(1, np.uint8))])[0]


@dataclass
class CsvColumns:
    """A canonical CSV read by whole columns, every value checked."""

    table: pa.Table
    """``material``, ``location``, ``lot`` (dictionary-encoded), ``quantity`` (text)."""
    sha256: str
    lots: bool
    """True when some row has a lot."""
    units: list[tuple[str, str]]
    """The distinct (material, uom) pairs."""
    descriptions: dict[str, str] = field(default_factory=dict)
    """The first non-empty description of each material, in file order."""

    @property
    def rows(self) -> int:
        """How many rows the file holds."""
        return int(self.table.num_rows)


def read_canonical_csv(path: Path, *, reference: Reference | None = None) -> CsvColumns | None:
    """``path`` read by columns, or None when its rows must go through the csv-module reader:
    a value the bulk check would refuse, a row the Arrow reader cannot take as the csv module
    does, a unit that master data converts, text in another encoding than UTF-8 (the row reader
    detects it), or no rows at all."""
    from conveyor.mapping.readers import file_encoding

    if file_encoding(path) not in ("utf-8", "utf-8-sig"):
        return None
    try:
        with path.open(encoding="utf-8-sig", newline="") as fh:
            raw = next(csv.reader(fh), [])
    except (UnicodeDecodeError, csv.Error):
        return None
    positions = canonical_positions([h.strip().lower() for h in raw])
    if positions is None or len(set(raw)) != len(raw):
        return None
    names = {name: raw[i] for name, i in positions.items() if i is not None}
    with ThreadPoolExecutor(1) as hashing:  # hashlib lets go of the GIL: hash while Arrow reads
        digest = hashing.submit(_sha256, path)
        table = _read(path, names)
        sha256 = digest.result()
    if table is None or table.num_rows == 0 or any(c.null_count for c in table.columns):
        return None
    table = table.unify_dictionaries()
    if not _valid(table):
        return None
    materials = _dictionary(table["material"])
    material_codes = _codes(table["material"])
    units = _pairs(material_codes, materials, table["uom"])
    if reference is not None:
        for material, uom in units:
            info = reference.material(material)
            if info is not None and info.base_uom and info.base_uom != uom:
                return None  # rows to convert: the row reader does it, row by row
    descriptions = (
        _first_descriptions(material_codes, materials, table["description"])
        if "description" in names
        else {}
    )
    lots = "lot" in names and bool(pc.max(pc.binary_length(_dictionary(table["lot"]))).as_py())
    kept = table.select([n for n in ("material", "location", "lot", "quantity") if n in names])
    return CsvColumns(kept, sha256, lots, units, descriptions)


def _sha256(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _read(path: Path, names: dict[str, str]) -> pa.Table | None:
    """The columns ``names`` (canonical name → name in the header) of a CSV, or None when the
    Arrow reader refuses the file (rows of another width, text that is not UTF-8…)."""
    try:
        table = pa_csv.read_csv(
            str(path),
            read_options=pa_csv.ReadOptions(block_size=BLOCK_SIZE),
            parse_options=pa_csv.ParseOptions(newlines_in_values=True),
            convert_options=pa_csv.ConvertOptions(
                column_types={
                    raw: pa.string() if name == "quantity" else KEY_TYPE
                    for name, raw in names.items()
                },
                include_columns=list(names.values()),
            ),
        )
    except (pa.ArrowException, OSError):
        return None
    return table.rename_columns(list(names))


def _valid(table: pa.Table) -> bool:
    """The bulk check of the row reader, by whole columns: codes without separators or line
    breaks, at most 100 characters, material and location not empty; a unit of 1 to 20
    characters; every quantity canonical."""
    for name in ("material", "location", "lot"):
        if name not in table.column_names:
            continue
        values = _dictionary(table[name])
        lengths = pc.utf8_length(values)
        if pc.max(lengths).as_py() > LIMITS[name]:
            return False
        if name != "lot" and pc.min(lengths).as_py() == 0:
            return False
        if pc.any(pc.match_substring(values, SEP)).as_py():
            return False
        if pc.any(pc.match_substring(values, "\n")).as_py():
            return False
    lengths = pc.utf8_length(_dictionary(table["uom"]))
    if pc.min(lengths).as_py() == 0 or pc.max(lengths).as_py() > LIMITS["uom"]:
        return False
    with ThreadPoolExecutor(pa.cpu_count()) as pool:  # Arrow lets go of the GIL
        return all(pool.map(_canonical_quantities, table["quantity"].chunks))


def _canonical_quantities(quantities: pa.Array) -> bool:
    """True when every quantity is canonical text."""
    return bool(pc.all(pc.match_substring_regex(quantities, QUANTITY)).as_py())


def _dictionary(column: pa.ChunkedArray) -> pa.Array:
    """The dictionary of a column whose chunks share one (after ``unify_dictionaries``)."""
    if column.num_chunks == 0:
        return _texts([])
    return column.chunk(0).dictionary


def _codes(column: pa.ChunkedArray) -> Codes:
    """The dictionary codes of every row."""
    if column.num_chunks == 0:
        return np.zeros(0, np.int64)
    return np.concatenate([_numpy(chunk.indices) for chunk in column.chunks])


_NUMPY_TYPES = {
    pa.int8(): np.int8,
    pa.int16(): np.int16,
    pa.int32(): np.int32,
    pa.int64(): np.int64,
    pa.uint64(): np.uint64,
}


def _numpy(array: pa.Array) -> npt.NDArray[Any]:
    """An integer array without nulls as a numpy view of its buffer (``Array.to_numpy`` would
    import pandas, which costs time and memory here for nothing)."""
    if array.null_count:
        raise ValueError("an array with nulls has no plain numpy view")
    dtype = np.dtype(_NUMPY_TYPES[array.type])
    buffer = array.buffers()[1]
    if buffer is None:
        return np.zeros(0, dtype)
    return np.frombuffer(buffer, dtype, count=len(array), offset=array.offset * dtype.itemsize)


def _pairs(
    material_codes: Codes, materials: pa.Array, uom: pa.ChunkedArray
) -> list[tuple[str, str]]:
    """The distinct (material, uom) of a table."""
    units = _dictionary(uom)
    width = len(units)
    codes = material_codes.astype(np.int64)
    codes *= width
    codes += _codes(uom)
    space = len(materials) * width
    if space <= BITMAP_FACTOR * len(codes):
        pairs = np.flatnonzero(np.bincount(codes, minlength=space))
    else:
        pairs = _numpy(pc.unique(_ints(codes)))
    return list(
        zip(
            materials.take(_ints(pairs // width)).to_pylist(),
            units.take(_ints(pairs % width)).to_pylist(),
            strict=True,
        )
    )


def _first_descriptions(
    material_codes: Codes, materials: pa.Array, description: pa.ChunkedArray
) -> dict[str, str]:
    """The first non-empty description of each material, in row order."""
    texts = _dictionary(description)
    codes = _codes(description)
    rows = np.flatnonzero((_numpy(pc.binary_length(texts)) > 0)[codes])
    if not len(rows):
        return {}
    first = np.full(len(materials), len(codes), np.int64)
    np.minimum.at(first, material_codes[rows], rows)
    described = np.flatnonzero(first < len(codes))
    return dict(
        zip(
            materials.take(_ints(described)).to_pylist(),
            texts.take(_ints(codes[first[described]])).to_pylist(),
            strict=True,
        )
    )


@dataclass
class _Part:
    """Rows of one system, as added (a file's columns or a chunk's)."""

    system: int
    rows: int
    material: list[pa.Array]
    location: list[pa.Array]
    lot: list[pa.Array]
    quantity: list[pa.Array]


class Comparison:
    """Collects the systems' rows by columns (``add_file``, ``add_columns``, ``add``), then
    classifies every line (``result``)."""

    def __init__(self, systems: Sequence[str], *, lot_level: bool = True) -> None:
        if len(systems) < 2:
            raise ValueError("a comparison needs at least two systems")
        if len(set(systems)) != len(systems):
            raise ValueError(f"systems named twice: {', '.join(systems)}")
        self.systems = list(systems)
        self.lot_level = lot_level
        self._read_lot_level = lot_level
        """The level rows were keyed at when added (``collapse_lots`` comes after the last)."""
        self._index = {name: i for i, name in enumerate(self.systems)}
        self._parts: list[_Part] = []
        self._size = 0
        self._tokens: dict[int, Any] = {}
        """Row number → a quantity that is not text (a ``Decimal`` the row reader made)."""
        self._units: dict[str, tuple[str, str]] = {}
        self.descriptions: dict[str, str] = {}
        self.unmapped: list[Unmapped] = []
        self.rows = dict.fromkeys(self.systems, 0)
        self.aggregated = dict.fromkeys(self.systems, 0)
        self._dictionaries: tuple[pa.Array, ...] = ()

    # ------------------------------------------------------------------------ loading
    def add_file(
        self,
        snapshot: CanonicalCsvSnapshot,
        progress: Progress | None = None,
        store: SnapshotStore | None = None,
    ) -> bool:
        """Read a canonical CSV snapshot by columns and add it; False (nothing read, nothing
        added) when its rows must go through the row reader (``snapshot.chunks``)."""
        columns = read_canonical_csv(snapshot.path, reference=snapshot.reference)
        _release()
        if columns is None or not self.add_columns(snapshot.system, columns):
            return False
        snapshot.mark_read(
            sha256=columns.sha256,
            rows=columns.rows,
            lots_seen=columns.lots,
            progress=progress,
            store=store,
        )
        return True

    def add_columns(self, system: str, columns: CsvColumns) -> bool:
        """Add a file's checked columns; False (nothing added) when a material has another
        unit in it than the run knows, or two units within it (the row reader lists exactly
        which rows)."""
        self._open(system)
        units = self._units
        within: dict[str, str] = {}
        for material, uom in columns.units:
            if within.setdefault(material, uom) != uom:
                return False
            known = units.get(material)
            if known is not None and known[0] != uom:
                return False
        for material, uom in columns.units:
            units.setdefault(material, (uom, system))
        table = columns.table
        n = table.num_rows
        lot = (
            table["lot"].chunks
            if "lot" in table.column_names
            else [pa.DictionaryArray.from_arrays(_ints(np.zeros(n, np.int32)), _texts([""]))]
        )
        self._append(
            system,
            n,
            table["material"].chunks,
            table["location"].chunks,
            lot,
            table["quantity"].chunks,
        )
        for material, description in columns.descriptions.items():
            self.descriptions.setdefault(material, description)
        return True

    def add(self, system: str, chunk: Chunk, *, source: str = "") -> None:
        """Add a chunk of ``system``'s valid canonical rows (quantities in the base unit; a
        material in another unit than the run knows is listed as unmapped)."""
        self._open(system)
        chunk = same_units(self._units, self.unmapped, system, chunk, source)
        n = len(chunk)
        if not n:
            return
        known = self.descriptions
        for material, description in chunk.descriptions().items():
            if material not in known:
                known[material] = description
        tokens = chunk.quantities()
        texts: list[str | None] = []
        canonical = _CANONICAL.fullmatch
        for offset, token in enumerate(tokens):
            if isinstance(token, str) and canonical(token):
                texts.append(token)
            else:  # a Decimal, or text only parse_quantity reads: kept as it is
                texts.append(None)
                self._tokens[self._size + offset] = token
        self._append(
            system,
            n,
            [_texts(chunk.column("material")).dictionary_encode()],
            [_texts(chunk.column("location")).dictionary_encode()],
            [_texts(chunk.column("lot")).dictionary_encode()],
            [_texts(texts)],
        )

    def _open(self, system: str) -> None:
        if system not in self._index:
            raise KeyError(system)
        if self.lot_level != self._read_lot_level:
            raise ValueError("rows are added before collapse_lots, not after")

    def _append(
        self,
        system: str,
        rows: int,
        material: list[pa.Array],
        location: list[pa.Array],
        lot: list[pa.Array],
        quantity: list[pa.Array],
    ) -> None:
        self._parts.append(_Part(self._index[system], rows, material, location, lot, quantity))
        self._size += rows
        self.rows[system] += rows

    def collapse_lots(self) -> None:
        """Compare at material × location (a lot-less system joined the run)."""
        self.lot_level = False

    def unit_of(self, material: str) -> str:
        """The unit ``material`` is compared in."""
        known = self._units.get(material)
        return known[0] if known else ""

    # ------------------------------------------------------------------------ classifying
    def result(
        self,
        *,
        tolerance: Tolerance | None = None,
        reference: Reference | None = None,
        transit: Transit | None = None,
    ) -> Result:
        """Classify every line (see the module docstring)."""
        tolerance = tolerance or Tolerance()
        n = len(self.systems)
        parts = self._parts
        if not parts:
            return Result(self, tolerance, [], None, reference)
        names = ["material", "location", "lot", "quantity"]
        table = pa.Table.from_arrays(
            [
                pa.chunked_array(
                    [a for p in parts for a in getattr(p, name)],
                    pa.string() if name == "quantity" else KEY_TYPE,
                )
                for name in names
            ],
            names=names,
        ).unify_dictionaries()
        materials, locations, lots = self._dictionaries = tuple(
            _dictionary(table[name]) for name in ("material", "location", "lot")
        )
        m, loc, lot = (_codes(table[name]) for name in ("material", "location", "lot"))
        quantity = table["quantity"]
        large = quantity.nbytes >= LARGE_TEXT
        quantity = (quantity.cast(pa.large_string()) if large else quantity).combine_chunks()
        # the parts keep slices of the unified columns: the columns as read can go
        start = 0
        for part in parts:
            part.material, part.location, part.lot = (
                table[name].slice(start, part.rows).chunks
                for name in ("material", "location", "lot")
            )
            if not large:
                part.quantity = [quantity.slice(start, part.rows)]
            start += part.rows
        del table
        _release()
        system = np.repeat(np.array([p.system for p in parts], np.int16), [p.rows for p in parts])
        # line ids at the level rows were added at (what "aggregated" counts), then the final
        levels = [(m, len(materials)), (loc, len(locations))]
        ids, count = _line_ids([*levels, (lot, len(lots))] if self._read_lot_level else levels)
        grid, repeated = _grid(ids, count, n, system)
        # rows after the first of their key in their system (at the level they were added at)
        repeats = np.bincount(system[repeated], minlength=n)
        for index, name in enumerate(self.systems):
            self.aggregated[name] = int(repeats[index])
        if self.lot_level != self._read_lot_level:
            del ids, grid, repeated
            ids, count = _line_ids(levels)
            grid, repeated = _grid(ids, count, n, system)
        # lines where no system has more than one row: where each system's row is (-1: none)
        simple = np.ones(count, np.bool_)
        simple[ids[repeated]] = False
        del repeated
        if self._tokens:  # a row holding a Decimal: its line is summed
            simple[ids[np.fromiter(self._tokens, np.int64, len(self._tokens))]] = False
        lines = np.flatnonzero(simple)
        rows = grid.reshape(count, n)[lines]
        del grid, simple
        # exact: every system's quantity text there and the same (tokens equal)
        first = _take(quantity, rows[:, 0])
        same = pc.is_valid(first)
        for i in range(1, n):
            same = pc.and_(same, pc.fill_null(pc.equal(first, _take(quantity, rows[:, i])), _FALSE))
        del first
        exact_at = _numpy(pc.indices_nonzero(same))
        del same
        differ = np.ones(len(lines), np.bool_)
        differ[exact_at] = False
        differing = rows[differ]
        exact_rows = rows[exact_at, 0]
        del differ, rows, exact_at
        make = LineMaker(self, tolerance, reference, transit)
        exceptions = self._lines(
            make, differing, [_take(quantity, differing[:, i]) for i in range(n)], m, loc, lot
        )
        del differing
        # every other line: its rows summed per system, in the order they came
        others = np.ones(count, np.bool_)
        others[lines] = False
        rest = np.flatnonzero(others[ids])
        rest_ids = ids[rest]
        del others, lines, ids
        more, summed_rows, summed = self._summed(
            make, rest, rest_ids, quantity, system, m, loc, lot
        )
        del rest, rest_ids, system
        exceptions += more
        texts = quantity.take(_ints(exact_rows))
        if summed:
            extra = _texts(summed)
            texts = pa.concat_arrays([texts, extra.cast(texts.type) if large else extra])
            exact_rows = np.concatenate([exact_rows, np.array(summed_rows, exact_rows.dtype)])
        columns = ArrowExact(
            (materials, m[exact_rows]),
            (locations, loc[exact_rows]),
            (lots, lot[exact_rows]) if self.lot_level else None,
            texts,
        )
        return Result(self, tolerance, exceptions, columns, reference)

    def _lines(
        self,
        make: LineMaker,
        rows: Codes,
        texts: list[pa.Array],
        m: Codes,
        loc: Codes,
        lot: Codes,
    ) -> list[Line]:
        """The lines of differing rows where each system has one row or none: their slots are
        the quantity texts as read (one row a system)."""
        if not len(rows):
            return []
        some = rows.max(axis=1)  # a row of each line: its material, location, lot
        dictionaries = self._dictionaries
        material = dictionaries[0].take(_ints(m[some]))
        location = dictionaries[1].take(_ints(loc[some]))
        lots = (
            dictionaries[2].take(_ints(lot[some]))
            if self.lot_level
            else _texts([""]).take(_ints(np.zeros(len(rows), np.int32)))
        )
        keys = pc.binary_join_element_wise(material, location, lots, _SEP).to_pylist()
        # canonical text (checked when read): Decimal reads it as parse_quantity would
        quantities = zip(
            *([None if t is None else Decimal(t) for t in text.to_pylist()] for text in texts),
            strict=True,
        )
        line = make.from_quantities
        return [
            line(key, a, b, c, held)
            for key, a, b, c, held in zip(
                keys,
                material.to_pylist(),
                location.to_pylist(),
                lots.to_pylist(),
                quantities,
                strict=True,
            )
        ]

    def _summed(
        self,
        make: LineMaker,
        rest: Codes,
        line_ids: Codes,
        quantity: pa.Array,
        system: Codes,
        m: Codes,
        loc: Codes,
        lot: Codes,
    ) -> tuple[list[Line], list[int], list[str]]:
        """The lines of the rows at ``rest`` (every row of lines where a system has several
        rows, or a quantity that is a ``Decimal``): each system's token is its one row's (text
        or ``Decimal``), or the exact ``Decimal`` sum of its rows. A line whose systems all hold
        an equal token is an exact match (returned as a row of it and its quantity text),
        every other one a ``Line``."""
        if not len(rest):
            return [], [], []
        n = len(self.systems)
        tokens: list[Any] = quantity.take(_ints(rest)).to_pylist()
        if self._tokens:
            for offset, token in enumerate(tokens):
                if token is None:
                    tokens[offset] = self._tokens[int(rest[offset])]
        slots: dict[int, list[Any]] = {}
        first_row: dict[int, int] = {}
        for row, line, si, token in zip(
            rest.tolist(), line_ids.tolist(), system[rest].tolist(), tokens, strict=True
        ):
            slot = slots.get(line)
            if slot is None:
                slot = slots[line] = [None] * n
                first_row[line] = row
            held = slot[si]
            slot[si] = token if held is None else to_decimal(held) + to_decimal(token)
        exceptions: list[Line] = []
        exact_rows: list[int] = []
        exact_texts: list[str] = []
        materials, locations, lots = self._dictionaries
        for line, slot in slots.items():
            row = first_row[line]
            first = slot[0]
            if first is not None and slot.count(first) == n:
                exact_rows.append(row)
                exact_texts.append(first if isinstance(first, str) else format_quantity(first))
                continue
            material = materials[int(m[row])].as_py()
            location = locations[int(loc[row])].as_py()
            lot_code = lots[int(lot[row])].as_py() if self.lot_level else ""
            key = SEP.join((material, location, lot_code))
            exceptions.append(make.line(key, material, location, lot_code, slot))
        return exceptions, exact_rows, exact_texts


def _take(values: pa.Array, rows: Codes) -> pa.Array:
    """``values`` at ``rows`` (null where the row is -1: none)."""
    return values.take(_ints(rows, rows < 0))


def _release() -> None:
    """Hand memory Arrow freed back to the system (its allocator keeps it otherwise)."""
    pa.default_memory_pool().release_unused()


def _grid(
    ids: Codes, count: int, n: int, system: npt.NDArray[np.int16]
) -> tuple[Codes, npt.NDArray[np.bool_]]:
    """The lines × systems grid of row numbers (-1: no row; one of them when several), and
    which rows share their cell with another row (a system's second row of a line)."""
    slots = _slots(ids, n, system)
    grid = np.full(count * n, -1, np.int32)
    order = np.arange(len(slots), dtype=np.int32)
    grid[slots] = order  # of rows sharing a cell, one is written: the others are repeats
    repeated: npt.NDArray[np.bool_] = grid[slots] != order
    return grid, repeated


def _slots(ids: Codes, n: int, system: npt.NDArray[np.int16]) -> Codes:
    """``line id × systems + system`` of every row: its place in a lines × systems grid."""
    dtype: type[np.signedinteger[Any]] = (
        np.int32 if (int(ids.max(initial=0)) + 1) * n < 1 << 31 else np.int64
    )
    slots = ids.astype(dtype)
    slots *= n
    slots += system
    return slots


def _line_ids(levels: list[tuple[Codes, int]]) -> tuple[Codes, int]:
    """Dense ids (0 … count - 1) of the distinct combinations of some code columns."""
    key, size = levels[0][0], max(levels[0][1], 1)
    for codes, width in levels[1:]:
        width = max(width, 1)
        if size * width >= KEY_LIMIT:
            key, size = _dense(key, size)
        dtype: type[np.signedinteger[Any]] = np.int32 if size * width < 1 << 31 else np.int64
        combined = key.astype(dtype)
        combined *= width
        combined += codes
        key, size = combined, size * width
    return _dense(key, size)


def _dense(key: Codes, size: int) -> tuple[Codes, int]:
    """Dense ids of integer keys in ``[0, size)`` (their rank among the distinct keys), and how
    many distinct keys there are. A bitmap of the key space with popcount ranks while it is
    small against the rows (at most 8 bytes a row), hashing beyond."""
    if size > BITMAP_FACTOR * len(key):
        encoded = pc.dictionary_encode(_ints(key))
        return _numpy(encoded.indices), len(encoded.dictionary)
    wide = size >= 1 << 31
    signed: type[np.signedinteger[Any]] = np.int64 if wide else np.int32
    unsigned: type[np.unsignedinteger[Any]] = np.uint64 if wide else np.uint32
    shift = 6 if wide else 5
    key = key.astype(signed, copy=False)
    word = np.right_shift(key, shift)
    bits = np.bitwise_and(key, (1 << shift) - 1).view(unsigned)
    np.left_shift(unsigned(1), bits, out=bits)
    words = np.zeros((size >> shift) + 1, unsigned)
    np.bitwise_or.at(words, word, bits)
    counts = np.bitwise_count(words)
    before = np.cumsum(counts, dtype=np.int32)
    count = int(before[-1])
    before -= counts
    bits -= unsigned(1)  # the bits below each key's own
    bits &= words[word]
    ids = before[word]
    ids += np.bitwise_count(bits)
    return ids, count


class ArrowExact:
    """The exact matches the engine found: codes of their material, location and lot
    and the reference system's quantity text, made into key strings and sorted on demand."""

    def __init__(
        self,
        material: tuple[pa.Array, Codes],
        location: tuple[pa.Array, Codes],
        lot: tuple[pa.Array, Codes] | None,
        quantity: pa.Array,
    ) -> None:
        self._material = material
        self._location = location
        self._lot = lot
        self._quantity = quantity

    def __len__(self) -> int:
        return len(self._material[1])

    def _columns(self) -> tuple[pa.Array, pa.Array, pa.Array, pa.Array]:
        material = self._material[0].take(_ints(self._material[1]))
        location = self._location[0].take(_ints(self._location[1]))
        if self._lot is None:
            lot = _texts([""]).take(_ints(np.zeros(len(self), np.int32)))
        else:
            lot = self._lot[0].take(_ints(self._lot[1]))
        keys = pc.binary_join_element_wise(material, location, lot, _SEP)
        return keys, material, location, lot

    def key_strings(self) -> list[str]:
        """The key strings."""
        keys: list[str] = self._columns()[0].to_pylist()
        return keys

    def location_counts(self) -> Counter[str]:
        """Lines per location."""
        values, codes = self._location
        counts = np.bincount(codes, minlength=len(values))
        present = np.flatnonzero(counts)
        names = values.take(_ints(present)).to_pylist()
        return Counter(dict(zip(names, counts[present].tolist(), strict=True)))

    def sorted_items(self) -> Iterator[tuple[str, str, str, str, Any]]:
        """``(key, material, location, lot, quantity text)`` by key."""
        keys, material, location, lot = self._columns()
        order = pc.sort_indices(keys)
        for start in range(0, len(order), BATCH):
            index = order.slice(start, BATCH)
            yield from zip(
                keys.take(index).to_pylist(),
                material.take(index).to_pylist(),
                location.take(index).to_pylist(),
                lot.take(index).to_pylist(),
                self._quantity.take(index).to_pylist(),
                strict=True,
            )
