"""Delivery commands: ``run`` (workers), ``parked``, ``replay``, ``status`` and ``outbox``.

The transport is the embedded one unless ``CONVEYOR_BROKER_URL`` names a broker (``amqp://…``).
"""

from __future__ import annotations

import logging
import signal
import sys
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import click

from conveyor.cli.common import (
    DURATION,
    AppContext,
    check_alerts,
    echo,
    emit_json,
    emit_table,
    pass_app,
    setup_logging,
)
from conveyor.redact import clip

if TYPE_CHECKING:
    from conveyor.config import Project


def _targets(project: Project, chosen: tuple[str, ...]) -> list[str]:
    from conveyor.delivery.worker import project_targets

    return list(chosen) or project_targets(project)


def _mapping(project: Project) -> Any:
    """A freshly loaded outbound mapping engine (None when the project has no mapping layer)."""
    from conveyor.errors import ConfigError

    try:
        from conveyor.mapping import MappingEngine
    except ImportError:
        return None
    try:
        return MappingEngine.load(project)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


@click.command("run")
@click.option("--target", "targets", multiple=True, help="Deliver to this target (repeatable).")
@click.option("--concurrency", type=click.IntRange(1, 256), help="Delivery threads (default 4).")
@click.option("--batch-size", type=click.IntRange(1, 10000), help="Jobs claimed together.")
@click.option("--until-idle", is_flag=True, help="Exit once nothing is pending or retrying.")
@click.option("--timeout", type=float, help="Exit after this many seconds in any case.")
@click.option("--no-relay", is_flag=True, help="Do not publish the outbox from this process.")
@click.option("-v", "--verbose", count=True, help="Log more (-v info, -vv debug).")
@pass_app
def run(
    app: AppContext,
    targets: tuple[str, ...],
    concurrency: int | None,
    batch_size: int | None,
    until_idle: bool,
    timeout: float | None,
    no_relay: bool,
    verbose: int,
) -> None:
    """Deliver accepted messages to their targets (competing workers: run as many as you like).

    With --until-idle it drains everything deliverable — waiting out retries — and exits 0; with
    --timeout it exits 1 if the work was not done by then. SIGTERM/SIGINT stop it cleanly.
    """
    from conveyor.delivery.worker import Worker, WorkerOptions
    from conveyor.errors import ConfigError
    from conveyor.redact import redact

    level = logging.WARNING - 10 * min(verbose, 2)
    setup_logging(level)
    if verbose < 2:
        logging.getLogger("pika").setLevel(logging.WARNING)
    project = app.project
    try:
        options = WorkerOptions.from_project(
            project,
            concurrency=concurrency,
            batch_size=batch_size,
            relay=False if no_relay else None,
        )
        worker = Worker(
            app.ledger.engine,
            targets=_targets(project, targets),
            broker_url=project.broker_url,
            project=project,
            options=options,
        )
    except ConfigError as exc:
        raise click.ClickException(redact(str(exc))) from None
    from conveyor.cli.runtime import say_stand_ins

    stand_ins = say_stand_ins(project, worker.targets, quiet=app.as_json)

    def _stop(_signum: int, _frame: Any) -> None:
        worker.stop()

    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        result = worker.run(until_idle=until_idle, timeout=timeout)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    summary = {
        "targets": list(worker.targets),
        "transport": "rabbitmq" if project.broker_url else "embedded",
        "idle": result.idle,
        "seconds": round(result.seconds, 3),
        "published": result.published,
        **result.counters,
        "stand_ins": stand_ins,
    }
    if app.as_json:
        emit_json(summary)
    else:
        c = result.counters
        echo(
            f"delivered {c['delivered']} (already present {c['already_present']}), "
            f"retried {c['retried']}, parked {c['parked']}, needs check {c['needs_check']}, "
            f"held {c['held']} in {result.seconds:.1f} s"
        )
    if until_idle and not result.idle:
        sys.exit(1)


@click.command("parked")
@click.option("--target", help="Only deliveries to this target.")
@click.option("--reason-like", help="Only reasons containing this text (case-insensitive).")
@click.option("--limit", type=click.IntRange(1), default=1000, show_default=True)
@pass_app
def parked(app: AppContext, target: str | None, reason_like: str | None, limit: int) -> None:
    """List parked deliveries (and those that need a person's check) with their reasons."""
    from conveyor.delivery.status import parked_deliveries
    from conveyor.redact import redact_value

    rows = redact_value(
        parked_deliveries(app.ledger.engine, target=target, reason_like=reason_like, limit=limit)
    )
    if app.as_json:
        emit_json(rows)
        return
    if not rows:
        echo("nothing parked")
        return
    emit_table(
        f"Parked deliveries ({len(rows)})",
        ["id", "target", "status", "type", "source:key", "attempts", "reason", "updated"],
        [
            (
                r["id"],
                r["target"],
                r["status"],
                r["type"],
                f"{r['source']}:{r['key']}",
                r["attempts"],
                r["reason"],
                r["updated_at"].strftime("%Y-%m-%d %H:%M:%S"),
            )
            for r in rows
        ],
        right=["id", "attempts"],
    )


@click.command("replay")
@click.option("--target", help="Replay what is parked for this target (with --records: system).")
@click.option(
    "--id",
    "ids",
    type=click.IntRange(1, 2**63 - 1),
    multiple=True,
    help="Replay this id (repeatable).",
)
@click.option("--all", "everything", is_flag=True, help="Replay everything parked.")
@click.option(
    "--records",
    is_flag=True,
    help="Replay parked input records (unmappable) instead of parked deliveries.",
)
@click.option(
    "--stuck",
    is_flag=True,
    help="Republish open deliveries that went quiet (their broker message lost) instead.",
)
@click.option(
    "--older-than",
    type=DURATION,
    default="1h",
    show_default=True,
    help="With --stuck: untouched for at least this long.",
)
@pass_app
def replay(
    app: AppContext,
    target: str | None,
    ids: tuple[int, ...],
    everything: bool,
    records: bool,
    stuck: bool,
    older_than: timedelta,
) -> None:
    """Put parked deliveries back in the queue, re-mapping them first so a fixed mapping applies.

    Deliveries held behind a replayed one (same order or document) come along and keep their
    order. Safe to repeat. With --records it replays parked input records instead (ids are then
    parked-record ids and --target a source system). With --stuck it republishes open deliveries
    untouched for --older-than (a lost broker message); a copy still queued is dropped by the
    worker.
    """
    if stuck:
        _republish_stuck(app, target, older_than)
        return
    if not (target or ids or everything):
        raise click.UsageError("say what to replay: --id, --target, --all or --stuck")
    if records:
        _replay_records(app, target, ids)
        return
    from rich.progress import Progress

    from conveyor.delivery.replay import replay_deliveries, select_parked

    engine = app.ledger.engine
    chosen = select_parked(engine, target=target, ids=ids, everything=everything)
    mapping = _mapping(app.project)
    if app.as_json or len(chosen) < 1000 or not sys.stderr.isatty():
        result = replay_deliveries(engine, chosen, mapping=mapping)
    else:
        with Progress(transient=True) as progress:
            task = progress.add_task("replaying", total=len(chosen))
            result = replay_deliveries(
                engine,
                chosen,
                mapping=mapping,
                progress=lambda n: progress.advance(task, n),
            )
    if app.as_json:
        emit_json(result.as_dict())
    else:
        for failure in result.failures:
            echo(
                f"still failing #{failure['id']} → {failure['target']}: "
                f"{clip(str(failure['reason']), 2000)}"
            )
        echo(
            f"re-queued {result.requeued} of {result.selected}; "
            f"still failing {result.still_failing}"
        )
    if result.still_failing:
        sys.exit(1)


def _republish_stuck(app: AppContext, target: str | None, older_than: timedelta) -> None:
    from conveyor.delivery.maintenance import republish_stuck

    targets = [target] if target else []
    count = republish_stuck(app.ledger.engine, older_than=older_than, targets=targets)
    if app.as_json:
        emit_json({"republished": count})
    else:
        echo(f"republished {count} stuck deliveries")


def _replay_records(app: AppContext, system: str | None, ids: tuple[int, ...]) -> None:
    try:
        from conveyor.mapping.replay import replay_parked
    except ImportError:
        raise click.ClickException("replaying parked records needs the mapping layer") from None
    counts = replay_parked(app.project, app.ledger, ids=list(ids) or None, system=system)
    counts["alerts"] = check_alerts(app, counts["replayed"])
    if app.as_json:
        emit_json(counts)
    else:
        echo(", ".join(f"{k} {v}" for k, v in counts.items()) or "nothing to replay")


@click.command("status")
@click.option("--target", "targets", multiple=True, help="Only this target (repeatable).")
@click.option("--no-queues", is_flag=True, help="Do not ask the transport for queue depths.")
@pass_app
def status(app: AppContext, targets: tuple[str, ...], no_queues: bool) -> None:
    """Per target: queue depth, in flight, retrying, parked; unrouted messages; live workers."""
    from conveyor.delivery import status as queries
    from conveyor.delivery.maintenance import DEFAULT_STUCK_AFTER, stuck_deliveries
    from conveyor.transport import create

    project = app.project
    engine = app.ledger.engine
    counts = queries.delivery_counts(engine, targets)
    chosen = list(targets) or sorted(set(counts) | set(_targets(project, ())))
    depths: dict[str, Any] = {}
    queue_error = None
    if not no_queues and chosen:
        try:
            transport = create(project.broker_url, engine=engine, policy=project.retry)
            depths = {k: v.as_dict() for k, v in transport.depths(chosen).items()}
        except Exception as exc:
            queue_error = f"queue depths unavailable: {exc}"
    report: dict[str, Any] = {
        "transport": "rabbitmq" if project.broker_url else "embedded",
        "targets": {
            t: {**counts.get(t, dict.fromkeys(queries.STATUSES, 0)), "queue": depths.get(t)}
            for t in chosen
        },
        "delay_queues": (depths.get("*") or {}).get("delayed"),
        "unrouted": queries.unrouted(engine),
        "workers": queries.workers(engine),
        "stuck": len(stuck_deliveries(engine, targets=list(targets))),
    }
    if queue_error:
        report["queue_error"] = queue_error
    if app.as_json:
        emit_json(report)
        return
    rows = []
    for target, info in report["targets"].items():
        queue = info.get("queue") or {}
        rows.append(
            (
                target,
                queue.get("ready", "-"),
                queue.get("delayed", "-") if report["transport"] == "embedded" else "-",
                info.get("unpublished", 0),
                info["pending"],
                info["in_flight"],
                info["retrying"],
                info["parked"],
                info["needs_check"],
                info["delivered"],
            )
        )
    emit_table(
        f"Deliveries ({report['transport']} transport)",
        [
            "target",
            "queue",
            "delayed",
            "unpublished",
            "pending",
            "in flight",
            "retrying",
            "parked",
            "needs check",
            "delivered",
        ],
        rows,
        right=["queue", "delayed", "unpublished", "pending", "in flight", "retrying", "parked"],
    )
    if report["delay_queues"] is not None:
        echo(f"messages waiting in delay queues: {report['delay_queues']}")
    if queue_error:
        echo(queue_error)
    lost = report["unrouted"]
    if lost["count"]:
        echo(f"unrouted messages (no route matched): {lost['count']}")
        for group in lost["by_type_source"]:
            echo(f"  {group['type']} from {group['source']}: {group['count']}")
    else:
        echo("unrouted messages: 0")
    alive = [w for w in report["workers"] if w["alive"]]
    echo(f"workers alive: {len(alive)}")
    if report["stuck"]:
        echo(
            f"stuck deliveries (open, untouched for {DEFAULT_STUCK_AFTER}): {report['stuck']}"
            " — see 'conveyor replay --stuck'"
        )


@click.group("outbox")
def outbox() -> None:
    """The outbox: its size, and pruning rows whose delivery is done."""


@outbox.command("size")
@pass_app
def outbox_size(app: AppContext) -> None:
    """Rows in the outbox: total, unpublished, prunable (published and delivered)."""
    from conveyor.delivery.maintenance import outbox_size as size

    counts = size(app.ledger.engine)
    if app.as_json:
        emit_json(counts)
    else:
        click.echo(", ".join(f"{name} {count}" for name, count in counts.items()))


@outbox.command("prune")
@click.option(
    "--older-than",
    type=DURATION,
    default="7d",
    show_default=True,
    help="Only rows published at least this long ago.",
)
@pass_app
def outbox_prune(app: AppContext, older_than: timedelta) -> None:
    """Delete outbox rows whose delivery is delivered (the deliveries table keeps the record)."""
    from conveyor.delivery.maintenance import prune_outbox

    pruned = prune_outbox(app.ledger.engine, older_than=older_than)
    if app.as_json:
        emit_json({"pruned": pruned})
    else:
        click.echo(f"pruned {pruned} outbox rows")


def register(main: click.Group) -> None:
    """Add the delivery commands to ``main``."""
    for command in (run, parked, replay, status, outbox):
        main.add_command(command)
