"""The DAGs of a project, generated from its ``conveyor.yaml`` (``dags/conveyor_dags.py`` calls
``build``): a screen each, every one calling an operator of ``conveyor.airflow.operators`` or the
engine. Nothing here does work at parse time but reading ``conveyor.yaml`` and loading connector
classes (to know which systems poll); with ``get_parsing_context().dag_id`` set (a worker
running one task) only that DAG is built.

=========================  =====================================================================
DAG                        what it does
=========================  =====================================================================
conveyor_poll_<system>     one inbound poll of a polling system, every ``poll_every`` (300 s)
conveyor_file_drops        the file-drop watchers once (``watch --once``), every
                           ``airflow.file_drops_every`` seconds (300)
conveyor_reconcile         snapshots + compare + reports (``airflow.reconcile``), nightly
conveyor_replay            manual: replay parked deliveries from a form (``dry_run`` by default)
conveyor_master_data       the ERPs' material masters into a staging folder, with the diff against
                           ``master_data/`` (``airflow.master_data``), daily; never writes it
conveyor_on_parked         started by the hub's parking events (AMQP asset watcher)
=========================  =====================================================================
"""

from __future__ import annotations

import logging
import os
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pendulum
from airflow.sdk import DAG, Asset, AssetWatcher, Param, get_parsing_context, task

from conveyor.airflow.operators import (
    ConveyorFileDropsOperator,
    ConveyorMasterDataOperator,
    ConveyorPollOperator,
    ConveyorReconcileOperator,
    ConveyorReplayOperator,
    file_drop_systems,
)

if TYPE_CHECKING:
    from conveyor.config import Project

log = logging.getLogger(__name__)

START = pendulum.datetime(2026, 1, 1, tz="UTC")
DEFAULT_POLL_S = 300.0
SYSTEM_TASK_ARGS: dict[str, Any] = {
    "retries": 3,
    "retry_delay": timedelta(minutes=1),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=15),
}
"""Tasks that call outside systems retry with a growing delay."""
TAGS = ["conveyor"]


def project_root(dag_file: str) -> Path:
    """``CONVEYOR_PROJECT``, else the folder above ``dags/`` (this repository's layout)."""
    chosen = os.environ.get("CONVEYOR_PROJECT")
    return Path(chosen).resolve() if chosen else Path(dag_file).resolve().parent.parent


def build(dag_file: str) -> dict[str, DAG]:
    """Every DAG of the project next to ``dag_file`` (or only the one being run), by id."""
    from conveyor.config import Project

    root = project_root(dag_file)
    project = Project.load(root)
    wanted = get_parsing_context().dag_id
    builders = _builders(project)
    dags: dict[str, DAG] = {}
    for dag_id in sorted(builders):
        if wanted is None or wanted == dag_id:
            dags[dag_id] = builders[dag_id]()
    return dags


def _builders(project: Project) -> dict[str, Any]:
    from conveyor.mapping.master_pull import master_data_systems

    root = str(project.root)
    settings = project.raw.get("airflow") or {}
    out: dict[str, Any] = {}
    for name in polling_systems(project):
        out[f"conveyor_poll_{name}"] = _binder(poll_dag, project, root, name)
    if file_drop_systems(project):
        out["conveyor_file_drops"] = _binder(
            file_drops_dag, root, float(settings.get("file_drops_every", 300))
        )
    systems = reconcile_systems(project)
    if len(systems) >= 2:
        out["conveyor_reconcile"] = _binder(
            reconcile_dag, root, settings.get("reconcile") or {}, systems
        )
    targets = delivery_targets(project)
    if targets:
        out["conveyor_replay"] = _binder(replay_dag, root, targets)
    erps = master_data_systems(project)
    if erps:
        out["conveyor_master_data"] = _binder(
            master_data_dag, root, settings.get("master_data") or {}, erps
        )
    if (project.raw.get("events")) is not None:
        out["conveyor_on_parked"] = _binder(on_parked_dag, project)
    return out


def _binder(fn: Any, *args: Any) -> Any:
    return lambda: fn(*args)


def polling_systems(project: Project) -> list[str]:
    """Systems whose connector polls (declares ``poll`` and streams), by name."""
    from conveyor.errors import ConfigError
    from conveyor.runtime import registry

    out = []
    for name, system in sorted(project.systems.items()):
        try:
            cls = registry.load(system.connector)
        except ConfigError as exc:  # the DAG is missing; `conveyor systems check` says why
            log.warning("no poll DAG for %s: %s", name, exc)
            continue
        if "poll" in cls.capabilities and cls.streams:
            out.append(name)
    return out


def reconcile_systems(project: Project) -> list[str]:
    """``airflow.reconcile.systems``, else the hub and every system with snapshots."""
    from conveyor.errors import ConfigError
    from conveyor.reconcile.service import HUB
    from conveyor.runtime import registry

    chosen = ((project.raw.get("airflow") or {}).get("reconcile") or {}).get("systems")
    if chosen:
        return list(chosen)
    out = [HUB]
    for name, system in sorted(project.systems.items()):
        try:
            if "snapshot" in registry.load(system.connector).capabilities:
                out.append(name)
        except ConfigError:
            continue
    return out


def delivery_targets(project: Project) -> list[str]:
    """Every system a route delivers to, sorted."""
    return sorted({t for route in project.router.routes for t in route.targets})


def poll_dag(project: Project, root: str, system: str) -> DAG:
    """``conveyor_poll_<system>``: one poll per ``poll_every``, never two at once."""
    declared = project.system(system)
    every = timedelta(seconds=declared.poll_every or DEFAULT_POLL_S)
    with DAG(
        f"conveyor_poll_{system}",
        schedule=every,
        start_date=START,
        catchup=False,
        max_active_runs=1,
        tags=[*TAGS, "poll", system],
        default_args=SYSTEM_TASK_ARGS,
        doc_md=f"Polls **{system}** ({declared.connector}) every {every}: records changed "
        "since the stored cursor are mapped, accepted in batches (cursor stored with each), "
        "unmappable ones parked. Same as `conveyor poll " + system + "`.",
    ) as dag:
        ConveyorPollOperator(task_id="poll", system=system, project=root)
    return dag


def file_drops_dag(root: str, every_s: float) -> DAG:
    """``conveyor_file_drops``: the file-drop watchers once, on a short schedule."""
    with DAG(
        "conveyor_file_drops",
        schedule=timedelta(seconds=every_s),
        start_date=START,
        catchup=False,
        max_active_runs=1,
        tags=[*TAGS, "files"],
        default_args={"retries": 1, "retry_delay": timedelta(seconds=30)},
        doc_md="Takes in the files waiting in each file-drop system's `inbox/` "
        "(`conveyor watch --once`): rows accepted or parked with file and line, files archived "
        "with a result file, unreadable ones moved to `error/`.",
    ) as dag:
        ConveyorFileDropsOperator(task_id="take_in", project=root)
    return dag


def reconcile_dag(root: str, settings: dict[str, Any], systems: list[str]) -> DAG:
    """``conveyor_reconcile``: nightly by default; reports to ``<out>/<run time>``."""
    out = settings.get("out", "reports/reconcile")
    with DAG(
        "conveyor_reconcile",
        schedule=settings.get("schedule", "0 2 * * *"),
        start_date=START,
        catchup=False,
        max_active_runs=1,
        tags=[*TAGS, "reconcile"],
        default_args=SYSTEM_TASK_ARGS,
        doc_md=f"Compares stock of {', '.join(systems)} (the first is the reference) per "
        "material × location × lot, writes report.html/.xlsx/.csv/.json to "
        f"`{out}/<run time>`, stores the run and raises stock alerts. The summary is in the "
        "task log and its XCom. Mismatches do not fail the run; a broken input does.",
    ) as dag:
        ConveyorReconcileOperator(
            task_id="reconcile",
            systems=systems,
            snapshots=settings.get("snapshots") or {},
            out=out + "/{{ ts_nodash }}",
            project=root,
        )
    return dag


def replay_dag(root: str, targets: list[str]) -> DAG:
    """``conveyor_replay``: manual, from a form; a dry run unless unticked."""
    with DAG(
        "conveyor_replay",
        schedule=None,
        start_date=START,
        catchup=False,
        max_active_runs=1,
        tags=[*TAGS, "replay"],
        render_template_as_native_obj=True,
        params={
            "target": Param(targets[0], type="string", enum=targets, title="Target"),
            "reason_like": Param(
                None,
                type=["null", "string"],
                title="Reason contains",
                description="Only parked deliveries whose reason contains this text.",
            ),
            "ids": Param(
                None,
                type=["null", "string"],
                title="Delivery ids",
                description="Only these ids (commas or spaces), as `conveyor parked` lists them.",
            ),
            "dry_run": Param(
                True,
                type="boolean",
                title="Dry run",
                description="List what would be replayed and change nothing.",
            ),
        },
        doc_md="Replays parked deliveries of a target (re-mapped first, so a fixed mapping "
        "applies; those held behind them come along). Leave **Dry run** ticked to see the list "
        "first. Same as `conveyor replay --target T [--id …]`.",
    ) as dag:
        ConveyorReplayOperator(
            task_id="replay",
            project=root,
            target="{{ params.target }}",
            reason_like="{{ params.reason_like }}",
            ids="{{ params.ids }}",
            dry_run="{{ params.dry_run }}",
        )
    return dag


def master_data_dag(root: str, settings: dict[str, Any], systems: list[str]) -> DAG:
    """``conveyor_master_data``: one pull task per ERP with a material master, daily by default
    (``airflow.master_data.schedule``) or from **Trigger** with an optional *since*."""
    with DAG(
        "conveyor_master_data",
        schedule=settings.get("schedule", "0 5 * * *"),
        start_date=START,
        catchup=False,
        max_active_runs=1,
        tags=[*TAGS, "master_data", *systems],
        default_args=SYSTEM_TASK_ARGS,
        params={
            "since": Param(
                None,
                type=["null", "string"],
                title="Modified since",
                description="Only materials changed after this time, on the ERP's clock "
                "(e.g. 2026-11-01T00:00:00); empty: the whole master, which also shows the "
                "materials missing in the ERP.",
            ),
        },
        doc_md=f"Pulls the material master of {', '.join(systems)} into "
        "`<staging>/<system>/<UTC time>/` (`materials.csv`, `diff.csv`, `diff.json`) and shows "
        "the diff against `master_data/materials.csv`: new in the ERP, changed (description, "
        "base unit: old → new), missing in the ERP. `master_data/` is never written: the "
        "integrator takes what is right. The summary is in the task log and its XCom. Same as "
        "`conveyor mappings pull SYSTEM`.",
    ) as dag:
        for system in systems:
            ConveyorMasterDataOperator(
                task_id=f"pull_{system}",
                system=system,
                project=root,
                since="{{ params.since }}",
            )
    return dag


def on_parked_dag(project: Project) -> DAG:
    """``conveyor_on_parked``: one run per batch of parking events from the hub."""
    from conveyor.airflow.triggers import AmqpEventTrigger
    from conveyor.events import DEFAULT_EXCHANGE, DEFAULT_QUEUE

    section = project.raw.get("events") or {}
    settings = (project.raw.get("airflow") or {}).get("on_parked") or {}
    trigger = AmqpEventTrigger(
        queue=section.get("queue", DEFAULT_QUEUE),
        exchange=section.get("exchange", DEFAULT_EXCHANGE),
        url=section.get("broker"),
        poll_s=float(settings.get("poll_s", 1.0)),
    )
    parked = Asset(
        "conveyor_parked",
        uri="conveyor://parked",
        watchers=[AssetWatcher(name="conveyor_parked_amqp", trigger=trigger)],
    )
    notifier = settings.get("notifier")
    with DAG(
        "conveyor_on_parked",
        schedule=[parked],
        start_date=START,
        catchup=False,
        tags=[*TAGS, "parked"],
        doc_md="Started by the hub's parking events (RabbitMQ queue "
        f"`{trigger.queue}`): logs every parked delivery or record with its reason and calls "
        f"the notifier (`{notifier or 'log only'}`). Replay with `conveyor_replay`.",
    ) as dag:

        @task(task_id="report")
        def report(**context: Any) -> list[dict[str, Any]]:
            from conveyor.airflow.notify import notify, parking_events

            found = parking_events(context.get("triggering_asset_events") or {})
            notify(found, notifier)
            return found

        report()
    return dag
