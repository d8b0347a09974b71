"""``conveyor consume SYSTEM``: keep taking in what a receiving system holds (an AMQP queue, a
drop folder) pass after pass until SIGTERM or Ctrl-C — ``conveyor receive`` repeated, for a
long-running service.

A signal never interrupts a unit: the current pass finishes (every unit acknowledged only after
its commit) and the command exits 0. A pass that cannot reach the system (broker down) or the
ledger (database restarting) is logged and retried after a pause — what it had not committed was
not acknowledged, so the source offers it again; a configuration error stops the command.
"""

from __future__ import annotations

import signal
import sys
import threading
from typing import Any

import click

from conveyor.cli.common import (
    AppContext,
    check_alerts,
    database_problem,
    emit_json,
    ledger_unreachable,
    pass_app,
)

LEDGER_PAUSE_S = 1.0
"""Wait at least this long before a pass after the ledger could not be reached."""


@click.command("consume")
@click.argument("system")
@click.option("--batch-size", type=click.IntRange(1, 100_000), help="Records per transaction.")
@click.option(
    "--pause-s",
    type=click.FloatRange(0, 3600),
    default=1.0,
    show_default=True,
    help="Wait between passes that found nothing.",
)
@click.option("--json", "local_json", is_flag=True, help="One JSON line per pass that found units.")
@pass_app
def consume(
    app: AppContext, system: str, batch_size: int | None, pause_s: float, local_json: bool
) -> None:
    """Take in what SYSTEM receives, pass after pass, until SIGTERM (or Ctrl-C).

    Each unit is acknowledged to its source only after its records are accepted or parked and
    committed; one that cannot be read is parked and handed back as failed (an AMQP message is
    rejected without requeue). One line per pass that found units.
    """
    from conveyor.cli.mapping import _engine
    from conveyor.cli.runtime import _connector, say_stand_in
    from conveyor.errors import ConfigError, ConveyorError
    from conveyor.mapping.ingest import BATCH
    from conveyor.redact import safe_text
    from conveyor.runtime.inbound import receive_units

    connector = _connector(app, system)
    if not connector.supports("receive"):
        raise click.ClickException(f"system {system!r} ({connector.kind}) does not receive")
    as_json = app.as_json or local_json
    say_stand_in(connector, quiet=as_json)
    engine = _engine(app)
    stop = threading.Event()

    def stopping(signum: int, _frame: Any) -> None:
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, stopping)
    with connector:
        while not stop.is_set():
            engine.reload_if_changed()
            try:
                result = receive_units(
                    app.ledger, engine, connector, batch_size=batch_size or BATCH
                )
            except ConfigError as exc:
                raise click.ClickException(f"consume of {system}: {safe_text(exc)}") from None
            except ConveyorError as exc:  # the system is unreachable: try again after a pause
                click.echo(f"{system}: {safe_text(exc)}", err=True)
                stop.wait(pause_s)
                continue
            except Exception as exc:
                if not ledger_unreachable(exc):
                    raise
                # the ledger is restarting: nothing was acknowledged, so nothing is lost
                click.echo(f"{system}: {database_problem(exc)}", err=True)
                stop.wait(max(pause_s, LEDGER_PAUSE_S))
                continue
            if result.units:
                check_alerts(app, result.counts.get("accepted", 0), engine)
                if as_json:
                    emit_json(result.as_dict())
                else:
                    click.echo(
                        f"{system}: units {result.units}: acknowledged {result.acknowledged}, "
                        f"failed {result.failed}, not acknowledged {len(result.errors)}; "
                        f"records {result.records}: "
                        + ", ".join(f"{k} {v}" for k, v in sorted(result.counts.items()))
                    )
                sys.stdout.flush()
            else:
                stop.wait(pause_s)


def register(main: click.Group) -> None:
    """Add ``consume`` to the ``conveyor`` command."""
    main.add_command(consume)
