"""``conveyor reconcile``: compare stock between systems and the hub, write auditor reports, and
keep the record (``history``, ``show``, ``resolve``, ``approve``, ``verify``, ``alerts``).

Exit codes of a run: 0 when it completed, whatever it found (1 with ``--fail-on-mismatch`` when a
line is outside tolerance or missing somewhere); 2 when it could not run (bad option, file,
configuration or ledger).
"""

from __future__ import annotations

import getpass
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from conveyor.cli.common import AppContext, emit_json, emit_table, pass_app

if TYPE_CHECKING:
    from conveyor.reconcile.runs import RunStore
    from conveyor.reconcile.sources import Progress, Snapshot


class RunFailed(click.ClickException):
    """The reconciliation could not run (exit 2)."""

    exit_code = 2


def _default_runner() -> str:
    try:
        return os.environ.get("CONVEYOR_USER") or getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _parse_as_of(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not an ISO 8601 time (e.g. 2024-11-21T18:00:00+08:00)",
            param_hint="--as-of",
        ) from None
    return moment if moment.tzinfo else moment.astimezone()


def _parse_snapshots(items: tuple[str, ...]) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for item in items:
        system, sep, file = item.partition("=")
        if not sep or not system.strip() or not file.strip():
            raise click.BadParameter(f"{item!r}: expected SYSTEM=FILE", param_hint="--snapshot")
        path = Path(file.strip()).expanduser()
        if not path.is_file():
            raise click.BadParameter(f"{file!r} is not a file", param_hint="--snapshot")
        if system.strip() in out:
            raise click.BadParameter(f"two files for {system!r}", param_hint="--snapshot")
        out[system.strip()] = path
    return out


def _store(app: AppContext) -> RunStore:
    from sqlalchemy import inspect

    from conveyor.reconcile.runs import RunStore

    engine = app.ledger.engine
    if not inspect(engine).has_table("reconciliation_runs"):
        raise RunFailed("the ledger has no reconciliation tables yet: run `conveyor db upgrade`")
    return RunStore(engine)


class _Bars:
    """A rich progress bar per snapshot on stderr (only on a terminal)."""

    def __init__(self, enabled: bool) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TextColumn("{task.fields[unit]}"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            disable=not enabled,
            transient=False,
        )

    def __enter__(self) -> _Bars:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(None, None, None)

    def __call__(self, snapshot: Snapshot) -> Progress:
        from conveyor.reconcile.sources import CanonicalCsvSnapshot

        in_bytes = isinstance(snapshot, CanonicalCsvSnapshot)
        task = self.progress.add_task(
            f"{snapshot.system:<10} {Path(snapshot.source).name[:40]}",
            total=snapshot.size if in_bytes else None,
            unit="" if in_bytes else "rows",
        )
        progress = self.progress

        def advance(amount: int) -> None:
            progress.advance(task, amount)

        return advance


@click.group("reconcile", invoke_without_command=True)
@click.option(
    "--systems",
    metavar="A,B[,C]",
    help="Systems to compare, comma-separated; the first is the reference (book stock). "
    "`hub` is the hub's own stock positions.",
)
@click.option(
    "--snapshot",
    "snapshot_items",
    multiple=True,
    metavar="SYSTEM=FILE",
    help="Take SYSTEM's stock from FILE: a canonical stock_snapshot (JSON, or CSV with "
    "material,location,lot,quantity,uom) or the system's own export (through its mapping). "
    "Without it: the system's connector.",
)
@click.option(
    "--as-of",
    "as_of_text",
    metavar="TIME",
    help="Reconcile as of TIME (ISO 8601; without an offset: local time). Default: the "
    "snapshots' own time, else now. The hub's stock as of TIME counts the movements that "
    "occurred by TIME (their occurred_at), whenever the hub accepted them.",
)
@click.option(
    "--tolerance",
    "tolerances",
    multiple=True,
    metavar="[material:CODE=|group:NAME=]N[,P%]",
    help="Allowed difference: absolute N (base unit) and/or P% of the reference; repeatable; "
    "on top of reconciliation.tolerance in conveyor.yaml.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for report.html, report.xlsx, report.csv and report.json.",
)
@click.option(
    "--runner",
    default=_default_runner,
    show_default="CONVEYOR_USER or login name",
    help="Who runs the reconciliation (recorded; may not approve it).",
)
@click.option(
    "--fail-on-mismatch",
    is_flag=True,
    help="Exit 1 when a line is outside tolerance or missing somewhere.",
)
@click.option("--no-alerts", is_flag=True, help="Do not raise stock alerts after the run.")
@click.option("--no-store", is_flag=True, help="Do not keep compressed copies of the snapshots.")
@click.option(
    "--html-lines",
    type=click.IntRange(min=0),
    default=2000,
    show_default=True,
    help="Lines listed in report.html (largest variance first).",
)
@click.option(
    "--xlsx-lines",
    type=click.IntRange(min=0),
    default=100_000,
    show_default=True,
    help="Lines listed in report.xlsx (largest variance first).",
)
@click.pass_context
def reconcile(
    ctx: click.Context,
    systems: str | None,
    snapshot_items: tuple[str, ...],
    as_of_text: str | None,
    tolerances: tuple[str, ...],
    out: Path | None,
    runner: str,
    fail_on_mismatch: bool,
    no_alerts: bool,
    no_store: bool,
    html_lines: int,
    xlsx_lines: int,
) -> None:
    """Reconcile stock: `conveyor reconcile --systems sap,wms,hub --out reports/2024-11-21`.

    Compares per material × location × lot (material × location when a system does not track
    lots), classifies each line match / quantity_mismatch / missing_in:<system>, values the
    variance, shows movements still in transit, writes the reports, stores the run and raises
    stock alerts. Subcommands work on stored runs.
    """
    if ctx.invoked_subcommand is not None:
        return
    app = ctx.find_object(AppContext) or AppContext(project_arg=None, as_json=False)
    if not systems or out is None:
        raise click.UsageError("give --systems and --out (or a subcommand: see --help)")
    names = [s.strip() for s in systems.split(",") if s.strip()]
    options_snapshots = _parse_snapshots(snapshot_items)
    as_of = _parse_as_of(as_of_text)
    from conveyor.cli.runtime import say_stand_ins

    from_connectors = [n for n in names if n not in options_snapshots]
    stand_ins = say_stand_ins(app.project, from_connectors, what="snapshot", quiet=app.as_json)
    outcome = _run(
        app,
        names,
        options_snapshots,
        as_of,
        tolerances,
        out,
        runner,
        alerts=not no_alerts,
        store=not no_store,
        html_lines=html_lines,
        xlsx_lines=xlsx_lines,
    )
    summary = outcome.result.summary
    if app.as_json:
        emit_json(
            {
                "run_id": outcome.run_id,
                "as_of": outcome.record.as_of,
                "systems": outcome.result.systems,
                "summary": summary.as_dict(),
                "out": str(outcome.out),
                "reports": outcome.reports,
                "inputs": [s.info() for s in outcome.snapshots],
                "alerts": sum(1 for a in outcome.alerts if a.status == "accepted"),
                "stand_ins": stand_ins,
            }
        )
    else:
        _print_summary(outcome)
    if fail_on_mismatch and outcome.result.has_differences:
        sys.exit(1)


def _run(
    app: AppContext,
    names: list[str],
    snapshots: dict[str, Path],
    as_of: datetime | None,
    tolerances: tuple[str, ...],
    out: Path,
    runner: str,
    **options: Any,
) -> Any:
    from conveyor.errors import ConveyorError
    from conveyor.reconcile.service import RunOptions, run_reconciliation

    _store(app)
    run_options = RunOptions(
        systems=names,
        out=out,
        snapshots=snapshots,
        as_of=as_of,
        tolerance=tolerances,
        runner=runner,
        html_lines=options["html_lines"],
        xlsx_lines=options["xlsx_lines"],
        store_snapshots=options["store"],
        alerts=options["alerts"],
    )
    show = sys.stderr.isatty() and not app.as_json
    try:
        with _Bars(show) as bars:
            return run_reconciliation(app.project, app.ledger, run_options, progress=bars)
    except (ConveyorError, OSError, ValueError) as exc:
        raise RunFailed(str(exc)) from None


def _print_summary(outcome: Any) -> None:
    from conveyor.reconcile.reports.html_report import format_money, format_percent

    s = outcome.result.summary
    rows: list[tuple[str, object]] = [
        ("run", outcome.run_id),
        ("as of", outcome.record.as_of.isoformat()),
        ("systems", ", ".join(outcome.result.systems)),
        (
            "compared per",
            "material × location × lot" if outcome.result.lot_level else "material × location",
        ),
        ("lines", s.lines),
        ("matched", f"{s.matched} ({s.exact} exact, {s.within_tolerance} within tolerance)"),
        ("quantity_mismatch", s.quantity_mismatch),
    ]
    rows += [(f"missing_in:{name}", n) for name, n in s.missing.items()]
    rows += [
        ("explained by in-transit", s.explained_in_transit),
        ("accuracy", format_percent(s.accuracy_pct)),
        (
            "variance value",
            format_money(s.variance_value)
            + (
                f" ({s.lines_without_value} lines without unit cost)"
                if s.lines_without_value
                else ""
            ),
        ),
        ("unmapped rows", s.unmapped),
        ("alerts raised", sum(1 for a in outcome.alerts if a.status == "accepted")),
    ]
    emit_table("Reconciliation", ["", "value"], rows)
    for name in sorted(outcome.reports):
        click.echo(f"  {outcome.out / name}")


@reconcile.command("history")
@click.option("--system", help="Only runs that include this system.")
@click.option("--limit", type=click.IntRange(min=1), default=30, show_default=True)
@pass_app
def history(app: AppContext, system: str | None, limit: int) -> None:
    """Runs, newest first, with inventory record accuracy and its change (the trend)."""
    from conveyor.reconcile.reports.html_report import format_money

    runs = _store(app).history(limit=limit, system=system)
    if app.as_json:
        emit_json(runs)
        return
    emit_table(
        "Reconciliation runs",
        [
            "run",
            "as of",
            "systems",
            "lines",
            "accuracy %",
            "change",
            "mismatch",
            "missing",
            "variance value",
            "approved by",
        ],
        [
            (
                r["run_id"][:8],
                r["as_of"].strftime("%Y-%m-%d %H:%M"),
                ",".join(r["systems"]),
                r["lines"],
                r["accuracy_pct"],
                "" if r["accuracy_change"] is None else f"{r['accuracy_change']:+}",
                r["quantity_mismatch"],
                r["missing"],
                format_money(r["variance_value"]),
                r["approved_by"] or "",
            )
            for r in runs
        ],
        right=["lines", "accuracy %", "change", "mismatch", "missing", "variance value"],
    )
    trend = [r["accuracy_pct"] for r in reversed(runs) if r["accuracy_pct"] is not None]
    if len(trend) > 1:
        click.echo("accuracy, oldest → newest: " + _sparkline([float(t) for t in trend]))


def _sparkline(values: list[float]) -> str:
    bars = "▁▂▃▄▅▆▇█"
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    return "".join(bars[int((v - low) / span * (len(bars) - 1))] for v in values) + (
        f"  {values[0]:.2f} → {values[-1]:.2f} %"
    )


@reconcile.command("show")
@click.argument("run_id")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write the run's reports again, with resolutions and approval, into this folder.",
)
@click.option(
    "--lines",
    "max_lines",
    type=click.IntRange(min=0),
    default=20,
    show_default=True,
    help="Differing lines to print.",
)
@pass_app
def show(app: AppContext, run_id: str, out: Path | None, max_lines: int) -> None:
    """A stored run: summary, inputs, differences with their resolutions, approval."""
    from conveyor.reconcile.reports import write_reports
    from conveyor.reconcile.runs import RunError

    store = _store(app)
    try:
        report = store.report(run_id)
    except RunError as exc:
        raise RunFailed(str(exc)) from None
    written: dict[str, str] = {}
    if out is not None:
        written = write_reports(report, out)
    lines = list(report.lines())
    if app.as_json:
        emit_json(
            {
                "run_id": report.run_id,
                "as_of": report.as_of,
                "systems": report.systems,
                "runner": report.runner,
                "summary": report.summary,
                "inputs": report.inputs,
                "reports": report.report_hashes,
                "resolutions": list(report.resolutions.values()),
                "approvals": report.approvals,
                "lines": [
                    {**line.as_dict(), "resolution": report.resolution(line)}
                    for line in lines[:max_lines]
                ],
                "written": written,
            }
        )
        return
    s = report.summary
    click.echo(
        f"run {report.run_id}  as of {report.as_of.isoformat()}  by {report.runner}\n"
        f"systems {', '.join(report.systems)}: {s['lines']} lines, {s['matched']} matched, "
        f"{s['quantity_mismatch']} mismatched, missing {s['missing']}, "
        f"accuracy {s['accuracy_pct']} %, variance value {s['variance_value']}"
    )
    for item in report.inputs:
        click.echo(
            f"  input {item['system']}: {item['source']} ({item['rows']} rows, "
            f"{item['unmapped']} unmapped) sha256 {item['sha256']}"
        )
    if report.approvals:
        for a in report.approvals:
            click.echo(
                f"approved by {a['approver']} at {a['at']}"
                + (f": {a['note']}" if a["note"] else "")
            )
    else:
        click.echo("not approved")
    emit_table(
        f"Differences ({len(lines)}, first {min(max_lines, len(lines))})",
        ["material", "location", "lot", *report.systems, "status", "variance", "resolution", "by"],
        [
            (
                line.material,
                line.location,
                line.lot or "",
                *(line.quantities.get(sys_) for sys_ in report.systems),
                line.status,
                line.variance,
                (report.resolution(line) or {}).get("resolution", ""),
                (report.resolution(line) or {}).get("by", ""),
            )
            for line in lines[:max_lines]
        ],
    )
    for name in sorted(written):
        click.echo(f"  {out / name if out else name}")


@reconcile.command("resolve")
@click.argument("run_id")
@click.option("--material", required=True)
@click.option("--location", required=True)
@click.option("--lot", default=None, help="The line's lot (omit for lines without one).")
@click.option(
    "--resolution",
    required=True,
    type=click.Choice(
        ["timing_difference", "counting_error", "posting_error", "master_data_error", "open"]
    ),
)
@click.option("--note", required=True, help="What was found.")
@click.option("--by", "by", required=True, help="Who classifies (not the run's runner).")
@pass_app
def resolve(
    app: AppContext,
    run_id: str,
    material: str,
    location: str,
    lot: str | None,
    resolution: str,
    note: str,
    by: str,
) -> None:
    """Classify one difference of a run (appended; the run itself never changes)."""
    from conveyor.reconcile.runs import RunError

    try:
        entry = _store(app).resolve(
            run_id,
            material=material,
            location=location,
            lot=lot,
            resolution=resolution,
            note=note,
            by=by,
        )
    except RunError as exc:
        raise RunFailed(str(exc)) from None
    if app.as_json:
        emit_json(entry)
    else:
        click.echo(
            f"{entry['material']} @ {entry['location']}"
            + (f" lot {entry['lot']}" if entry["lot"] else "")
            + f" ({entry['status']}): {entry['resolution']} by {entry['by']}"
        )


@reconcile.command("approve")
@click.argument("run_id")
@click.option("--by", "by", required=True, help="The approver (not the run's runner).")
@click.option("--note", default="", help="Remark recorded with the approval.")
@click.option(
    "--allow-open",
    is_flag=True,
    help="Approve although some differences have no closing resolution (recorded).",
)
@pass_app
def approve(app: AppContext, run_id: str, by: str, note: str, allow_open: bool) -> None:
    """Sign a run off (appended; refused for its runner and while differences are open)."""
    from conveyor.reconcile.runs import RunError

    try:
        entry = _store(app).approve(run_id, approver=by, note=note, allow_open=allow_open)
    except RunError as exc:
        raise RunFailed(str(exc)) from None
    if app.as_json:
        emit_json(entry)
    else:
        click.echo(
            f"run {entry['run_id']} approved by {entry['approver']}"
            + (f" with {entry['open_lines']} open difference(s)" if entry["open_lines"] else "")
        )


@reconcile.command("verify")
@click.argument("run_id")
@click.argument("folder", required=False, type=click.Path(file_okay=False, path_type=Path))
@pass_app
def verify(app: AppContext, run_id: str, folder: Path | None) -> None:
    """Check a run's report files against the hashes stored with it (exit 1 on any change)."""
    import hashlib

    from conveyor.reconcile.runs import RunError

    try:
        run = _store(app).get(run_id)
    except RunError as exc:
        raise RunFailed(str(exc)) from None
    where = folder or (Path(run.out_dir) if run.out_dir else None)
    if where is None:
        raise RunFailed("the run has no report folder: give FOLDER")
    results = []
    for name, expected in sorted(run.reports.items()):
        path = where / name
        if not path.is_file():
            results.append({"file": name, "status": "missing"})
            continue
        with path.open("rb") as fh:
            actual = hashlib.file_digest(fh, "sha256").hexdigest()
        results.append({"file": name, "status": "ok" if actual == expected else "changed"})
    bad = [r for r in results if r["status"] != "ok"]
    if app.as_json:
        emit_json({"run_id": run.run_id, "folder": str(where), "files": results})
    else:
        for r in results:
            click.echo(f"{r['status']:>8}  {where / r['file']}")
    if bad:
        sys.exit(1)


@reconcile.command("alerts")
@click.option(
    "--all",
    "everything",
    is_flag=True,
    help="Check every material, not only those moved since the last check.",
)
@pass_app
def alerts(app: AppContext, everything: bool) -> None:
    """Raise stock alerts (safety stock, short components) for stock that moved since the last
    check; they route like any other message."""
    from conveyor.reconcile.alerts import check_moved, raise_alerts
    from conveyor.reconcile.reference import load_reference

    reference = load_reference(app.project)
    results = (
        raise_alerts(app.ledger, reference) if everything else check_moved(app.ledger, reference)
    )
    accepted = [r for r in results if r.status == "accepted"]
    if app.as_json:
        emit_json(
            {
                "accepted": len(accepted),
                "duplicate": len(results) - len(accepted),
                "alerts": [r.as_dict() for r in results],
            }
        )
    else:
        for r in accepted:
            click.echo(f"alert {r.key} → {', '.join(r.targets) or 'no route'}")
        click.echo(f"{len(accepted)} new alert(s), {len(results) - len(accepted)} already raised")


def register(main: click.Group) -> None:
    """Add the reconcile commands to ``main``."""
    main.add_command(reconcile)
