"""One reconciliation run from start to end: take the snapshots, compare, write the reports, store
the run, raise stock alerts. The CLI and the Airflow DAG call ``run_reconciliation``."""

from __future__ import annotations

import gc
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor.errors import ConfigError
from conveyor.ledger.models import utcnow
from conveyor.quantity import quantity_arithmetic
from conveyor.reconcile.lines import Result, Transit
from conveyor.reconcile.reference import Reference, load_reference
from conveyor.reconcile.sources import (
    CanonicalCsvSnapshot,
    HubSnapshot,
    Progress,
    Snapshot,
    SnapshotStore,
    connector_snapshot,
    open_snapshot_file,
)
from conveyor.reconcile.tolerance import Tolerance

if TYPE_CHECKING:
    from conveyor.config import Project
    from conveyor.ledger import AcceptResult, Ledger
    from conveyor.reconcile.runs import RunRecord

HUB = "hub"
"""The system name of the hub's own stock positions."""

ProgressFactory = Callable[[Snapshot], Progress | None]


@dataclass
class RunOptions:
    """What to reconcile and how."""

    systems: Sequence[str]
    out: Path
    snapshots: Mapping[str, Path] = field(default_factory=dict)
    as_of: datetime | None = None
    tolerance: Sequence[str] = ()
    runner: str = "unknown"
    html_lines: int = 2000
    xlsx_lines: int = 100_000
    store_snapshots: bool = True
    alerts: bool = True


@dataclass
class RunOutcome:
    """What a run produced."""

    run_id: str
    result: Result
    snapshots: list[Snapshot]
    reports: dict[str, str]
    out: Path
    record: RunRecord
    alerts: list[AcceptResult] = field(default_factory=list)


def project_tolerance(project: Project, specs: Sequence[str] = ()) -> Tolerance:
    """``reconciliation.tolerance`` of ``conveyor.yaml`` with command-line specs on top."""
    section = project.raw.get("reconciliation") or {}
    return Tolerance.from_dict(section.get("tolerance")).with_specs(specs)


def open_snapshots(
    project: Project,
    ledger: Ledger,
    options: RunOptions,
    reference: Reference,
) -> list[Snapshot]:
    """A snapshot per system: its file when one is given, else its connector (or the hub's
    ledger for the system named ``hub``)."""
    from conveyor.runtime import registry

    unknown = set(options.snapshots) - set(options.systems)
    if unknown:
        raise ConfigError(f"--snapshot for a system not in --systems: {', '.join(sorted(unknown))}")
    out: list[Snapshot] = []
    for name in options.systems:
        declared = project.systems.get(name)
        tracks_lots = declared.tracks_lots if declared is not None else None
        path = options.snapshots.get(name)
        if path is not None:
            snapshot = open_snapshot_file(
                name, path, reference=reference, tracks_lots=tracks_lots, as_of=options.as_of
            )
        elif name == HUB:
            snapshot = HubSnapshot(ledger.engine, as_of=options.as_of, system=HUB)
        else:
            system = project.system(name)
            connector = registry.create(system)
            if not connector.supports("snapshot"):
                raise ConfigError(
                    f"system {name!r} ({connector.kind}) gives no stock snapshot: "
                    f"give one with --snapshot {name}=FILE"
                )
            snapshot = connector_snapshot(
                name,
                connector,
                reference=reference,
                tracks_lots=tracks_lots,
                as_of=options.as_of,
            )
        out.append(snapshot)
    return out


@quantity_arithmetic  # sums and variances keep all 38 digits of a quantity
def compare_snapshots(
    snapshots: Sequence[Snapshot],
    *,
    systems: Sequence[str],
    tolerance: Tolerance,
    reference: Reference | None,
    transit: Callable[[datetime, dict[str, datetime]], Transit] | None = None,
    as_of: datetime | None = None,
    progress: ProgressFactory | None = None,
    store: SnapshotStore | None = None,
) -> tuple[Result, datetime]:
    """Read every snapshot into one comparison and classify it; returns the result and the
    run's ``as_of`` (given, else the latest snapshot time, else now). The hub is read last, at
    that ``as_of``: by the movements that occurred by then (see ``sources.hub``)."""
    from conveyor.reconcile.compare import Comparison

    declared_lotless = any(s.tracks_lots is False for s in snapshots)
    comparison = Comparison(systems, lot_level=not declared_lotless)
    ordered = sorted(snapshots, key=lambda s: isinstance(s, HubSnapshot))
    with _no_cyclic_gc():
        for snapshot in ordered:
            if isinstance(snapshot, HubSnapshot) and as_of is None:
                dated = [s.as_of for s in snapshots if s.as_of is not None and s is not snapshot]
                if dated:
                    snapshot.as_of = max(dated)
            callback = progress(snapshot) if progress is not None else None
            # by columns when the file allows it, else row by row (bad rows, units to convert)
            if not (
                isinstance(snapshot, CanonicalCsvSnapshot)
                and comparison.add_file(snapshot, callback, store)
            ):
                for chunk in snapshot.chunks(callback, store):
                    comparison.add(snapshot.system, chunk, source=snapshot.source)
            comparison.unmapped.extend(snapshot.unmapped)
        if comparison.lot_level and any(not s.lot_level for s in snapshots):
            comparison.collapse_lots()
    run_as_of = (
        as_of or max((s.as_of for s in snapshots if s.as_of is not None), default=None) or utcnow()
    )
    for snapshot in snapshots:
        if snapshot.as_of is None:
            snapshot.as_of = run_as_of
    moving = None
    if transit is not None:
        moving = transit(run_as_of, {s.system: s.as_of or run_as_of for s in snapshots})
    with _no_cyclic_gc():
        result = comparison.result(tolerance=tolerance, reference=reference, transit=moving)
    return result, run_as_of


def run_reconciliation(
    project: Project,
    ledger: Ledger,
    options: RunOptions,
    *,
    reference: Reference | None = None,
    progress: ProgressFactory | None = None,
) -> RunOutcome:
    """Run one reconciliation and store it (see the module docstring)."""
    from conveyor.reconcile.reports import report_from_result, write_reports
    from conveyor.reconcile.runs import RunStore
    from conveyor.reconcile.transit import in_transit

    if len(options.systems) < 2:
        raise ConfigError("reconcile at least two systems (--systems A,B[,C])")
    if len(set(options.systems)) != len(options.systems):
        raise ConfigError(f"a system is named twice in --systems {','.join(options.systems)}")
    started = utcnow()
    run_id = str(uuid.uuid4())
    reference = reference if reference is not None else load_reference(project)
    tolerance = project_tolerance(project, options.tolerance)
    snapshots = open_snapshots(project, ledger, options, reference)
    store = (
        SnapshotStore(project.root / ".conveyor" / "snapshots") if options.store_snapshots else None
    )
    others = [s for s in options.systems if s != HUB]

    def transit(as_of: datetime, times: dict[str, datetime]) -> Transit:
        return in_transit(ledger.engine, others, as_of=as_of, snapshot_times=times)

    result, as_of = compare_snapshots(
        snapshots,
        systems=options.systems,
        tolerance=tolerance,
        reference=reference,
        transit=transit if others else None,
        as_of=options.as_of,
        progress=progress,
        store=store,
    )
    inputs = [s.info() for s in snapshots]
    report = report_from_result(
        result,
        run_id=run_id,
        as_of=as_of,
        inputs=inputs,
        generated_at=datetime.now(UTC),
        runner=options.runner,
    )
    hashes = write_reports(
        report, options.out, html_lines=options.html_lines, xlsx_lines=options.xlsx_lines
    )
    parameters: dict[str, Any] = {
        "tolerance": tolerance.as_dict(),
        "systems": list(options.systems),
        "snapshots": {k: str(v) for k, v in options.snapshots.items()},
        "as_of": options.as_of.isoformat() if options.as_of else None,
        "lot_level": result.lot_level,
        "html_lines": options.html_lines,
        "xlsx_lines": options.xlsx_lines,
    }
    record = RunStore(ledger.engine).record(
        run_id=run_id,
        as_of=as_of,
        started_at=started,
        runner=options.runner,
        result=result,
        snapshots=snapshots,
        parameters=parameters,
        out_dir=options.out,
        reports=hashes,
    )
    alerts: list[AcceptResult] = []
    if options.alerts:
        from conveyor.reconcile.alerts import raise_alerts

        alerts = raise_alerts(ledger, reference, as_of=as_of, run_id=run_id)
    gc.unfreeze()  # the run is over: let the collector see everything again
    return RunOutcome(run_id, result, snapshots, hashes, options.out, record, alerts)


@contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while millions of small lists are made, and move what
    exists afterwards out of its reach (``gc.freeze``): none of these lists forms a cycle (they
    are freed by reference counting as usual), and each full collection would walk every one of
    them again — loading 3 × 1,000,000 rows takes about twice as long with it running.
    ``run_reconciliation`` unfreezes when the run is done."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()
