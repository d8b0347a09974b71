"""``conveyor demo``: a plant in a box (``conveyor.demo``) — the ERP, MES and WMS simulated, the hub
between them, one shift played and reconciled in well under a minute."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import Any

import click

from conveyor.cli.common import AppContext, pass_app


def story_screen(summary: Any) -> list[str]:
    """The end of the run as a plant manager reads it: where the report is, the accuracy, and
    each line that differs with its explanation."""
    accuracy = "n/a" if summary.accuracy_pct is None else f"{summary.accuracy_pct:.2f} %"
    out = [
        "",
        f"Reconciliation {summary.erp} · WMS · hub: inventory record accuracy {accuracy}",
        f"  report: {summary.report_dir}/ (report.html, report.xlsx, report.csv, report.json)",
    ]
    for line in summary.lines:
        figures = ", ".join(
            f"{system} {'—' if quantity is None else quantity}"
            for system, quantity in line["quantities"].items()
        )
        lot = f" lot {line['lot']}" if line["lot"] else ""
        value = f", value {line['variance_value']}" if line["variance_value"] else ""
        out.append(
            f"  {line['material']} @ {line['location']}{lot}: {figures} {line['uom']} — "
            f"{line['status']}{value}"
        )
        out.append(f"      why: {line['explanation']}")
    checks = summary.checks
    out.append(
        f"  ERP holds {checks['erp_documents']} documents, the ledger {checks['ledger_delivered']} "
        f"delivered postings: {'the same' if checks['same_documents'] else 'DIFFERENT'}; "
        f"posted twice: {', '.join(checks['posted_twice']) or 'none'}"
    )
    out.append(
        f"  orders {summary.orders} · movements {summary.movements} · postings "
        f"{summary.postings} · parked {summary.parked} · replayed {summary.replayed} · "
        f"lost answers recovered {summary.lost_answers_recovered} · alerts {summary.alerts} · "
        f"{summary.seconds:.1f} s"
    )
    return out


@click.command("demo")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Run directory (new or empty). Default: ./conveyor-demo/run-<UTC time>.",
)
@click.option(
    "--erp",
    type=click.Choice(["kingdee", "sap", "yonbip"]),
    default="kingdee",
    show_default=True,
    help="Which ERP simulator plays the ERP.",
)
@click.option("--broker", default=None, help="amqp://… : RabbitMQ (own queue prefix per run).")
@click.option("--db", default=None, help="postgresql://… : a fresh database on that server.")
@click.option(
    "--json", "as_json", is_flag=True, help="End with one JSON object (progress: stderr)."
)
@click.option(
    "--keep-running", is_flag=True, help="Leave the hub and the simulators up until Ctrl-C."
)
@pass_app
def demo(
    app: AppContext,
    out: Path | None,
    erp: str,
    broker: str | None,
    db: str | None,
    as_json: bool,
    keep_running: bool,
) -> None:
    """A plant in a box: simulators for the ERP, MES and WMS, the hub between them (as `conveyor
    up` runs it), one shift of plant 1000 played and reconciled.

    Progress goes one line per step; the run ends with where the report is, the accuracy and the
    lines that differ with their explanation. Everything is written under the run directory.
    """
    from conveyor.demo.run import SUMMARY_FIELDS, Demo, DemoError, DemoOptions

    as_json = as_json or app.as_json

    def say(text: str) -> None:
        click.echo(text, err=as_json)

    options = DemoOptions(out=out, erp=erp, broker=broker, db=db, keep_running=keep_running)
    try:
        run = Demo(options, say)
        summary = run.run()
    except DemoError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        figures = summary.as_dict()
        shown = {name: figures[name] for name in SUMMARY_FIELDS}
        shown.update({k: v for k, v in figures.items() if k not in SUMMARY_FIELDS})
        click.echo(json.dumps(shown, ensure_ascii=False))
    else:
        for line in story_screen(summary):
            click.echo(line)
    if keep_running:
        _keep_running(run, say)


def _keep_running(run: Any, say: Any) -> None:
    """Print where everything is, then wait for Ctrl-C (or SIGTERM) and stop in order."""
    say("")
    say(f"hub API:      http://127.0.0.1:{run.port}/docs (OpenAPI at /openapi.json)")
    say(f"ingest token: {run.token}  (Authorization: Bearer …, scope ingest)")
    say(f"{run.erp.kind} simulator: {run.erp.url} (what it holds: {run.erp.url}/_sim/documents)")
    say(f"project:      {run.run_dir / 'plant'} (conveyor --project … status / stock / parked)")
    say("Ctrl-C stops the hub and the simulators.")
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: run.machine.stop())
    try:
        while run.machine is not None and not run.machine.stopping.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        run.stop()
        sys.stdout.flush()


def register(main: click.Group) -> None:
    """Add ``demo`` to the command line."""
    main.add_command(demo)
