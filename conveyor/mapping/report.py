"""The unmapped-codes report: parked records grouped by the master-data table and code they are
missing, with counts and a few examples, so an integrator knows exactly which rows to add.
Values that could not be parsed (dates, numbers) are listed apart, by system, field and rule."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conveyor.ledger import Ledger

EXAMPLES = 3

_HINTS = {
    "materials": "add a row to master_data/materials.csv with {column} = {code}",
    "locations": "add a row to master_data/locations.csv with {column} = {code}",
    "unit_codes": "add a row to master_data/unit_codes.csv: {system},{code},<canonical uom>",
    "unit_conversions": "add a factor to master_data/unit_conversions.csv for {code}",
    "units": "check the rounding rule of {code} in master_data/units.csv",
    "movement_types": "complete a row of master_data/movement_types.csv with {column} = {code}",
}


@dataclass
class UnmappedCode:
    """One missing code: which table and column, which system, how many parked records."""

    table: str
    column: str
    code: str
    system: str
    count: int = 0
    message_types: set[str] = dataclasses.field(default_factory=set)
    examples: list[str] = dataclasses.field(default_factory=list)
    parked_ids: list[int] = dataclasses.field(default_factory=list)

    @property
    def hint(self) -> str:
        """What to add to fix it."""
        template = _HINTS.get(
            self.table, "add a row to master_data/{table}.csv with {column} = {code}"
        )
        return template.format(
            table=self.table, column=self.column, code=self.code, system=self.system
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {
            "table": self.table,
            "column": self.column,
            "code": self.code,
            "system": self.system,
            "count": self.count,
            "message_types": sorted(self.message_types),
            "examples": self.examples,
            "parked_ids": self.parked_ids,
            "hint": self.hint,
        }


@dataclass
class OtherProblem:
    """Parked records whose value could not be read (not a missing code)."""

    system: str
    field: str
    rule: str
    count: int = 0
    examples: list[str] = dataclasses.field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {
            "system": self.system,
            "field": self.field,
            "rule": self.rule,
            "count": self.count,
            "examples": self.examples,
        }


@dataclass
class UnmappedReport:
    """Missing codes (most frequent first) and other mapping problems."""

    codes: list[UnmappedCode]
    other: list[OtherProblem]
    parked_records: int

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {
            "parked_records": self.parked_records,
            "codes": [c.as_dict() for c in self.codes],
            "other": [o.as_dict() for o in self.other],
        }


def unmapped_report(ledger: Ledger, *, system: str | None = None) -> UnmappedReport:
    """Group the parked (stage ``map``) records of ``ledger`` by missing table and code."""
    codes: dict[tuple[str, str, str, str], UnmappedCode] = {}
    other: dict[tuple[str, str, str], OtherProblem] = {}
    rows = ledger.parked_records(stage="map", system=system)
    for row in rows:
        try:
            problems = json.loads(row.problems or "[]")
        except ValueError:
            problems = []
        where = f"{row.file}:{row.line}" if row.file else f"parked #{row.id}"
        seen: set[tuple[str, ...]] = set()
        for problem in problems:
            table = problem.get("table")
            if table:
                key = (
                    str(table),
                    str(problem.get("column", "")),
                    str(problem.get("code", problem.get("value", ""))),
                    str(problem.get("system") or row.system or ""),
                )
                if key in seen:
                    continue
                seen.add(key)
                entry = codes.setdefault(key, UnmappedCode(*key))
                entry.count += 1
                entry.parked_ids.append(row.id)
                if row.message_type:
                    entry.message_types.add(row.message_type)
                if len(entry.examples) < EXAMPLES:
                    entry.examples.append(where)
            else:
                okey = (
                    str(problem.get("system") or row.system or ""),
                    str(problem.get("field", "")),
                    str(problem.get("rule", "")),
                )
                if okey in seen:
                    continue
                seen.add(okey)
                item = other.setdefault(okey, OtherProblem(*okey))
                item.count += 1
                if len(item.examples) < EXAMPLES:
                    item.examples.append(f"{where}: {problem.get('message', '')}")
    return UnmappedReport(
        codes=sorted(codes.values(), key=lambda c: (-c.count, c.table, c.code)),
        other=sorted(other.values(), key=lambda o: (-o.count, o.system, o.field)),
        parked_records=len(rows),
    )
