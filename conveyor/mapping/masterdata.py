"""Master data: the CSV crosswalk tables of ``master_data/`` (materials, units, unit codes,
conversions, locations, movement types, and any table an integrator adds), checked against their
header contracts (``schemas/master_data.<table>.schema.json``) and indexed as dicts for lookups.

A table is read once; every lookup index is built once per (table, key columns, result column,
filter) and is a plain ``dict``. Problems are collected with ``file:line`` instead of raised, so
``conveyor mappings check`` can list them all.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

from conveyor.mapping.readers import CsvOptions, read_csv
from conveyor.paths import schemas_dir
from conveyor.quantity import QuantityError, parse_quantity
from conveyor.yamlfile import FileProblem

KNOWN_TABLES = (
    "materials",
    "units",
    "unit_codes",
    "unit_conversions",
    "locations",
    "movement_types",
)
"""Tables with a header contract; other ``*.csv`` files are free-form crosswalks for lookups."""

UNIT_TABLES = ("units", "unit_codes", "unit_conversions", "materials")
"""The tables unit conversion reads (``materials`` for each material's base unit)."""


@dataclass(frozen=True, slots=True)
class Material:
    """One row of ``materials.csv``: the canonical code and what the hub needs to know about it."""

    code: str
    base_uom: str
    description: str
    unit_cost: Decimal | None = None
    safety_stock: Decimal | None = None
    group: str | None = None


@dataclass
class Table:
    """One CSV table: its columns, rows (cells as text) and the file line of each row."""

    name: str
    path: Path
    display: str
    columns: tuple[str, ...]
    rows: list[dict[str, str]]
    lines: list[int]
    digest: str

    def column_line(self) -> int:
        """The line of the header (1, unless blank lines come first)."""
        return (self.lines[0] - 1) if self.lines else 1

    def line_of(self, index: int) -> int:
        """The file line of row ``index``."""
        return self.lines[index]


@cache
def contract(name: str) -> dict[str, Any] | None:
    """The header contract (row JSON Schema) of a known table, or None for a free-form one."""
    path = schemas_dir() / f"master_data.{name}.schema.json"
    if not path.exists():
        return None
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


@cache
def _fast_row_validator(name: str) -> Any:
    import fastjsonschema

    schema = contract(name)
    return fastjsonschema.compile(schema) if schema else None


def _display(path: Path, root: Path | None) -> str:
    if root is not None:
        try:
            return str(path.resolve().relative_to(root.resolve()))
        except ValueError:
            pass
    return str(path)


def read_table(path: Path, root: Path | None = None) -> Table:
    """Read one CSV table (encoding and delimiter detected; a BOM from Excel is fine)."""
    raw = path.read_bytes()
    rows: list[dict[str, str]] = []
    lines: list[int] = []
    columns: tuple[str, ...] = ()
    for record in read_csv(path, CsvOptions()):
        data = record.data
        if not columns:
            columns = tuple(k for k in data if k != "_extra")
        rows.append({k: v for k, v in data.items() if k != "_extra"})
        lines.append(record.line or 0)
    if not columns:
        columns = _header_only(path)
    return Table(
        name=path.stem,
        path=path,
        display=_display(path, root),
        columns=columns,
        rows=rows,
        lines=lines,
        digest=hashlib.sha256(raw).hexdigest(),
    )


def _header_only(path: Path) -> tuple[str, ...]:
    """Columns of a table that has a header and no rows."""
    import csv

    from conveyor.mapping.readers import file_encoding

    with path.open("r", encoding=file_encoding(path), newline="") as fh:
        for cells in csv.reader(fh):
            if cells and any(c.strip() for c in cells):
                return tuple(c.strip().lstrip("\ufeff") for c in cells)
    return ()


class MasterData:
    """Every table of ``master_data/``, validated, with cached dict indexes for lookups."""

    def __init__(self, tables: dict[str, Table], problems: list[FileProblem] | None = None):
        self.tables = tables
        self.problems: list[FileProblem] = problems or []
        self._indexes: dict[tuple[Any, ...], dict[Any, str]] = {}
        self._materials: dict[str, Material] = {}
        self._build_materials()

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, directory: Path, *, root: Path | None = None) -> MasterData:
        """Read and check every ``*.csv`` of ``directory``; problems are kept in ``.problems``."""
        tables: dict[str, Table] = {}
        problems: list[FileProblem] = []
        paths = sorted(directory.glob("*.csv")) if directory.is_dir() else []
        for path in paths:
            try:
                table = read_table(path, root)
            except (UnicodeDecodeError, OSError) as exc:
                problems.append(FileProblem(_display(path, root), 1, f"cannot read table: {exc}"))
                continue
            tables[table.name] = table
            problems.extend(_contract_problems(table))
        problems.extend(_reference_problems(tables))
        return cls(tables, problems)

    def _build_materials(self) -> None:
        table = self.tables.get("materials")
        if table is None or "material" not in table.columns:
            return
        for row in table.rows:
            code = row.get("material", "")
            if not code or code in self._materials:
                continue
            self._materials[code] = Material(
                code=code,
                base_uom=row.get("base_uom", ""),
                description=row.get("description", ""),
                unit_cost=_decimal_or_none(row.get("unit_cost")),
                safety_stock=_decimal_or_none(row.get("safety_stock")),
                group=row.get("group") or None,
            )

    # ------------------------------------------------------------------ reading
    def material(self, code: str) -> Material | None:
        """The material with canonical ``code``, or None."""
        return self._materials.get(code)

    def materials(self) -> Iterable[Material]:
        """Every material, in file order."""
        return self._materials.values()

    def nettable(self, location: str) -> bool:
        """Whether stock at ``location`` counts as available (``locations.nettable`` is not
        ``no``; a location the table does not list counts)."""
        if "locations" not in self.tables:
            return True
        flags = self.index("locations", ["location"], "nettable")
        return flags.get(location, "").strip().lower() != "no"

    def table(self, name: str) -> Table | None:
        """A table by name (file stem), or None."""
        return self.tables.get(name)

    def digest(self, names: Iterable[str]) -> str:
        """A combined content hash of the named tables (missing ones count as absent)."""
        h = hashlib.sha256()
        for name in sorted(set(names)):
            table = self.tables.get(name)
            h.update(f"{name}\x1f{table.digest if table else '-'}\x1e".encode())
        return h.hexdigest()

    def index(
        self,
        table: str,
        keys: Sequence[str],
        to: str,
        where: Sequence[tuple[str, str]] = (),
        *,
        ignore_case: bool = False,
    ) -> dict[Any, str]:
        """``key → value of column to`` for rows matching ``where``; built once, then cached.

        A single key column gives ``str`` keys, several give tuples. Rows with an empty key cell
        are left out; when keys repeat, the first row wins (``mappings check`` reports duplicates
        of the columns a table declares unique).
        """
        cache_key = (table, tuple(keys), to, tuple(where), ignore_case)
        found = self._indexes.get(cache_key)
        if found is not None:
            return found
        rows = self.tables[table].rows
        index: dict[Any, str] = {}
        single = len(keys) == 1
        for row in rows:
            if any(row.get(column, "") != value for column, value in where):
                continue
            cells = [row.get(k, "") for k in keys]
            if not all(cells):
                continue
            if ignore_case:
                cells = [c.casefold() for c in cells]
            key: Any = cells[0] if single else tuple(cells)
            if key not in index:
                index[key] = row.get(to, "")
        self._indexes[cache_key] = index
        return index

    def rows_where(self, table: str, column: str, value: str) -> Iterator[dict[str, str]]:
        """Rows of ``table`` whose ``column`` equals ``value`` (for messages, not hot paths)."""
        for row in self.tables[table].rows:
            if row.get(column) == value:
                yield row


def _decimal_or_none(text: str | None) -> Decimal | None:
    if not text:
        return None
    try:
        return parse_quantity(text)
    except QuantityError:
        return None


# ---------------------------------------------------------------------- checks
def _contract_problems(table: Table) -> list[FileProblem]:
    """Header contract, row schema and unique keys of one table."""
    schema = contract(table.name)
    if schema is None:
        return (
            []
            if table.columns
            else [FileProblem(table.display, 1, "table has no header row (column names)")]
        )
    problems: list[FileProblem] = []
    missing = [c for c in schema.get("required", []) if c not in table.columns]
    if missing:
        problems.append(
            FileProblem(
                table.display,
                table.column_line(),
                f"missing column(s) {', '.join(missing)}; the header must have "
                f"{', '.join(schema.get('required', []))}",
            )
        )
        return problems
    dup_columns = {c for c in table.columns if table.columns.count(c) > 1}
    for column in sorted(dup_columns):
        problems.append(
            FileProblem(table.display, table.column_line(), f"column {column!r} appears twice")
        )
    fast = _fast_row_validator(table.name)
    import fastjsonschema

    full = None
    for index, row in enumerate(table.rows):
        try:
            fast(row)
            continue
        except fastjsonschema.JsonSchemaValueException:
            pass
        if full is None:
            from jsonschema import Draft202012Validator

            full = Draft202012Validator(schema)
        for err in full.iter_errors(row):
            column = ".".join(str(p) for p in err.absolute_path) or "(row)"
            described = err.schema.get("description") if isinstance(err.schema, dict) else None
            text = (
                f"{err.instance!r} is not valid: {described}"
                if err.validator == "pattern" and described
                else err.message
            )
            problems.append(FileProblem(table.display, table.line_of(index), f"{column}: {text}"))
    for unique in schema.get("x-unique", []):
        if not all(c in table.columns for c in unique):
            continue
        seen: dict[tuple[str, ...], int] = {}
        for index, row in enumerate(table.rows):
            key = tuple(row.get(c, "") for c in unique)
            if not any(key):
                continue
            if len(unique) > 1 and not all(key):
                continue
            if key in seen:
                label = "+".join(unique)
                value = "/".join(key)
                problems.append(
                    FileProblem(
                        table.display,
                        table.line_of(index),
                        f"duplicate {label} {value!r} (first at line {seen[key]})",
                    )
                )
            else:
                seen[key] = table.line_of(index)
    return problems


def _reference_problems(tables: dict[str, Table]) -> list[FileProblem]:
    """Cells that must name a row of another table (``x-references`` of the contracts)."""
    problems: list[FileProblem] = []
    for table in tables.values():
        schema = contract(table.name)
        if not schema:
            continue
        for column, target in schema.get("x-references", {}).items():
            if column not in table.columns:
                continue
            target_table, target_column = target.split(".")
            other = tables.get(target_table)
            if other is None:
                problems.append(
                    FileProblem(
                        table.display,
                        table.column_line(),
                        f"{column} refers to {target_table}.csv, which does not exist",
                    )
                )
                continue
            known = {row.get(target_column, "") for row in other.rows}
            for index, row in enumerate(table.rows):
                value = row.get(column, "")
                if value and value not in known:
                    problems.append(
                        FileProblem(
                            table.display,
                            table.line_of(index),
                            f"{column} {value!r} is not a {target_column} of {other.display}",
                        )
                    )
    return problems
