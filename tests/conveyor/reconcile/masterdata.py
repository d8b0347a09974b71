"""A stand-in for the mapping engine's master data in compare tests: materials with costs and
groups, identity units plus whatever conversions a test declares."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import ClassVar

from conveyor.errors import MappingError, Problem


@dataclass
class Material:
    """Master data of one material (the shape reconciliation reads)."""

    code: str
    base_uom: str
    description: str | None = None
    unit_cost: Decimal | None = None
    safety_stock: Decimal | None = None
    group: str | None = None


class Costs:
    """A reference with master data only: costs, groups, base units; a unit converts only when
    ``divisors`` names the pair."""

    divisors: ClassVar[dict[tuple[str, str], int]] = {}

    def __init__(self, *materials: Material) -> None:
        self.known = {m.code: m for m in materials}

    def material(self, code: str) -> Material | None:
        return self.known.get(code)

    def materials(self) -> Iterator[Material]:
        return iter(self.known.values())

    def nettable(self, location: str) -> bool:
        return True

    def convert(self, material: str, quantity: Decimal, from_uom: str, to_uom: str) -> Decimal:
        if from_uom == to_uom:
            return quantity
        divisor = self.divisors.get((from_uom, to_uom))
        if divisor:
            return quantity / divisor
        raise MappingError([Problem("uom", from_uom, "unit.conversion", "no conversion")])
