"""Runs are records: each reconciliation is stored once (inputs with hashes, parameters, summary,
the report files' hashes, the lines that differed) and never changed. Resolutions of lines and
the approval of a run are appended as new rows; the latest resolution of a line counts.

Four-eyes rule: the person who ran a reconciliation may neither classify its differences nor
approve it. A run is approved only when every difference has a closing resolution (anything but
``open``), unless the approver says otherwise (``allow_open``; the open count is recorded).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Engine, Table, func, select

from conveyor.errors import TerminalError
from conveyor.ledger.models import utcnow
from conveyor.quantity import format_quantity, parse_quantity
from conveyor.reconcile.lines import MATCH, Line, Result, join_key
from conveyor.reconcile.models import (
    ReconciliationApprovalRow,
    ReconciliationInputRow,
    ReconciliationLineRow,
    ReconciliationResolutionRow,
    ReconciliationRunRow,
    ReconciliationSnapshotRow,
)
from conveyor.reconcile.reports import Report
from conveyor.reconcile.sources import Snapshot

RESOLUTIONS = ("timing_difference", "counting_error", "posting_error", "master_data_error", "open")
"""How a difference is classified; ``open`` means still under investigation."""

runs_t = cast(Table, ReconciliationRunRow.__table__)
inputs_t = cast(Table, ReconciliationInputRow.__table__)
snapshots_t = cast(Table, ReconciliationSnapshotRow.__table__)
lines_t = cast(Table, ReconciliationLineRow.__table__)
resolutions_t = cast(Table, ReconciliationResolutionRow.__table__)
approvals_t = cast(Table, ReconciliationApprovalRow.__table__)


class RunError(TerminalError):
    """A run cannot be found, or a resolution or approval is refused."""


@dataclass(frozen=True)
class RunRecord:
    """A stored run, as read back."""

    pk: int
    run_id: str
    as_of: datetime
    started_at: datetime
    finished_at: datetime
    runner: str
    systems: list[str]
    lot_level: bool
    parameters: dict[str, Any]
    summary: dict[str, Any]
    by_location: list[dict[str, Any]]
    lines: int
    matched: int
    accuracy_pct: Decimal | None
    variance_value: Decimal
    out_dir: str | None
    reports: dict[str, str]
    unmapped: list[dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        """JSON form (``--json`` output)."""
        return {
            "run_id": self.run_id,
            "as_of": self.as_of.isoformat(),
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat(),
            "runner": self.runner,
            "systems": self.systems,
            "lot_level": self.lot_level,
            "parameters": self.parameters,
            "summary": self.summary,
            "out_dir": self.out_dir,
            "reports": self.reports,
        }


def _record(row: Any) -> RunRecord:
    return RunRecord(
        pk=row.id,
        run_id=row.run_id,
        as_of=row.as_of,
        started_at=row.started_at,
        finished_at=row.finished_at,
        runner=row.runner,
        systems=json.loads(row.systems),
        lot_level=bool(row.lot_level),
        parameters=json.loads(row.parameters),
        summary=json.loads(row.summary),
        by_location=json.loads(row.by_location),
        lines=row.lines,
        matched=row.matched,
        accuracy_pct=row.accuracy_pct,
        variance_value=row.variance_value,
        out_dir=row.out_dir,
        reports=json.loads(row.reports),
        unmapped=json.loads(row.unmapped),
    )


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str, sort_keys=True)


class RunStore:
    """Stored runs on the ledger's database (insert and read only)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # ------------------------------------------------------------------------- writing
    def record(
        self,
        *,
        run_id: str,
        as_of: datetime,
        started_at: datetime,
        runner: str,
        result: Result,
        snapshots: Sequence[Snapshot],
        parameters: dict[str, Any],
        out_dir: Path | None,
        reports: dict[str, str],
    ) -> RunRecord:
        """Store a finished run in one transaction and return it."""
        summary = result.summary
        accuracy = summary.accuracy
        with self.engine.begin() as conn:
            snapshot_pks = [self._snapshot_pk(conn, s) for s in snapshots]
            run_pk = conn.execute(
                runs_t.insert().returning(runs_t.c.id),
                {
                    "run_id": run_id,
                    "as_of": as_of,
                    "started_at": started_at,
                    "finished_at": utcnow(),
                    "runner": runner,
                    "systems": json.dumps(result.systems),
                    "lot_level": result.lot_level,
                    "parameters": _json(parameters),
                    "summary": _json(summary.as_dict()),
                    "by_location": _json([s.as_dict() for s in result.by_location]),
                    "lines": summary.lines,
                    "matched": summary.matched,
                    "accuracy_pct": accuracy,
                    "variance_value": summary.variance_value,
                    "out_dir": str(out_dir) if out_dir is not None else None,
                    "reports": _json(reports),
                    "unmapped": _json([u.as_dict() for u in result.unmapped]),
                },
            ).scalar_one()
            conn.execute(
                inputs_t.insert(),
                [
                    {
                        "run_pk": run_pk,
                        "snapshot_pk": pk,
                        "system": s.system,
                        "kind": s.kind,
                        "source": s.source,
                        "sha256": s.sha256 or "",
                        "rows": s.rows,
                        "unmapped": len(s.unmapped),
                        "lot_level": s.lot_level,
                        "as_of": s.as_of,
                        "mapping_version": s.mapping_version,
                    }
                    for s, pk in zip(snapshots, snapshot_pks, strict=True)
                ],
            )
            batch: list[dict[str, Any]] = []
            for position, line in enumerate(result.exceptions, start=1):
                batch.append(_line_row(run_pk, position, line))
                if len(batch) >= 1000:
                    conn.execute(lines_t.insert(), batch)
                    batch = []
            if batch:
                conn.execute(lines_t.insert(), batch)
        return self.get(run_id)

    def _snapshot_pk(self, conn: Any, snapshot: Snapshot) -> int:
        sha = snapshot.sha256 or ""
        found = conn.execute(
            select(snapshots_t.c.id).where(
                snapshots_t.c.sha256 == sha, snapshots_t.c.system == snapshot.system
            )
        ).scalar_one_or_none()
        if found is not None:
            return int(found)
        return int(
            conn.execute(
                snapshots_t.insert().returning(snapshots_t.c.id),
                {
                    "sha256": sha,
                    "system": snapshot.system,
                    "kind": snapshot.kind,
                    "source": snapshot.source,
                    "as_of": snapshot.as_of,
                    "rows": snapshot.rows,
                    "stored_path": snapshot.stored_path,
                    "created_at": utcnow(),
                },
            ).scalar_one()
        )

    def resolve(
        self,
        run_ref: str,
        *,
        material: str,
        location: str,
        lot: str | None,
        resolution: str,
        note: str,
        by: str,
    ) -> dict[str, Any]:
        """Classify one differing line of a run (appended; the latest resolution counts)."""
        if resolution not in RESOLUTIONS:
            raise RunError(
                f"resolution must be one of {', '.join(RESOLUTIONS)}, not {resolution!r}"
            )
        by = by.strip()
        if not by:
            raise RunError("a resolution needs the name of who sets it")
        if not note.strip():
            raise RunError("a resolution needs a note (what was found)")
        run = self.get(run_ref)
        if by == run.runner:
            raise RunError(
                f"{by} ran this reconciliation; someone else must classify its differences"
            )
        lot_value = (lot or "") if run.lot_level else ""
        with self.engine.begin() as conn:
            line = conn.execute(
                select(lines_t.c.status, lines_t.c.variance).where(
                    lines_t.c.run_pk == run.pk,
                    lines_t.c.material == material,
                    lines_t.c.location == location,
                    lines_t.c.lot == lot_value,
                )
            ).first()
            if line is None:
                raise RunError(
                    f"run {run.run_id} has no differing line {material} @ {location}"
                    + (f" lot {lot_value}" if lot_value else "")
                    + " (exact matches need no resolution)"
                )
            now = utcnow()
            conn.execute(
                resolutions_t.insert(),
                {
                    "run_pk": run.pk,
                    "material": material,
                    "location": location,
                    "lot": lot_value,
                    "resolution": resolution,
                    "note": note.strip(),
                    "resolved_by": by,
                    "created_at": now,
                },
            )
        return {
            "run_id": run.run_id,
            "material": material,
            "location": location,
            "lot": lot_value or None,
            "status": line.status,
            "resolution": resolution,
            "note": note.strip(),
            "by": by,
            "at": now.isoformat(),
        }

    def approve(
        self, run_ref: str, *, approver: str, note: str = "", allow_open: bool = False
    ) -> dict[str, Any]:
        """Sign a run off. Refused for its runner, for a second approval, and while differences
        are unresolved (unless ``allow_open``)."""
        approver = approver.strip()
        if not approver:
            raise RunError("an approval needs the approver's name")
        run = self.get(run_ref)
        if approver == run.runner:
            raise RunError(f"{approver} ran this reconciliation and cannot approve it")
        existing = self.approvals(run)
        if existing:
            raise RunError(
                f"run {run.run_id} was already approved by {existing[0]['approver']} "
                f"at {existing[0]['at']}"
            )
        open_lines = self.open_lines(run)
        if open_lines and not allow_open:
            raise RunError(
                f"{len(open_lines)} difference(s) of run {run.run_id} have no closing resolution "
                "(resolve them, or approve with allow_open to sign off anyway)"
            )
        now = utcnow()
        with self.engine.begin() as conn:
            conn.execute(
                approvals_t.insert(),
                {
                    "run_pk": run.pk,
                    "approver": approver,
                    "note": note.strip(),
                    "open_lines": len(open_lines),
                    "created_at": now,
                },
            )
        return {
            "run_id": run.run_id,
            "approver": approver,
            "note": note.strip(),
            "open_lines": len(open_lines),
            "at": now.isoformat(),
        }

    # ------------------------------------------------------------------------- reading
    def get(self, run_ref: str) -> RunRecord:
        """A run by its id or an unambiguous prefix of it."""
        ref = run_ref.strip()
        if not ref:
            raise RunError("give a run id")
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(runs_t)
                .where(runs_t.c.run_id.like(_escape_like(ref) + "%", escape="\\"))
                .order_by(runs_t.c.id)
                .limit(2)
            ).all()
        exact = [r for r in rows if r.run_id == ref]
        if exact:
            return _record(exact[0])
        if not rows:
            raise RunError(f"no reconciliation run {ref!r}")
        if len(rows) > 1:
            raise RunError(f"run id {ref!r} is ambiguous: give more characters")
        return _record(rows[0])

    def history(self, *, limit: int = 50, system: str | None = None) -> list[dict[str, Any]]:
        """Runs, newest first, with accuracy and its change from the run before (same systems)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(runs_t).order_by(runs_t.c.as_of.desc(), runs_t.c.id.desc())
            ).all()
            approved = {
                r.run_pk: r.approver
                for r in conn.execute(select(approvals_t.c.run_pk, approvals_t.c.approver))
            }
        out: list[dict[str, Any]] = []
        records = [_record(r) for r in rows]
        if system:
            records = [r for r in records if system in r.systems]
        for index, run in enumerate(records):
            previous = next((p for p in records[index + 1 :] if p.systems == run.systems), None)
            change = None
            if (
                previous is not None
                and previous.accuracy_pct is not None
                and run.accuracy_pct is not None
            ):
                change = run.accuracy_pct - previous.accuracy_pct
            out.append(
                {
                    "run_id": run.run_id,
                    "as_of": run.as_of,
                    "systems": run.systems,
                    "runner": run.runner,
                    "lines": run.lines,
                    "matched": run.matched,
                    "quantity_mismatch": run.summary.get("quantity_mismatch"),
                    "missing": run.summary.get("missing_lines"),
                    "accuracy_pct": run.accuracy_pct,
                    "accuracy_change": change,
                    "variance_value": run.variance_value,
                    "approved_by": approved.get(run.pk),
                }
            )
            if len(out) >= limit:
                break
        return out

    def inputs(self, run: RunRecord) -> list[dict[str, Any]]:
        """The run's inputs with their hashes."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(inputs_t, snapshots_t.c.stored_path)
                .join(snapshots_t, snapshots_t.c.id == inputs_t.c.snapshot_pk)
                .where(inputs_t.c.run_pk == run.pk)
                .order_by(inputs_t.c.id)
            ).all()
        return [
            {
                "system": r.system,
                "source": r.source,
                "kind": r.kind,
                "sha256": r.sha256,
                "rows": r.rows,
                "unmapped": r.unmapped,
                "lot_level": bool(r.lot_level),
                "as_of": r.as_of.isoformat() if r.as_of else None,
                "mapping_version": r.mapping_version,
                "stored_path": r.stored_path,
            }
            for r in rows
        ]

    def lines(self, run: RunRecord) -> list[Line]:
        """The run's differing lines (exact matches are only counted), in report order."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(lines_t).where(lines_t.c.run_pk == run.pk).order_by(lines_t.c.position)
            ).all()
        return [_line_from_row(r, run.lot_level) for r in rows]

    def resolutions(self, run: RunRecord, *, history: bool = False) -> dict[str, dict[str, Any]]:
        """Line key → its latest resolution (``history``: every resolution, oldest first)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(resolutions_t)
                .where(resolutions_t.c.run_pk == run.pk)
                .order_by(resolutions_t.c.id)
            ).all()
        latest: dict[str, dict[str, Any]] = {}
        for r in rows:
            entry = {
                "material": r.material,
                "location": r.location,
                "lot": r.lot or None,
                "resolution": r.resolution,
                "note": r.note,
                "by": r.resolved_by,
                "at": r.created_at.isoformat(),
            }
            key = join_key(r.material, r.location, r.lot)
            if history:
                latest.setdefault(key, {"history": []})["history"].append(entry)
            else:
                latest[key] = entry
        return latest

    def approvals(self, run: RunRecord) -> list[dict[str, Any]]:
        """The run's approvals (at most one)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(approvals_t).where(approvals_t.c.run_pk == run.pk).order_by(approvals_t.c.id)
            ).all()
        return [
            {
                "approver": r.approver,
                "note": r.note,
                "open_lines": r.open_lines,
                "at": r.created_at.isoformat(),
            }
            for r in rows
        ]

    def open_lines(self, run: RunRecord) -> list[Line]:
        """Differences (outside tolerance or missing) with no resolution, or resolved ``open``."""
        resolutions = self.resolutions(run)
        return [
            line
            for line in self.lines(run)
            if line.status != MATCH
            and resolutions.get(line.key, {}).get("resolution", "open") == "open"
        ]

    def count(self) -> int:
        """How many runs are stored."""
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(runs_t)).scalar_one())

    def report(self, run_ref: str) -> Report:
        """The report of a stored run with its resolutions and approval (differing lines only;
        the exact matches are counted and listed in the run's original report files)."""
        run = self.get(run_ref)
        lines = self.lines(run)
        return Report(
            run_id=run.run_id,
            as_of=run.as_of,
            systems=run.systems,
            lot_level=run.lot_level,
            tolerance=run.parameters.get("tolerance", {}),
            summary=run.summary,
            by_location=run.by_location,
            differences=lambda: iter(lines),
            line_count=len(lines),
            unmapped=run.unmapped,
            inputs=self.inputs(run),
            generated_at=utcnow(),
            runner=run.runner,
            resolutions=self.resolutions(run),
            approvals=self.approvals(run),
            omitted_exact=run.lines - len(lines),
            report_hashes=run.reports,
        )


def _line_row(run_pk: int, position: int, line: Line) -> dict[str, Any]:
    return {
        "run_pk": run_pk,
        "position": position,
        "material": line.material,
        "location": line.location,
        "lot": line.lot or "",
        "uom": line.uom,
        "description": line.description,
        "status": line.status,
        "quantities": json.dumps(
            {s: None if q is None else format_quantity(q) for s, q in line.quantities.items()}
        ),
        "variance": line.variance,
        "variance_value": line.variance_value,
        "within_tolerance": line.within_tolerance,
        "tolerance": line.tolerance[:80],
        "in_transit": json.dumps({s: format_quantity(q) for s, q in line.in_transit.items()}),
        "transit_refs": json.dumps(line.transit_refs, ensure_ascii=False),
        "explained_by": line.explained_by,
    }


def _line_from_row(row: Any, lot_level: bool) -> Line:
    quantities = {
        s: None if q is None else parse_quantity(q) for s, q in json.loads(row.quantities).items()
    }
    systems = list(quantities)
    reference = quantities[systems[0]] or Decimal(0)
    return Line(
        material=row.material,
        location=row.location,
        lot=row.lot if lot_level else None,
        uom=row.uom,
        quantities=quantities,
        status=row.status,
        variance=row.variance,
        variance_value=row.variance_value,
        within_tolerance=bool(row.within_tolerance),
        description=row.description,
        variances={s: (quantities[s] or Decimal(0)) - reference for s in systems[1:]},
        in_transit={s: parse_quantity(q) for s, q in json.loads(row.in_transit).items()},
        explained_by=row.explained_by,
        transit_refs=json.loads(row.transit_refs),
        tolerance=row.tolerance,
    )


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
