"""Ledger commands: ``db upgrade``, ``accept``, ``stock``, ``trace``."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from conveyor.cli.common import (
    AppContext,
    check_alerts,
    echo,
    emit_json,
    emit_table,
    pass_app,
    render_value,
)
from conveyor.redact import clip

BATCH = 1000
TABLE_SUFFIXES = (".csv", ".tsv", ".txt", ".xls", ".xlsx")
"""Files that hold a system's rows, never canonical messages: ``ingest`` maps them."""


@click.group("db")
def db() -> None:
    """The ledger database."""


@db.command("upgrade")
@pass_app
def db_upgrade(app: AppContext) -> None:
    """Create or migrate the ledger (SQLite under .conveyor/ by default, or CONVEYOR_DB_URL)."""
    from conveyor.ledger.db import current_revision

    ledger = app.open_ledger()
    ledger.upgrade()
    revision = current_revision(ledger.engine)
    url = ledger.engine.url.render_as_string(hide_password=True)
    if app.as_json:
        emit_json({"url": url, "revision": revision})
    else:
        echo(f"ledger at {url} is at revision {revision}")


@click.command("accept")
@click.argument(
    "files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@pass_app
def accept(app: AppContext, files: tuple[Path, ...]) -> None:
    """Accept canonical messages from JSON or JSON-lines FILES.

    Prints accepted, duplicate, conflict and rejected counts and, for each rejected record or
    conflict (a stored business key offered with other content), the file, line and reason. Both
    are parked, not lost. Exit 1 when any record was rejected or in conflict.
    """
    from conveyor.intake import accept_files
    from conveyor.mapping.readers import is_json_file
    from conveyor.redact import safe_text

    for path in files:
        if not is_json_file(path) and path.suffix.lower() in TABLE_SUFFIXES:
            raise click.ClickException(
                f"{path} is a {path.suffix.lstrip('.').upper()} file: accept takes canonical "
                "JSON messages; map a system's records with: conveyor ingest --system SYSTEM "
                f"--type TYPE {path}"
            )
    totals, rejected = accept_files(app.ledger, files, batch_size=BATCH)
    alerts = check_alerts(app, totals["accepted"])
    if app.as_json:
        emit_json({**totals, "alerts": alerts, "rejected_records": rejected})
    else:
        limit = app.project.limits.max_echo_chars * 2
        for item in rejected:
            where = f"{item['file']}:{item['line']}"
            echo(f"{where}: {item['status']}: {safe_text(item['reason'], limit)}", err=True)
        counts = ", ".join(f"{status} {n}" for status, n in totals.items())
        click.echo(counts)
        if alerts:
            click.echo(f"stock alerts raised: {alerts}")
    sys.exit(1 if totals["rejected"] or totals["conflict"] else 0)


@click.command("stock")
@click.option("--material", help="Only this canonical material.")
@click.option("--location", help="Only this canonical location.")
@click.option("--lot", help="Only this lot.")
@click.option("--all", "include_zero", is_flag=True, help="Include positions that are zero.")
@pass_app
def stock(
    app: AppContext, material: str | None, location: str | None, lot: str | None, include_zero: bool
) -> None:
    """Current stock positions per material × location × lot, in base units."""
    positions = app.ledger.positions(
        material=material, location=location, lot=lot, include_zero=include_zero
    )
    if app.as_json:
        emit_json(
            [
                {
                    "material": p.material,
                    "location": p.location,
                    "lot": p.lot or None,
                    "quantity": p.quantity,
                    "uom": p.uom,
                    "updated_at": p.updated_at,
                }
                for p in positions
            ]
        )
        return
    emit_table(
        "Stock positions",
        ["material", "location", "lot", "quantity", "uom", "updated"],
        [
            (
                p.material,
                p.location,
                p.lot,
                p.quantity,
                p.uom,
                p.updated_at.strftime("%Y-%m-%d %H:%M:%S"),
            )
            for p in positions
        ],
        right=["quantity"],
    )


@click.command("trace")
@click.argument("term")
@pass_app
def trace(app: AppContext, term: str) -> None:
    """Everything the ledger knows about a message id, business key, order id or lot (with
    each delivery's notes: what the target said alongside the posting)."""
    from conveyor.redact import redact_value

    found = redact_value(app.ledger.trace(term))  # reasons may quote what a target answered
    if app.as_json:
        emit_json(found)
        return
    if not found["messages"] and not found["parked"]:
        echo(f"nothing known about {term!r}")
        sys.exit(1)
    for m in found["messages"]:
        echo(f"{m['type']} {m['source']}:{m['key']}  id={m['message_id']}")
        echo(
            f"  occurred {m['occurred_at'].isoformat()}  accepted {m['accepted_at'].isoformat()}"
            f"  mapping_version={m['mapping_version'] or '-'}"
        )
        if m["reversal_of"]:
            echo(f"  reverses {m['reversal_of']}")
        for change in m["stock_changes"]:
            sign = "+" if change["quantity"] > 0 else ""
            echo(
                f"  stock {change['material']} @ {change['location']} lot={change['lot'] or '-'}: "
                f"{sign}{render_value(change['quantity'])} {change['uom']}"
            )
        if not m["deliveries"]:
            echo("  routed nowhere (no route matched)" if m["routes"] == 0 else "  no deliveries")
        for d in m["deliveries"]:
            echo(
                f"  → {d['target']}: {d['status']} after {d['attempts']} attempt(s)"
                + (f", ref {d['external_ref']}" if d["external_ref"] else "")
                + (
                    f", last error: {d['last_error']}"
                    if d["last_error"] and d["status"] != "delivered"
                    else ""
                )
            )
            for note in d["notes"]:
                echo(f"      note: {note}")
    for p in found["parked"]:
        where = f"{p['file']}:{p['line']}" if p["file"] else (p["system"] or "-")
        echo(f"parked #{p['id']} ({p['stage']}, {p['status']}) {where}: {clip(p['reason'], 2000)}")


def register(main: click.Group) -> None:
    """Add the ledger commands to ``main``."""
    main.add_command(db)
    main.add_command(accept)
    main.add_command(stock)
    main.add_command(trace)
