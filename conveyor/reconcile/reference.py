"""What reconciliation needs from mappings and master data, behind one small interface.

``Reference`` answers: the canonical row of a system's raw snapshot row (its mapping), how to read
a system's own files, a material's base unit, unit cost, safety stock and group (master data),
and unit conversions. ``load_reference`` builds it from the project's ``conveyor.mapping`` engine;
a project without mappings and master data gets ``NoReference``: only canonical snapshots (which
need no mapping) can be compared, and values, unit conversions and safety stock are unknown
(reported as such, never guessed).
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from conveyor.errors import ConfigError

if TYPE_CHECKING:
    from conveyor.config import Project
    from conveyor.mapping.readers import CsvOptions

Records = Iterator[tuple[int | None, Any]]
"""Raw records of a file as ``(line, record)``; a record that cannot be parsed is an exception."""


@runtime_checkable
class MaterialInfo(Protocol):
    """A material's master data as reconciliation reads it."""

    code: str
    base_uom: str
    description: str | None
    unit_cost: Decimal | None
    safety_stock: Decimal | None
    group: str | None


class MappedRow(Protocol):
    """A snapshot row after the system's mapping: canonical names, quantity in base unit."""

    material: str
    location: str
    lot: str | None
    quantity: Decimal
    uom: str


class Reference(Protocol):
    """Mappings, master data and unit conversion for one run."""

    def material(self, code: str) -> MaterialInfo | None:
        """The material's master data, or None."""
        ...

    def materials(self) -> Iterator[MaterialInfo]:
        """Every material of the master data (for safety-stock alerts)."""
        ...

    def convert(self, material: str, quantity: Decimal, from_uom: str, to_uom: str) -> Decimal:
        """``quantity`` of ``material`` from one unit to another; raises ``MappingError``."""
        ...

    def nettable(self, location: str) -> bool:
        """Whether stock at ``location`` counts as available (not quality inspection, scrap)."""
        ...

    def has_mapping(self, system: str) -> bool:
        """True when ``system`` has a mapping (its own formats can be read)."""
        ...

    def map_snapshot_row(
        self, system: str, row: Any, *, file: str | None = None, line: int | None = None
    ) -> MappedRow:
        """Map one raw snapshot row; raises ``MappingError`` with the problems."""
        ...

    def version(self, system: str) -> str | None:
        """Content hash of the system's mapping (recorded with the run's inputs)."""
        ...

    def read_file(self, system: str, path: Path) -> Records:
        """Raw records of a file in the system's own format."""
        ...

    def snapshot_as_of(self, system: str, row: Any) -> str | None:
        """The ``as_of`` a raw snapshot row carries (per the mapping), or None."""
        ...


def read_raw_file(path: Path, options: CsvOptions | None = None) -> Records:
    """Records of a system file: CSV (the mapping layer's reader, which detects GBK/GB18030 and
    the dialect), JSON or JSON lines (``sources.canonical_json.json_documents``, which detects the
    encoding the same way and lists a line it cannot read), or XML (one record per B2MML
    ``MaterialLot`` element, else per child of the root element)."""
    suffix = path.suffix.lower()
    if suffix == ".xml":
        from conveyor.reconcile.sources.xml import xml_records

        yield from xml_records(path)
        return
    if suffix in (".json", ".jsonl", ".ndjson"):
        from conveyor.reconcile.sources.canonical_json import json_documents

        yield from json_documents(path)
        return
    from conveyor.mapping.readers import read_raw

    for record in read_raw(path, options):
        yield record.line, record.data


class NoReference:
    """No mapping engine and no master data: canonical snapshots only, no values, no conversion."""

    def material(self, code: str) -> MaterialInfo | None:
        """Nothing is known."""
        return None

    def materials(self) -> Iterator[MaterialInfo]:
        """No materials."""
        return iter(())

    def nettable(self, location: str) -> bool:
        """Every location counts."""
        return True

    def convert(self, material: str, quantity: Decimal, from_uom: str, to_uom: str) -> Decimal:
        """Only the identity is known."""
        from conveyor.errors import MappingError, Problem

        if from_uom == to_uom:
            return quantity
        raise MappingError(
            [
                Problem(
                    "uom",
                    from_uom,
                    "uom.conversion",
                    f"no master data to convert {from_uom} to {to_uom} for {material}",
                )
            ]
        )

    def has_mapping(self, system: str) -> bool:
        """No mappings."""
        return False

    def map_snapshot_row(
        self, system: str, row: Any, *, file: str | None = None, line: int | None = None
    ) -> MappedRow:
        """Refuse: there is no mapping engine."""
        from conveyor.errors import MappingError, Problem

        raise MappingError(
            [
                Problem(
                    "$",
                    None,
                    "mapping.missing",
                    f"no mapping for system {system!r}: give a canonical stock_snapshot instead",
                    file=file,
                    line=line,
                )
            ]
        )

    def version(self, system: str) -> str | None:
        """No version."""
        return None

    def read_file(self, system: str, path: Path) -> Records:
        """Records with default reading options (they will be listed as unmapped)."""
        return read_raw_file(path)

    def snapshot_as_of(self, system: str, row: Any) -> str | None:
        """Unknown."""
        return None


class EngineReference:
    """``Reference`` over ``conveyor.mapping.MappingEngine``."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self._materials: dict[str, MaterialInfo | None] = {}

    def material(self, code: str) -> MaterialInfo | None:
        """Master data of ``code`` (cached: reconciliation asks once per line)."""
        try:
            return self._materials[code]
        except KeyError:
            found = self.engine.master_data.material(code)
            self._materials[code] = found
            return found  # type: ignore[no-any-return]

    def materials(self) -> Iterator[MaterialInfo]:
        """Every material the master data lists."""
        master = self.engine.master_data
        listed = getattr(master, "materials", None)
        if listed is None:
            return iter(())
        items = listed() if callable(listed) else listed
        if isinstance(items, dict):
            items = items.values()
        return iter(items)

    def convert(self, material: str, quantity: Decimal, from_uom: str, to_uom: str) -> Decimal:
        """Convert with the master data's factors and rounding rule."""
        return self.engine.units.convert(material, quantity, from_uom, to_uom)  # type: ignore[no-any-return]

    def nettable(self, location: str) -> bool:
        """``locations.nettable`` of the master data."""
        return bool(self.engine.master_data.nettable(location))

    def has_mapping(self, system: str) -> bool:
        """True when ``system``'s mapping file maps ``stock_snapshot`` inbound."""
        return bool(self.engine.has_direction(system, "stock_snapshot", "in"))

    def map_snapshot_row(
        self, system: str, row: Any, *, file: str | None = None, line: int | None = None
    ) -> MappedRow:
        """Map one raw row through the system's ``stock_snapshot`` mapping."""
        return self.engine.map_snapshot_row(system, row, file=file, line=line)  # type: ignore[no-any-return]

    def version(self, system: str) -> str | None:
        """The mapping's content hash."""
        try:
            return self.engine.version(system)  # type: ignore[no-any-return]
        except ConfigError:
            return None

    def read_file(self, system: str, path: Path) -> Records:
        """Records of ``path`` read with the system's ``csv:`` options."""
        try:
            options = self.engine.mapping(system).csv
        except ConfigError:
            options = None
        return read_raw_file(path, options)

    def snapshot_as_of(self, system: str, row: Any) -> str | None:
        """The row's ``as_of`` when the mapping declares one."""
        return self.engine.snapshot_as_of(system, row)  # type: ignore[no-any-return]


def load_reference(project: Project) -> Reference:
    """The project's mappings and master data, or ``NoReference`` when there are none."""
    from conveyor.mapping import MappingEngine

    if not project.mappings_dir.is_dir() and not project.master_data_dir.is_dir():
        return NoReference()
    return EngineReference(MappingEngine.load(project))
