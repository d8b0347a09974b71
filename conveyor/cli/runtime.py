"""Runtime commands: ``poll`` (one inbound poll, or a cursor reset), ``receive`` (one receive
pass) and ``systems`` (``list`` and ``check``): the connector runtime from the command line."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from conveyor.cli.common import AppContext, check_alerts, emit_json, emit_table, pass_app

if TYPE_CHECKING:
    from collections.abc import Iterable

    from conveyor.config import Project
    from conveyor.connector import Connector


def _connector(app: AppContext, system: str) -> Connector:
    """The connector of a declared system; configuration errors are clean messages."""
    from conveyor.errors import ConfigError
    from conveyor.runtime import registry

    try:
        return registry.create(app.project.system(system))
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def say_stand_in(connector: Connector, *, quiet: bool = False) -> None:
    """One line on stderr when ``connector`` stands in for a real system (not with ``quiet``:
    JSON output says ``stand_in`` instead)."""
    if connector.stand_in and not quiet:
        click.echo(
            f"{connector.name}: stand-in connector ({connector.kind}), not a real system", err=True
        )


def say_stand_ins(
    project: Project, names: Iterable[str], *, what: str = "", quiet: bool = False
) -> list[str]:
    """The systems in ``names`` whose connector is a stand-in, each said in one line on stderr
    unless ``quiet`` (JSON output carries the list instead). ``what`` says what the stand-in
    gives, e.g. "snapshot". Systems that are not declared, or whose connector does not load, are
    left to the command to report."""
    from conveyor.errors import ConfigError
    from conveyor.runtime import registry

    found = []
    for name in names:
        declared = project.systems.get(name)
        if declared is None:
            continue
        try:
            cls = registry.load(declared.connector)
        except ConfigError:
            continue
        if cls.stand_in:
            found.append(name)
            if not quiet:
                click.echo(
                    f"{name}: {what + ' from a ' if what else ''}stand-in connector "
                    f"({cls.kind}), not a real system",
                    err=True,
                )
    return found


def _problems(items: list[dict[str, Any]]) -> None:
    from conveyor.cli.mapping import _problem_lines

    for item in items:
        where = f"{item.get('file')}:{item.get('line')}"
        click.echo(f"{where}: {item.get('status', 'parked')}:", err=True)
        for line in _problem_lines(item):
            click.echo(f"  {line}", err=True)


def _counts_text(counts: dict[str, Any]) -> str:
    names = ["accepted", "duplicate"]
    names += [n for n in counts if n not in ("accepted", "duplicate", "rejected", "parked")]
    names += ["rejected", "parked"]
    return ", ".join(f"{name} {counts.get(name, 0)}" for name in names)


@click.command("poll")
@click.argument("system")
@click.option("--type", "stream", help="Only this stream (its name or message type).")
@click.option("--reset-cursor", is_flag=True, help="Forget the stored cursor instead of polling.")
@click.option("--yes", is_flag=True, help="Do not ask before resetting the cursor.")
@click.option("--batch-size", type=click.IntRange(1, 100_000), help="Records per transaction.")
@click.option("--json", "local_json", is_flag=True, help="Machine-readable JSON output.")
@pass_app
def poll(
    app: AppContext,
    system: str,
    stream: str | None,
    reset_cursor: bool,
    yes: bool,
    batch_size: int | None,
    local_json: bool,
) -> None:
    """Poll SYSTEM once: records changed since the stored cursor of each stream (or --type).

    Records are mapped with the system's inbound mapping (a canonical message of the system's
    own is taken as it is when there is none), accepted in batches, and the cursor is stored with
    each batch; unmappable records are parked and do not hold the cursor back. Exit 1 when any
    record was parked or rejected. --reset-cursor forgets the cursor (after asking; --yes skips):
    the next poll starts from the connector's configured start.
    """
    from conveyor.cli.mapping import _engine
    from conveyor.errors import ConfigError, ConveyorError
    from conveyor.mapping.ingest import BATCH
    from conveyor.runtime.inbound import poll_streams

    as_json = app.as_json or local_json
    connector = _connector(app, system)
    try:
        names = [connector.stream(stream).name] if stream else []
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    if reset_cursor:
        _reset(app, system, names, yes=yes, as_json=as_json)
        return
    if not connector.supports("poll"):
        raise click.ClickException(f"system {system!r} ({connector.kind}) does not poll")
    say_stand_in(connector, quiet=as_json)
    engine = _engine(app)
    problems: list[dict[str, Any]] = []
    try:
        with connector:
            results = poll_streams(
                app.ledger,
                engine,
                connector,
                names,
                batch_size=batch_size or BATCH,
                on_problem=problems.append,
            )
    except ConveyorError as exc:  # what was committed stays committed, cursor included
        from conveyor.redact import safe_text

        raise click.ClickException(f"poll of {system} stopped: {safe_text(exc)}") from None
    accepted = sum(r.counts.get("accepted", 0) for r in results)
    alerts = check_alerts(app, accepted, engine)
    if as_json:
        emit_json(
            {
                "system": system,
                "stand_in": connector.stand_in,
                "streams": [r.as_dict() for r in results],
                "alerts": alerts,
                "problems": problems,
            }
        )
    else:
        _problems(problems)
        for r in results:
            click.echo(
                f"{r.system} {r.stream}: records {r.records}, {_counts_text(r.counts)}; "
                f"cursor {r.cursor if r.cursor is not None else '-'}"
                + ("" if r.cursor == r.cursor_before else f" (was {r.cursor_before or '-'})")
            )
        if alerts:
            click.echo(f"stock alerts raised: {alerts}")
    bad = sum(r.counts.get("parked", 0) + r.counts.get("rejected", 0) for r in results)
    sys.exit(1 if bad else 0)


def _reset(app: AppContext, system: str, streams: list[str], *, yes: bool, as_json: bool) -> None:
    what = f"stream {streams[0]}" if streams else "every stream"
    if not yes:
        click.confirm(
            f"Forget the cursor of {system} ({what})? The next poll starts from the "
            f"connector's configured start (records already taken are kept once).",
            abort=True,
            err=True,
        )
    cleared = app.ledger.clear_checkpoint(system, streams[0] if streams else None)
    if as_json:
        emit_json({"system": system, "streams": streams or None, "cleared": cleared})
    else:
        click.echo(f"{system}: cleared {cleared} cursor(s) ({what})")


@click.command("receive")
@click.argument("system")
@click.option("--batch-size", type=click.IntRange(1, 100_000), help="Records per transaction.")
@click.option("--json", "local_json", is_flag=True, help="Machine-readable JSON output.")
@pass_app
def receive(app: AppContext, system: str, batch_size: int | None, local_json: bool) -> None:
    """Take in what SYSTEM holds now (files dropped, messages queued, bodies pushed): one pass.

    Each unit is acknowledged to its source only after its records are accepted or parked and
    committed; a unit already taken in (same content hash) is acknowledged unread; a unit that
    cannot be read is parked with its reason and handed back as failed. Exit 1 when any unit
    failed or was left unacknowledged, or any record was parked or rejected.
    """
    from conveyor.cli.mapping import _engine
    from conveyor.errors import ConveyorError
    from conveyor.mapping.ingest import BATCH
    from conveyor.redact import safe_text
    from conveyor.runtime.inbound import receive_units

    connector = _connector(app, system)
    if not connector.supports("receive"):
        raise click.ClickException(f"system {system!r} ({connector.kind}) does not receive")
    say_stand_in(connector, quiet=app.as_json or local_json)
    engine = _engine(app)
    problems: list[dict[str, Any]] = []
    try:
        with connector:
            result = receive_units(
                app.ledger,
                engine,
                connector,
                batch_size=batch_size or BATCH,
                on_problem=problems.append,
            )
    except ConveyorError as exc:
        raise click.ClickException(f"receive of {system} stopped: {safe_text(exc)}") from None
    alerts = check_alerts(app, result.counts.get("accepted", 0), engine)
    if app.as_json or local_json:
        emit_json(
            {
                **result.as_dict(),
                "stand_in": connector.stand_in,
                "alerts": alerts,
                "problems": problems,
            }
        )
    else:
        _problems(problems)
        for error in result.errors:
            click.echo(f"{error['unit']}: not acknowledged: {error['reason']}", err=True)
        click.echo(
            f"{system}: units {result.units}: acknowledged {result.acknowledged} "
            f"(already taken in {result.already_taken}), failed {result.failed}, "
            f"not acknowledged {len(result.errors)}; records {result.records}: "
            f"{_counts_text(result.counts)}"
        )
        if alerts:
            click.echo(f"stock alerts raised: {alerts}")
    bad = result.failed + len(result.errors)
    bad += result.counts.get("parked", 0) + result.counts.get("rejected", 0)
    sys.exit(1 if bad else 0)


@click.group("systems")
def systems() -> None:
    """The systems of conveyor.yaml: their connectors, and whether they are ready."""


@systems.command("list")
@click.option("--json", "local_json", is_flag=True, help="Machine-readable JSON output.")
@pass_app
def systems_list(app: AppContext, local_json: bool) -> None:
    """Each system: connector kind, capabilities, streams, what routes send it, stand-ins."""
    from conveyor.runtime.systems import describe

    infos = describe(app.project)
    if app.as_json or local_json:
        emit_json([info.as_dict() for info in infos])
        return
    if not infos:
        click.echo("no systems declared in conveyor.yaml")
        return
    emit_table(
        "Systems",
        ["system", "connector", "capabilities", "streams", "receives", "note"],
        [
            (
                i.name,
                i.kind or i.connector,
                ", ".join(i.capabilities),
                ", ".join(i.streams),
                ", ".join(i.receives),
                "stand-in" if i.stand_in else (i.error or ""),
            )
            for i in infos
        ],
    )


@systems.command("check")
@click.argument("system", required=False)
@click.option(
    "--timeout",
    type=click.FloatRange(0.1, 600),
    default=10.0,
    show_default=True,
    help="Seconds a live check may take.",
)
@click.option("--json", "local_json", is_flag=True, help="Machine-readable JSON output.")
@pass_app
def systems_check(app: AppContext, system: str | None, timeout: float, local_json: bool) -> None:
    """Check SYSTEM (or every system): settings valid, secrets present (names only, never
    values) and, where the connector declares it, a live check within --timeout. Exit 1 when
    anything is missing or failing (a stand-in's secrets are optional)."""
    from conveyor.errors import ConfigError
    from conveyor.runtime.systems import check

    try:
        chosen = [app.project.system(system)] if system else list(app.project.systems.values())
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    reports = [check(app.project, s, timeout=timeout) for s in sorted(chosen, key=lambda s: s.name)]
    if app.as_json or local_json:
        emit_json([r.as_dict() for r in reports])
    else:
        for r in reports:
            secrets = ", ".join(
                f"{name} {'set' if present else 'missing'}" for name, present in r.secrets.items()
            )
            live = "not declared" if r.health_ok is None else r.health
            click.echo(
                f"{r.name} ({r.kind or r.connector}{', stand-in' if r.stand_in else ''}): "
                f"{'ok' if r.ok else 'NOT READY'}"
            )
            click.echo(f"  settings: {r.settings}")
            click.echo(f"  secrets: {secrets or 'none declared'}")
            click.echo(f"  live check: {live}")
            for problem in r.problems:
                click.echo(f"  problem: {problem}", err=True)
    sys.exit(0 if all(r.ok for r in reports) else 1)


def register(main: click.Group) -> None:
    """Add the runtime commands to ``main``."""
    main.add_command(poll)
    main.add_command(receive)
    main.add_command(systems)
