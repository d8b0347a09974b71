"""The rules of a comparison, written once: what a line of material × location × lot is (status,
variance, value, tolerance, in-transit explanation), and the result a run reports. The engine
that gathers the rows (``compare.Comparison``) hands every line that is not an exact match to
``LineMaker`` here, and the exact matches in their compact form (``compare.ArrowExact``).

Vocabulary of ``status``: ``match`` (within tolerance, ``within_tolerance`` tells an exact match
from a tolerated difference), ``quantity_mismatch``, ``missing_in:<system>[,<system>…]``. A system
with no row where the others have only zeros is not missing (no row and a zero row are the same
stock). The first system is the reference: ``variance`` is the largest signed difference of
another system from it (a missing row counts as zero), relative tolerances are a share of it.

Timing: a movement the hub accepted but had not delivered to a system when its snapshot was
taken is *in transit* for that system. It is shown beside the line (``in_transit``); when adding
it back makes the line agree within tolerance the line gets ``explained_by = "in_transit"``. The
status and the counts stay those of the snapshots as they were (a timing difference is still a
difference on that day); the summary counts the explained lines separately
(``explained_in_transit``) so that real differences (``unexplained``) stand apart.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from operator import attrgetter, itemgetter
from typing import TYPE_CHECKING, Any, NamedTuple

from conveyor.quantity import format_quantity, parse_quantity
from conveyor.reconcile.sources import SEP, Chunk, Unmapped
from conveyor.reconcile.tolerance import Rule, Tolerance

if TYPE_CHECKING:
    from conveyor.reconcile.compare import ArrowExact, Comparison
    from conveyor.reconcile.reference import Reference

ZERO = Decimal(0)
MATCH = "match"
QUANTITY_MISMATCH = "quantity_mismatch"
MISSING_IN = "missing_in:"


def split_key(key: str) -> tuple[str, str, str]:
    """``material␟location␟lot`` → its three parts."""
    material, location, lot = key.split(SEP)
    return material, location, lot


def join_key(material: str, location: str, lot: str = "") -> str:
    """The key string of a line."""
    return SEP.join((material, location, lot))


def to_decimal(token: Any) -> Decimal:
    """A quantity token (canonical text or a ``Decimal``) as a ``Decimal``."""
    return token if isinstance(token, Decimal) else parse_quantity(token)


@dataclass
class Transit:
    """Quantities accepted by the hub but not yet delivered to a system, per line key."""

    quantities: dict[str, dict[str, Decimal]] = field(default_factory=dict)
    refs: dict[str, list[str]] = field(default_factory=dict)

    def add(self, key: str, system: str, quantity: Decimal, ref: str | None = None) -> None:
        """Add one movement's quantity (signed) for ``system``."""
        per_system = self.quantities.setdefault(key, {})
        per_system[system] = per_system.get(system, ZERO) + quantity
        if ref:
            refs = self.refs.setdefault(key, [])
            if ref not in refs and len(refs) < 10:
                refs.append(ref)

    def collapsed(self) -> Transit:
        """The same quantities keyed at material × location (for lot-less runs)."""
        out = Transit()
        for key, per_system in self.quantities.items():
            material, location, _ = split_key(key)
            target = join_key(material, location)
            for system, quantity in per_system.items():
                out.add(target, system, quantity)
            for ref in self.refs.get(key, []):
                refs = out.refs.setdefault(target, [])
                if ref not in refs and len(refs) < 10:
                    refs.append(ref)
        return out


@dataclass(slots=True)
class Line:
    """One material × location × lot compared across the systems (slots: a run can hold
    hundreds of thousands)."""

    material: str
    location: str
    lot: str | None
    uom: str
    quantities: dict[str, Decimal | None]
    status: str
    variance: Decimal
    variance_value: Decimal | None
    within_tolerance: bool
    description: str = ""
    variances: dict[str, Decimal] = field(default_factory=dict)
    in_transit: dict[str, Decimal] = field(default_factory=dict)
    explained_by: str | None = None
    transit_refs: list[str] = field(default_factory=list)
    tolerance: str = "0"

    @property
    def key(self) -> str:
        """The line's key string."""
        return join_key(self.material, self.location, self.lot or "")

    @property
    def missing(self) -> list[str]:
        """Systems the line is missing in."""
        if not self.status.startswith(MISSING_IN):
            return []
        return self.status[len(MISSING_IN) :].split(",")

    def as_dict(self) -> dict[str, Any]:
        """The line as ``report.json`` writes it (decimals as text)."""
        out: dict[str, Any] = {
            "material": self.material,
            "description": self.description,
            "location": self.location,
            "lot": self.lot,
            "uom": self.uom,
            "quantities": {
                s: None if q is None else format_quantity(q) for s, q in self.quantities.items()
            },
            "status": self.status,
            "variance": format_quantity(self.variance),
            "variance_value": None
            if self.variance_value is None
            else format_quantity(self.variance_value),
            "within_tolerance": self.within_tolerance,
            "tolerance": self.tolerance,
        }
        if self.in_transit:
            out["in_transit"] = {s: format_quantity(q) for s, q in self.in_transit.items()}
            out["transit_refs"] = list(self.transit_refs)
        out["explained_by"] = self.explained_by
        return out


class ExactRow(NamedTuple):
    """An exactly matching line in brief: every system holds ``quantity``."""

    material: str
    location: str
    lot: str | None
    uom: str
    description: str
    quantity: Decimal
    costed: bool
    """True when the material has a unit cost (its variance value is 0, not unknown)."""


@dataclass
class LocationStats:
    """Accuracy and variance of one location."""

    location: str
    lines: int = 0
    matched: int = 0
    quantity_mismatch: int = 0
    missing: int = 0
    variance_value: Decimal = ZERO

    @property
    def accuracy_pct(self) -> float | None:
        """Share of lines within tolerance, in percent."""
        return percent(self.matched, self.lines)

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "location": self.location,
            "lines": self.lines,
            "matched": self.matched,
            "quantity_mismatch": self.quantity_mismatch,
            "missing": self.missing,
            "accuracy_pct": self.accuracy_pct,
            "variance_value": format_quantity(self.variance_value),
        }


def percent_decimal(part: int, whole: int) -> Decimal | None:
    """``part / whole`` in percent, two decimals, half up (None when there is nothing to count)."""
    if whole == 0:
        return None
    return (Decimal(part) * 100 / Decimal(whole)).quantize(Decimal("0.01"), ROUND_HALF_UP)


def percent(part: int, whole: int) -> float | None:
    """``percent_decimal`` as a JSON number (a share, not a quantity)."""
    share = percent_decimal(part, whole)
    return None if share is None else float(share)


@dataclass
class Summary:
    """The run's counts and totals (``report.json`` ``summary``)."""

    lines: int
    matched: int
    quantity_mismatch: int
    missing: dict[str, int]
    missing_lines: int
    variance_value: Decimal
    exact: int
    within_tolerance: int
    explained_in_transit: int
    lines_without_value: int
    rows: dict[str, int]
    aggregated_rows: dict[str, int]
    unmapped: int

    @property
    def accuracy_pct(self) -> float | None:
        """Inventory record accuracy: share of lines within tolerance, in percent."""
        return percent(self.matched, self.lines)

    @property
    def accuracy(self) -> Decimal | None:
        """``accuracy_pct`` as an exact decimal."""
        return percent_decimal(self.matched, self.lines)

    @property
    def unexplained(self) -> int:
        """Lines outside tolerance that in-transit movements do not explain."""
        return self.quantity_mismatch + self.missing_lines - self.explained_in_transit

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "lines": self.lines,
            "matched": self.matched,
            "quantity_mismatch": self.quantity_mismatch,
            "missing": dict(self.missing),
            "accuracy_pct": self.accuracy_pct,
            "variance_value": format_quantity(self.variance_value),
            "missing_lines": self.missing_lines,
            "exact": self.exact,
            "within_tolerance": self.within_tolerance,
            "explained_in_transit": self.explained_in_transit,
            "unexplained": self.unexplained,
            "lines_without_value": self.lines_without_value,
            "rows": dict(self.rows),
            "aggregated_rows": dict(self.aggregated_rows),
            "unmapped": self.unmapped,
        }


def same_units(
    units: dict[str, tuple[str, str]],
    unmapped: list[Unmapped],
    system: str,
    chunk: Chunk,
    source: str,
) -> Chunk:
    """One unit per material across the run: a row in another unit that nothing converted
    (no master data for it) is listed as unmapped instead of being compared wrongly."""
    conflicts: set[tuple[str, str]] = set()
    for material, uom in chunk.pairs():
        known = units.get(material)
        if known is None:
            units[material] = (uom, system)
        elif known[0] != uom:
            conflicts.add((material, uom))
    if not conflicts:
        return chunk
    keep: list[int] = []
    f = chunk.fields
    for index, pair in enumerate(map(itemgetter(f.material, f.uom), chunk.rows)):
        if pair not in conflicts:
            keep.append(index)
            continue
        unit, by = units[pair[0]]
        unmapped.append(
            Unmapped(
                system,
                source,
                chunk.line(index),
                "uom",
                f"{pair[0]} is counted in {unit} ({by}); this row is in {pair[1]} and no "
                "master-data conversion is known",
                [
                    {
                        "field": "uom",
                        "value": pair[1],
                        "rule": "uom.base_unit",
                        "message": f"expected {unit}",
                    }
                ],
                chunk.record(index),
            )
        )
    return chunk.select(keep)


class LineMaker:
    """Builds the ``Line`` of a key and its slot (the quantity each system holds: canonical
    text, a ``Decimal``, or None for no row); a material's facts (tolerance rule, cost,
    description, unit) are looked up once per run, not once per line."""

    def __init__(
        self,
        compared: Comparison,
        tolerance: Tolerance,
        reference: Reference | None,
        transit: Transit | None,
    ) -> None:
        self.systems = compared.systems
        self.others = self.systems[1:]
        self.index = {name: i for i, name in enumerate(self.systems)}
        self.lot_level = compared.lot_level
        self.comparison = compared
        self.tolerance = tolerance
        self.reference = reference
        transit = transit or Transit()
        self.transit = transit if compared.lot_level else transit.collapsed()
        self.facts: dict[str, tuple[Rule, Decimal | None, Decimal | None, str, str, str]] = {}

    def _facts(self, material: str) -> tuple[Rule, Decimal | None, Decimal | None, str, str, str]:
        """(rule, allowed difference when it does not depend on the quantity, unit cost,
        description, unit, rule as text) of ``material``."""
        reference = self.reference
        info = reference.material(material) if reference is not None else None
        rule = self.tolerance.rule_for(material, info.group if info is not None else None)
        description = self.comparison.descriptions.get(material) or (
            (info.description or "") if info is not None else ""
        )
        facts = (
            rule,
            None if rule.relative else rule.allowed(ZERO),
            info.unit_cost if info is not None else None,
            description,
            self.comparison.unit_of(material),
            str(rule),
        )
        self.facts[material] = facts
        return facts

    def __call__(self, key: str, slot: Sequence[Any]) -> Line:
        material, location, lot = key.split(SEP)
        return self.line(key, material, location, lot, slot)

    def line(self, key: str, material: str, location: str, lot: str, slot: Sequence[Any]) -> Line:
        """The line of ``key`` (made of ``material``, ``location``, ``lot``)."""
        return self.from_quantities(
            key, material, location, lot, [None if t is None else to_decimal(t) for t in slot]
        )

    def from_quantities(
        self,
        key: str,
        material: str,
        location: str,
        lot: str,
        quantities: Sequence[Decimal | None],
    ) -> Line:
        """The line of ``key`` whose systems hold ``quantities`` (None: no row)."""
        facts = self.facts.get(material)
        if facts is None:
            facts = self._facts(material)
        rule, fixed, cost, description, uom, rule_text = facts
        systems = self.systems
        first = quantities[0]
        if first is None:
            base = ZERO
            missing = [systems[0]]
            held = False
        else:
            base = first
            missing = []
            held = bool(first)
        # variance: the largest difference from the reference, the first of equals in size
        name = systems[1]
        q = quantities[1]
        if q is None:
            missing.append(name)
            variance = ZERO - base
        else:
            held = held or bool(q)
            variance = q - base
        variances = {name: variance}
        largest = abs(variance)
        for i in range(2, len(systems)):
            name = systems[i]
            q = quantities[i]
            if q is None:
                missing.append(name)
                difference = ZERO - base
            else:
                held = held or bool(q)
                difference = q - base
            variances[name] = difference
            size = abs(difference)
            if size > largest:
                variance = difference
                largest = size
        if missing and held:
            status = MISSING_IN + ",".join(missing)
            within = False
        else:
            within = largest <= (fixed if fixed is not None else rule.allowed(base))
            status = MATCH if within else QUANTITY_MISMATCH
        transit = self.transit
        moving = transit.quantities.get(key) if transit.quantities else None
        in_transit = {s: q for s, q in moving.items() if s in self.index and q} if moving else {}
        explained = None
        if in_transit and status != MATCH:
            adjusted = [
                (q if q is not None else ZERO) + in_transit.get(systems[i], ZERO)
                for i, q in enumerate(quantities)
            ]
            if all(abs(a - adjusted[0]) <= rule.allowed(adjusted[0]) for a in adjusted[1:]):
                explained = "in_transit"
        return Line(
            material,
            location,
            lot if self.lot_level and lot else None,
            uom,
            dict(zip(systems, quantities)),  # noqa: B905 - one quantity a system
            status,
            variance,
            None if cost is None else variance * cost,
            within,
            description,
            variances,
            in_transit,
            explained,
            transit.refs.get(key, []) if in_transit else [],
            rule_text,
        )


def _by_report_order(lines: list[Line]) -> None:
    """Sort ``lines`` as reports list them: lines with a value first, by value (largest first),
    then by quantity variance (largest first), then by key — in three stable sorts, last key
    first, each comparing one thing (quicker than tuples of decimals)."""
    lines.sort(key=attrgetter("key"))
    lines.sort(key=_variance_size)
    lines.sort(key=_value_size)


def _variance_size(line: Line) -> Decimal:
    return -abs(line.variance)


def _value_size(line: Line) -> tuple[int, Decimal]:
    value = line.variance_value
    return (1, ZERO) if value is None else (0, -abs(value))


class Result:
    """A classified comparison: summary, per-location figures, and every line on demand."""

    def __init__(
        self,
        comparison: Comparison,
        tolerance: Tolerance,
        exceptions: list[Line],
        exact: ArrowExact | None,
        reference: Reference | None,
    ) -> None:
        self.comparison = comparison
        self.systems = comparison.systems
        self.lot_level = comparison.lot_level
        self.tolerance = tolerance
        self.reference = reference
        _by_report_order(exceptions)
        self.exceptions = exceptions
        self.exact = exact
        self.exact_count = len(exact) if exact is not None else 0
        self.unmapped = comparison.unmapped
        self.summary = self._summary()
        self.by_location = self._by_location()

    @property
    def exact_keys(self) -> list[str]:
        """The key strings of the exact matches."""
        return self.exact.key_strings() if self.exact is not None else []

    def _summary(self) -> Summary:
        missing = dict.fromkeys(self.systems, 0)
        matched = exact = self.exact_count
        mismatched = missing_lines = explained = tolerated = without_value = 0
        total = ZERO
        for line in self.exceptions:
            if line.status == MATCH:
                matched += 1
                if any(line.variances.values()):
                    tolerated += 1
                else:
                    exact += 1
            elif line.status == QUANTITY_MISMATCH:
                mismatched += 1
            else:
                missing_lines += 1
                for system in line.missing:
                    missing[system] += 1
            if line.explained_by:
                explained += 1
            if line.variance_value is None:
                if line.variance:
                    without_value += 1
            else:
                total += abs(line.variance_value)
        return Summary(
            lines=self.exact_count + len(self.exceptions),
            matched=matched,
            quantity_mismatch=mismatched,
            missing=missing,
            missing_lines=missing_lines,
            variance_value=total,
            exact=exact,
            within_tolerance=tolerated,
            explained_in_transit=explained,
            lines_without_value=without_value,
            rows=dict(self.comparison.rows),
            aggregated_rows=dict(self.comparison.aggregated),
            unmapped=len(self.unmapped),
        )

    def _by_location(self) -> list[LocationStats]:
        stats: dict[str, LocationStats] = {}
        exact: Counter[str] = Counter()
        if self.exact is not None:
            exact.update(self.exact.location_counts())
        for location, count in exact.items():
            stats[location] = LocationStats(location, lines=count, matched=count)
        for line in self.exceptions:
            entry = stats.get(line.location)
            if entry is None:
                entry = stats[line.location] = LocationStats(line.location)
            entry.lines += 1
            if line.status == MATCH:
                entry.matched += 1
            elif line.status == QUANTITY_MISMATCH:
                entry.quantity_mismatch += 1
            else:
                entry.missing += 1
            if line.variance_value is not None:
                entry.variance_value += abs(line.variance_value)
        return sorted(stats.values(), key=lambda s: (-s.variance_value, s.location))

    @property
    def has_differences(self) -> bool:
        """True when some line is outside tolerance or missing somewhere."""
        return self.summary.quantity_mismatch + self.summary.missing_lines > 0

    def exact_rows(self) -> Iterator[ExactRow]:
        """The exact matches by key, as plain rows (cheap: reports write a million of them)."""
        comparison = self.comparison
        descriptions = comparison.descriptions
        reference = self.reference
        known: dict[str, tuple[str, str, bool]] = {}
        lot_level = self.lot_level
        items = self.exact.sorted_items() if self.exact is not None else iter(())
        for _, material, location, lot, quantity in items:
            facts = known.get(material)
            if facts is None:
                info = reference.material(material) if reference is not None else None
                description = descriptions.get(material) or (
                    (info.description or "") if info is not None else ""
                )
                costed = info is not None and info.unit_cost is not None
                facts = known[material] = (comparison.unit_of(material), description, costed)
            yield ExactRow(
                material,
                location,
                lot if lot_level and lot else None,
                facts[0],
                facts[1],
                to_decimal(quantity),
                facts[2],
            )

    def exact_line(self, row: ExactRow) -> Line:
        """The line of an exactly matching row."""
        return Line(
            material=row.material,
            location=row.location,
            lot=row.lot,
            uom=row.uom,
            quantities=dict.fromkeys(self.systems, row.quantity),
            status=MATCH,
            variance=ZERO,
            variance_value=ZERO if row.costed else None,
            within_tolerance=True,
            description=row.description,
            variances=dict.fromkeys(self.systems[1:], ZERO),
        )

    def lines(self) -> Iterator[Line]:
        """Every line: differences by variance value (largest first), then exact matches by key."""
        yield from self.exceptions
        for row in self.exact_rows():
            yield self.exact_line(row)

    def __len__(self) -> int:
        return self.summary.lines
