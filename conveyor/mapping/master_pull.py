"""Material master pulls: an ERP's material master (a connector with the ``master_data``
capability) into a staging folder, and its diff against ``master_data/materials.csv`` for the
integrator to read — ``master_data/`` itself is never written (a person decides what to take).

One pull writes ``<staging>/<system>/<UTC time>/`` (staging: ``.conveyor/staging/master_data``
under the project unless told otherwise):

- ``materials.csv`` — the rows as the ERP gave them, keyed by its own fields;
- ``diff.csv`` and ``diff.json`` — joined on the ERP's number column (``kingdee_number`` for
  Kingdee): **new** in the ERP (no row of ``materials.csv`` has that number), **changed**
  (``description`` or ``base_uom`` differ, old → new; the ERP's unit code read through
  ``unit_codes.csv``) and **missing** in the ERP (a row with a number the ERP does not have —
  only after a full pull: a pull ``since`` a time sees only what changed).

Every file is written under a temporary name and moved into place when complete; outside text
that starts like a spreadsheet formula is neutralised in the CSV files.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor.errors import ConfigError
from conveyor.mapping.masterdata import MasterData
from conveyor.mapping.units import Units
from conveyor.reconcile.reports import neutralise, replacing

if TYPE_CHECKING:
    from conveyor.config import Project
    from conveyor.connector import Connector

STAGING = Path(".conveyor") / "staging" / "master_data"
"""Where pulls land, relative to the project (``airflow.master_data.staging`` may say else)."""
COMPARED = ("description", "base_uom")
"""The ``materials.csv`` columns a change is shown for."""
DIFF_COLUMNS = (
    "status",
    "number",
    "material",
    "changed",
    "old_description",
    "new_description",
    "old_base_uom",
    "new_base_uom",
)


@dataclass(frozen=True)
class DiffLine:
    """One material that differs: ``new``, ``changed`` or ``missing`` (in the ERP)."""

    status: str
    number: str
    material: str = ""
    old: Mapping[str, str] = field(default_factory=dict)
    new: Mapping[str, str] = field(default_factory=dict)

    @property
    def changed(self) -> list[str]:
        """The compared columns whose values differ (for ``changed``)."""
        if self.status != "changed":
            return []
        return [c for c in COMPARED if self.old.get(c, "") != self.new.get(c, "")]

    def as_dict(self) -> dict[str, Any]:
        """The line as ``diff.json`` holds it (changes as ``{"old", "new"}`` per column)."""
        out: dict[str, Any] = {"number": self.number}
        if self.material:
            out["material"] = self.material
        if self.status == "changed":
            out["changes"] = {c: {"old": self.old.get(c, ""), "new": self.new.get(c, "")}
                              for c in self.changed}  # fmt: skip
        elif self.status == "new":
            out.update({c: self.new.get(c, "") for c in COMPARED})
        else:
            out.update({c: self.old.get(c, "") for c in COMPARED})
        return out


@dataclass
class MasterPull:
    """What one pull found and where it wrote it."""

    system: str
    pulled_at: datetime
    since: datetime | None
    key_column: str
    folder: Path
    rows: int
    lines: list[DiffLine]
    unchanged: int

    def of(self, status: str) -> list[DiffLine]:
        """The lines of one status, by number."""
        return [line for line in self.lines if line.status == status]

    @property
    def counts(self) -> dict[str, int | None]:
        """Rows pulled, new, changed, missing (None after a partial pull) and unchanged."""
        return {
            "pulled": self.rows,
            "new": len(self.of("new")),
            "changed": len(self.of("changed")),
            "missing": None if self.since is not None else len(self.of("missing")),
            "unchanged": self.unchanged,
        }

    def as_dict(self) -> dict[str, Any]:
        """The summary (what ``--json``, ``diff.json`` and the DAG's XCom show)."""
        return {
            "system": self.system,
            "pulled_at": self.pulled_at.isoformat(),
            "since": self.since.isoformat() if self.since else None,
            "key_column": self.key_column,
            "counts": self.counts,
            "new": [line.as_dict() for line in self.of("new")],
            "changed": [line.as_dict() for line in self.of("changed")],
            "missing": [line.as_dict() for line in self.of("missing")],
            "folder": str(self.folder),
            "files": {
                name: str(self.folder / name) for name in ("materials.csv", "diff.csv", "diff.json")
            },
        }

    def text(self) -> list[str]:
        """The summary for people: counts, each change old → new, where the files are."""
        c = self.counts
        missing = "not checked (partial pull)" if c["missing"] is None else str(c["missing"])
        out = [
            f"{self.system}: {c['pulled']} material(s) pulled"
            + (f" changed since {self.since.isoformat()}" if self.since else "")
            + f"; new {c['new']}, changed {c['changed']}, missing in {self.system} {missing}, "
            f"unchanged {c['unchanged']} (joined on {self.key_column})"
        ]
        for line in self.lines:
            if line.status == "changed":
                changes = "; ".join(
                    f"{col} {line.old.get(col, '')!r} → {line.new.get(col, '')!r}"
                    for col in line.changed
                )
                out.append(f"  changed {line.number} ({line.material}): {changes}")
            elif line.status == "new":
                out.append(
                    f"  new     {line.number}: {line.new.get('description', '')!r} "
                    f"{line.new.get('base_uom', '')}"
                )
            else:
                out.append(f"  missing {line.number} ({line.material}) in {self.system}")
        out.append(f"files: {self.folder} (materials.csv, diff.csv, diff.json)")
        return out


def staging_root(project: Project) -> Path:
    """``airflow.master_data.staging`` (relative to the project), else ``STAGING``."""
    configured = ((project.raw.get("airflow") or {}).get("master_data") or {}).get("staging")
    chosen = Path(configured) if configured else STAGING
    return chosen if chosen.is_absolute() else project.root / chosen


def master_data_systems(project: Project) -> list[str]:
    """Systems whose connector gives a material master (``master_data``), by name; only
    ``airflow.master_data.system`` when set."""
    from conveyor.runtime import registry

    chosen = ((project.raw.get("airflow") or {}).get("master_data") or {}).get("system")
    out = []
    for name, system in sorted(project.systems.items()):
        if chosen and name != chosen:
            continue
        try:
            cls = registry.load(system.connector)
        except ConfigError:
            continue
        if "master_data" in cls.capabilities:
            out.append(name)
    return out


def pull_materials(
    project: Project,
    connector: Connector,
    *,
    since: datetime | None = None,
    staging: Path | None = None,
    now: datetime | None = None,
) -> MasterPull:
    """Pull ``connector``'s material master into a new staging folder and diff it against the
    project's ``master_data/materials.csv``; ``ConfigError`` when the connector has none."""
    if not connector.supports("master_data"):
        raise ConfigError(
            f"system {connector.name!r} ({connector.kind}) gives no material master "
            "(its connector lacks the master_data capability)"
        )
    pulled_at = (now or datetime.now(UTC)).astimezone(UTC)
    rows = list(connector.material_master(since))
    fields = _fields(rows, connector)
    key_field = connector.material_key
    key_column = connector.material_columns[key_field]

    master = MasterData.load(project.master_data_dir, root=project.root)
    table = master.table("materials")
    if table is None or key_column not in table.columns:
        raise ConfigError(
            f"master_data/materials.csv has no column {key_column!r} to join "
            f"{connector.name}'s material numbers on"
        )
    units = Units(master)
    erp: dict[str, dict[str, str]] = {}
    for row in rows:
        number = row.get(key_field, "").strip()
        if number:
            erp.setdefault(number, _as_columns(row, connector, units))
    ours: dict[str, dict[str, str]] = {}
    for row in table.rows:
        number = (row.get(key_column) or "").strip()
        if number:
            ours.setdefault(number, dict(row))

    lines: list[DiffLine] = []
    unchanged = 0
    for number, new in sorted(erp.items()):
        old = ours.get(number)
        if old is None:
            lines.append(DiffLine("new", number, new=new))
        elif any(old.get(c, "") != new.get(c, "") for c in COMPARED):
            old_values = {c: old.get(c, "") for c in COMPARED}
            lines.append(DiffLine("changed", number, old.get("material", ""), old_values, new))
        else:
            unchanged += 1
    if since is None:
        for number, old in sorted(ours.items()):
            if number not in erp:
                old_values = {c: old.get(c, "") for c in COMPARED}
                lines.append(DiffLine("missing", number, old.get("material", ""), old=old_values))
    lines.sort(key=lambda line: (("new", "changed", "missing").index(line.status), line.number))

    folder = _new_folder((staging or staging_root(project)) / connector.name, pulled_at)
    result = MasterPull(
        connector.name, pulled_at, since, key_column, folder, len(rows), lines, unchanged
    )
    _write_rows(folder / "materials.csv", fields, rows)
    _write_diff(folder / "diff.csv", lines)
    with replacing(folder / "diff.json", "w", encoding="utf-8") as fh:
        json.dump(result.as_dict(), fh, ensure_ascii=False, indent=2)
        fh.write("\n")
    return result


def _fields(rows: Sequence[Mapping[str, str]], connector: Connector) -> list[str]:
    """The staging file's columns: every field the rows carry, in the order first seen."""
    seen: dict[str, None] = dict.fromkeys(connector.material_columns)
    for row in rows:
        seen.update(dict.fromkeys(row))
    return list(seen)


def _as_columns(row: Mapping[str, str], connector: Connector, units: Units) -> dict[str, str]:
    """An ERP row in ``materials.csv`` columns; the unit as its canonical code when
    ``unit_codes.csv`` knows the ERP's code (else the code as given, which shows as a change)."""
    out = {column: (row.get(f) or "").strip() for f, column in connector.material_columns.items()}
    code = out.get("base_uom", "")
    if code:
        out["base_uom"] = (
            units.canonical(connector.name, code) or units.canonical(connector.kind, code) or code
        )
    return out


def _new_folder(parent: Path, pulled_at: datetime) -> Path:
    """A folder named after the UTC time of the pull, never one that exists already."""
    parent.mkdir(parents=True, exist_ok=True)
    stamp = pulled_at.strftime("%Y%m%dT%H%M%SZ")
    for attempt in range(1, 1000):
        folder = parent / (stamp if attempt == 1 else f"{stamp}-{attempt}")
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        return folder
    raise ConfigError(f"too many pulls in {parent} at {stamp}")


def _write_rows(path: Path, fields: Sequence[str], rows: Sequence[Mapping[str, str]]) -> None:
    """The pulled rows as ``materials.csv`` (UTF-8, as the tables of ``master_data/``)."""
    with replacing(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(fields)
        writer.writerows([neutralise(row.get(f, "")) for f in fields] for row in rows)


def _write_diff(path: Path, lines: Sequence[DiffLine]) -> None:
    """``diff.csv``, with a BOM so spreadsheet programs read it as UTF-8."""
    with replacing(path, "w", encoding="utf-8-sig", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(DIFF_COLUMNS)
        for line in lines:
            writer.writerow(
                [
                    line.status,
                    neutralise(line.number),
                    neutralise(line.material),
                    " ".join(line.changed),
                    neutralise(line.old.get("description", "")),
                    neutralise(line.new.get("description", "")),
                    neutralise(line.old.get("base_uom", "")),
                    neutralise(line.new.get("base_uom", "")),
                ]
            )
