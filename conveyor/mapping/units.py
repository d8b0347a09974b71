"""Units: THE one place that translates a system's unit code to a canonical unit and converts
quantities between units.

Factors come from ``unit_conversions.csv`` (``1 from_uom = factor to_uom``), global ones (empty
``material``) and material-specific ones; for a given material its own factor between two units
wins over a global one. Factors work in both directions and chain (T → KG → G). Arithmetic is exact
(``Fraction`` factors, ``Decimal`` results); a result with more decimals than the target unit keeps
(``units.csv`` ``decimals``) is rounded by that unit's declared rule, and the rule ``exact`` refuses
to round: the record is parked instead.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from decimal import (
    ROUND_CEILING,
    ROUND_DOWN,
    ROUND_FLOOR,
    ROUND_HALF_EVEN,
    ROUND_HALF_UP,
    ROUND_UP,
    Decimal,
)
from fractions import Fraction
from typing import TYPE_CHECKING

from conveyor.errors import MappingError, Problem
from conveyor.quantity import CONTEXT, range_problem
from conveyor.yamlfile import FileProblem

if TYPE_CHECKING:
    from conveyor.mapping.masterdata import MasterData

ROUNDING_MODES = {
    "exact": None,
    "half_up": ROUND_HALF_UP,
    "half_even": ROUND_HALF_EVEN,
    "down": ROUND_DOWN,
    "up": ROUND_UP,
    "floor": ROUND_FLOOR,
    "ceiling": ROUND_CEILING,
}
"""``units.csv`` ``rounding`` values and the ``decimal`` rounding they mean."""

_EXACT = CONTEXT
"""The ledger's one quantity context (``conveyor.quantity.CONTEXT``): 80 digits, so multiplying a
quantity (≤ 38 digits) by a decimal factor is exact, and an inexact result raises."""

PACKAGE = "package"
"""Dimension of units whose size depends on the material (BOX, BAG, ROLL)."""


@dataclass(frozen=True, slots=True)
class Unit:
    """A canonical unit and its rounding rule."""

    uom: str
    dimension: str
    decimals: int
    rounding: str


_Entry = tuple[Decimal | None, Fraction] | None
"""A resolved conversion: the factor as a Decimal when it is one exactly, and as a Fraction;
None when there is no path."""


def _terminating(value: Fraction) -> Decimal | None:
    """``value`` as an exact ``Decimal`` when its decimal expansion ends, else None."""
    d = value.denominator
    while d % 2 == 0:
        d //= 2
    while d % 5 == 0:
        d //= 5
    if d != 1:
        return None
    return _EXACT.divide(Decimal(value.numerator), Decimal(value.denominator))


def _strip(value: Decimal) -> Decimal:
    """Drop trailing fractional zeros (``1.500`` → ``1.5``) without going to exponent form."""
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent < 0:
        stripped = value.normalize(_EXACT)
        exp2 = stripped.as_tuple().exponent
        if isinstance(exp2, int) and exp2 > 0:
            return stripped.quantize(Decimal(1))
        return stripped
    return value


def round_fraction(value: Fraction, decimals: int, rounding: str) -> Decimal | None:
    """``value`` rounded to ``decimals`` places by ``rounding``; None when ``exact`` cannot hold."""
    scaled = value * (10**decimals)
    n, d = scaled.numerator, scaled.denominator
    q, r = divmod(n, d)
    if r:
        if rounding == "exact":
            return None
        twice = 2 * r
        if (
            rounding == "ceiling"
            or (rounding == "up" and n > 0)
            or (rounding == "down" and n < 0)
            or (rounding == "half_up" and (twice > d or (twice == d and n > 0)))
            or (rounding == "half_even" and (twice > d or (twice == d and q % 2 == 1)))
        ):
            q += 1
    return _strip(Decimal(q).scaleb(-decimals))


def _fits(result: Decimal, quantity: Decimal, from_uom: str, to_uom: str) -> Decimal:
    """``result`` when the ledger can hold it; a converted quantity is refused, never rounded."""
    problem = range_problem(result)
    if problem is None:
        return result
    raise MappingError(
        [
            Problem(
                field="quantity",
                value=quantity,
                rule="quantity.range",
                message=f"{quantity} {from_uom} in {to_uom} does not fit the ledger: {problem}",
            )
        ]
    )


class Units:
    """Canonical units, each system's unit codes and the conversion graph."""

    def __init__(self, master: MasterData) -> None:
        self.units: dict[str, Unit] = {}
        self._codes: dict[tuple[str, str], str] = {}
        self._any_codes: dict[str, str] = {}
        self._global: dict[str, dict[str, Fraction]] = {}
        self._specific: dict[str, dict[str, dict[str, Fraction]]] = {}
        self._edge_lines: dict[tuple[str, str, str], int] = {}
        self._cache: dict[tuple[str | None, str, str], _Entry] = {}
        self._base: dict[str, str] = {m.code: m.base_uom for m in master.materials()}
        units = master.table("units")
        for row in units.rows if units else []:
            try:
                decimals = int(row.get("decimals", "") or 0)
            except ValueError:
                decimals = 0
            rounding = row.get("rounding", "exact")
            self.units.setdefault(
                row.get("uom", ""),
                Unit(
                    row.get("uom", ""),
                    row.get("dimension", ""),
                    decimals,
                    rounding if rounding in ROUNDING_MODES else "exact",
                ),
            )
        codes = master.table("unit_codes")
        for row in codes.rows if codes else []:
            system, code, uom = row.get("system", ""), row.get("code", ""), row.get("uom", "")
            if not code or not uom:
                continue
            if system == "*":
                self._any_codes.setdefault(code, uom)
            else:
                self._codes.setdefault((system, code), uom)
        conversions = master.table("unit_conversions")
        for index, row in enumerate(conversions.rows if conversions else []):
            material = row.get("material", "")
            a, b = row.get("from_uom", ""), row.get("to_uom", "")
            try:
                factor = Fraction(row.get("factor", ""))
            except (ValueError, ZeroDivisionError):
                continue
            if not a or not b or factor <= 0:
                continue
            graph = self._specific.setdefault(material, {}) if material else self._global
            graph.setdefault(a, {})[b] = factor
            graph.setdefault(b, {})[a] = 1 / factor
            self._edge_lines[(material, a, b)] = conversions.line_of(index) if conversions else 0

    # ------------------------------------------------------------------ codes
    def canonical(self, system: str, code: str) -> str | None:
        """The canonical unit a system's ``code`` means: the system's own row, a ``*`` row, or
        the canonical code itself; None when unknown."""
        found = self._codes.get((system, code))
        if found is not None:
            return found
        found = self._any_codes.get(code)
        if found is not None:
            return found
        return code if code in self.units else None

    def base_uom(self, material: str) -> str | None:
        """The base unit of a canonical material (None when the material is unknown)."""
        return self._base.get(material)

    # ------------------------------------------------------------------ factors
    def factor(self, material: str | None, from_uom: str, to_uom: str) -> Fraction | None:
        """How many ``to_uom`` make one ``from_uom`` for ``material``; None when no path."""
        if from_uom == to_uom:
            return Fraction(1)
        entry = self._entry(material, from_uom, to_uom)
        return None if entry is None else entry[1]

    def _entry(self, material: str | None, from_uom: str, to_uom: str) -> _Entry:
        scope = material if material in self._specific else None
        key = (scope, from_uom, to_uom)
        try:
            return self._cache[key]
        except KeyError:
            found = self._search(scope, from_uom, to_uom)
            entry = None if found is None else (_terminating(found), found)
            self._cache[key] = entry
            return entry

    def _neighbours(self, scope: str | None, unit: str, *, own_only: bool) -> dict[str, Fraction]:
        if own_only:
            return self._specific[scope].get(unit, {}) if scope is not None else {}
        edges = dict(self._global.get(unit, {}))
        if scope is not None:
            edges.update(self._specific[scope].get(unit, {}))  # the material's own factor wins
        return edges

    def _search(self, scope: str | None, from_uom: str, to_uom: str) -> Fraction | None:
        """The material's own factors alone first, then with the global ones (its own factor
        replacing a global one between the same units); breadth-first, fewest steps."""
        if scope is not None:
            found = self._walk(scope, from_uom, to_uom, own_only=True)
            if found is not None:
                return found
        return self._walk(scope, from_uom, to_uom, own_only=False)

    def _walk(
        self, scope: str | None, from_uom: str, to_uom: str, *, own_only: bool
    ) -> Fraction | None:
        seen = {from_uom: Fraction(1)}
        queue = deque([from_uom])
        while queue:
            unit = queue.popleft()
            for nxt, factor in self._neighbours(scope, unit, own_only=own_only).items():
                if nxt in seen:
                    continue
                seen[nxt] = seen[unit] * factor
                if nxt == to_uom:
                    return seen[nxt]
                queue.append(nxt)
        return None

    # ------------------------------------------------------------------ convert
    def convert(
        self, material: str | None, quantity: Decimal, from_uom: str, to_uom: str
    ) -> Decimal:
        """``quantity`` of ``from_uom`` expressed in ``to_uom``, exactly, for ``material``.

        The material's own factors win over global ones. Raises ``MappingError`` when there is no
        conversion path, or when the target unit's rule is ``exact`` and the result needs rounding.
        """
        if from_uom == to_uom:
            return quantity
        _fits(quantity, quantity, from_uom, from_uom)  # huge inputs never reach the arithmetic
        entry = self._entry(material, from_uom, to_uom)
        if entry is None:
            raise MappingError([self._no_path_problem(material, quantity, from_uom, to_uom)])
        decimal_factor, fraction = entry
        unit = self.units.get(to_uom)
        decimals = unit.decimals if unit else 12
        if decimal_factor is not None:
            result = _EXACT.multiply(quantity, decimal_factor)
            _, digits, exponent = result.as_tuple()
            if isinstance(exponent, int) and exponent < 0 and digits[-1] == 0:
                result = _strip(result)  # 1500 G → 1.500 KG → 1.5 KG
                exponent = result.as_tuple().exponent
            if not isinstance(exponent, int) or -exponent <= decimals:
                return _fits(result, quantity, from_uom, to_uom)
        rounding = unit.rounding if unit else "half_even"
        rounded = round_fraction(Fraction(quantity) * fraction, decimals, rounding)
        if rounded is None:
            exact = Fraction(quantity) * fraction
            raise MappingError(
                [
                    Problem(
                        field="quantity",
                        value=quantity,
                        rule="unit.rounding",
                        message=(
                            f"{quantity} {from_uom} is {float(exact):.6g} {to_uom}, but {to_uom} "
                            f"keeps {decimals} decimals and its rounding rule is 'exact' "
                            "(units.csv)"
                        ),
                        extra={"table": "units", "column": "rounding", "code": to_uom},
                    )
                ]
            )
        return _fits(rounded, quantity, from_uom, to_uom)

    def _no_path_problem(
        self, material: str | None, quantity: Decimal, from_uom: str, to_uom: str
    ) -> Problem:
        where = f" for material {material}" if material else ""
        return Problem(
            field="uom",
            value=from_uom,
            rule="unit.conversion",
            message=(
                f"no conversion from {from_uom} to {to_uom}{where}: add a row to "
                "unit_conversions.csv"
            ),
            extra={
                "table": "unit_conversions",
                "column": "from_uom+to_uom",
                "code": f"{from_uom}->{to_uom}" + (f" ({material})" if material else ""),
                "material": material,
            },
        )

    def to_base(self, material: str, quantity: Decimal, uom: str) -> tuple[Decimal, str]:
        """``quantity`` of canonical ``uom`` in the material's base unit: ``(quantity, base)``."""
        base = self._base.get(material)
        if base is None:
            raise MappingError(
                [
                    Problem(
                        "material",
                        material,
                        "lookup",
                        f"material {material!r} is not in materials.csv",
                        extra={"table": "materials", "column": "material", "code": material},
                    )
                ]
            )
        return self.convert(material, quantity, uom, base), base

    # ------------------------------------------------------------------ checks
    def problems(self, master: MasterData) -> list[FileProblem]:
        """Units without a path to a material's base unit (same dimension, or named in one of the
        material's own factors), and factors that lead nowhere."""
        out: list[FileProblem] = []
        materials = master.table("materials")
        conversions = master.table("unit_conversions")
        if materials is None:
            return out
        by_dimension: dict[str, list[str]] = {}
        for unit in self.units.values():
            by_dimension.setdefault(unit.dimension, []).append(unit.uom)
        for index, row in enumerate(materials.rows):
            code, base = row.get("material", ""), row.get("base_uom", "")
            if base not in self.units:
                continue
            dimension = self.units[base].dimension
            wanted = [] if dimension == PACKAGE else by_dimension.get(dimension, [])
            for uom in wanted:
                if uom != base and self.factor(code, uom, base) is None:
                    out.append(
                        FileProblem(
                            materials.display,
                            materials.line_of(index),
                            f"material {code}: unit {uom} ({dimension}) has no conversion path "
                            f"to its base unit {base} (unit_conversions.csv)",
                        )
                    )
        if conversions is not None:
            for (material, a, b), line in self._edge_lines.items():
                if not material:
                    continue
                own_base = self._base.get(material)
                if own_base is None or own_base not in self.units:
                    continue
                for uom in (a, b):
                    if uom != own_base and self.factor(material, uom, own_base) is None:
                        out.append(
                            FileProblem(
                                conversions.display,
                                line,
                                f"material {material}: unit {uom} has no conversion path to its "
                                f"base unit {own_base}",
                            )
                        )
                        break
        return out
