"""``conveyor watch``: the file-drop watchers. Each watched system is given receive passes (the
inbound driver, ``conveyor.runtime.inbound.receive_units``) whenever its connector reports work:
a filesystem event, or the polling interval passing (network shares often give no events).

A connector is watched when it receives and can wait for work (``wait_for_work(timeout)``, and
``pending()``: files seen but still being written) — the ``files`` connector does. ``--once``
takes in what is there now, waiting for files still being written, then exits.
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

import click

from conveyor.cli.common import (
    AppContext,
    database_problem,
    emit_json,
    ledger_unreachable,
    pass_app,
)

if TYPE_CHECKING:
    from conveyor.connector import Connector
    from conveyor.runtime.inbound import ReceiveResult

T = TypeVar("T")

ONCE_PATIENCE_S = 600.0
"""``--once`` waits at most this long for files still being written."""
LEDGER_PAUSE_S = 1.0
"""Wait this long before the next pass after the ledger could not be reached."""


@runtime_checkable
class Watchable(Protocol):
    """What a receiving connector offers to be watched."""

    def wait_for_work(self, timeout: float | None = None) -> None:
        """Return when there may be work (an event) or after ``timeout`` seconds."""

    def pending(self) -> int:
        """Units seen in the last pass that were not ready yet."""


def _watched(app: AppContext, system: str | None) -> list[Connector]:
    from conveyor.errors import ConfigError
    from conveyor.runtime import registry

    try:
        chosen = [app.project.system(system)] if system else list(app.project.systems.values())
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    found: list[Connector] = []
    for declared in sorted(chosen, key=lambda s: s.name):
        try:
            connector = registry.create(declared)
        except ConfigError as exc:
            if system:
                raise click.ClickException(str(exc)) from None
            continue  # systems check reports it; the other watchers still run
        if connector.supports("receive") and isinstance(connector, Watchable):
            found.append(connector)
        elif system:
            raise click.ClickException(f"system {system!r} ({connector.kind}) has no file drop")
    return found


@click.command("watch")
@click.option("--system", "system", help="Only this system (default: every file-drop system).")
@click.option("--once", is_flag=True, help="Take in what is there now, then exit.")
@click.option("--batch-size", type=click.IntRange(1, 100_000), help="Records per transaction.")
@click.option("--json", "local_json", is_flag=True, help="Machine-readable JSON output.")
@pass_app
def watch(
    app: AppContext, system: str | None, once: bool, batch_size: int | None, local_json: bool
) -> None:
    """Run the file-drop watchers: each file dropped into a system's inbox/ is claimed, its
    records accepted or parked in batches, and the file archived (with a result file) after its
    last batch is committed, or moved to error/ when it cannot be read at all.

    With --once, exit 1 when any file failed or any record was parked or rejected.
    """
    from conveyor.cli.mapping import _engine
    from conveyor.mapping.ingest import BATCH

    connectors = _watched(app, system)
    if not connectors:
        raise click.ClickException("no system with a file drop (connector: files) to watch")
    as_json = app.as_json or local_json
    engine = _engine(app)
    totals: list[dict[str, Any]] = []
    stop = {"now": False}

    def _stop(signum: int, frame: object) -> None:
        stop["now"] = True

    signal.signal(signal.SIGTERM, _stop)
    started = time.monotonic()
    try:
        while not stop["now"]:
            busy = 0
            for connector in connectors:
                try:
                    result = _pass(app, engine, connector, batch_size or BATCH, as_json)
                except Exception as exc:
                    if once or not ledger_unreachable(exc):
                        raise
                    # the ledger is restarting: a file is archived only after its commit, and a
                    # claimed one resumes after its last committed batch on the next pass
                    click.echo(f"{connector.name}: {database_problem(exc)}", err=True)
                    time.sleep(LEDGER_PAUSE_S)
                    continue
                if result.units:
                    totals.append(result.as_dict())
                busy += connector.pending()  # type: ignore[attr-defined]
            if once and (not busy or time.monotonic() - started > ONCE_PATIENCE_S):
                break
            for waiting in connectors:  # several systems share the wait, each a slice of it
                share = 0.5 if once else None
                if share is None and len(connectors) > 1:
                    share = float(waiting.settings.get("poll_seconds", 5)) / len(connectors)
                waiting.wait_for_work(share)  # type: ignore[attr-defined]
    except KeyboardInterrupt:
        pass
    finally:
        for connector in connectors:
            connector.close()
    if as_json:
        emit_json({"passes": totals})
    bad = sum(
        r["failed"] + r["not_acknowledged"] + r.get("parked", 0) + r.get("rejected", 0)
        for r in totals
    )
    sys.exit(1 if once and bad else 0)


def _pass(
    app: AppContext, engine: Any, connector: Connector, batch_size: int, as_json: bool
) -> ReceiveResult:
    from conveyor.cli.runtime import _counts_text
    from conveyor.runtime.inbound import receive_units

    def tell(notice: dict[str, Any]) -> None:
        if not as_json:
            where = f"{notice.get('file')}:{notice.get('line')}"
            click.echo(
                f"{where}: {notice.get('status', 'parked')}: {notice.get('reason')}", err=True
            )

    result = receive_units(app.ledger, engine, connector, batch_size=batch_size, on_problem=tell)
    if result.units and not as_json:
        for error in result.errors:
            click.echo(f"{error['unit']}: not acknowledged: {error['reason']}", err=True)
        click.echo(
            f"{connector.name}: files {result.units}: archived {result.acknowledged} "
            f"(already taken in {result.already_taken}), error/ {result.failed}; records "
            f"{result.records}"
            + (f" (resumed after {result.resumed} committed)" if result.resumed else "")
            + f": {_counts_text(result.counts)}"
        )
    return result


def with_progress(records: Iterable[T], label: str) -> Iterator[T]:
    """``records`` as they are read, with a progress line (count and rate) on a terminal's
    stderr; nothing is drawn when stderr is not a terminal (logs and pipes stay clean)."""
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    if not console.is_terminal:
        yield from records
        return
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TextColumn("{task.completed:,} records"),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(label, total=None, rate="")
        started, count = time.monotonic(), 0
        for record in records:
            yield record
            count += 1
            if count % 1000 == 0:
                elapsed = max(time.monotonic() - started, 1e-6)
                progress.update(task, completed=count, rate=f"{count / elapsed:,.0f}/s")
        progress.update(task, completed=count)


def register(main: click.Group) -> None:
    """Add ``watch`` to ``main``."""
    main.add_command(watch)
