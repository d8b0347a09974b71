"""Thin operators: each opens the project (and its ledger, where it needs one) and calls the engine
function the CLI calls (``conveyor poll``, ``watch --once``, ``reconcile``, ``replay``, ``mappings
pull``), returning what the CLI's ``--json`` would print as the task's XCom. All logic stays in the
engine.

The project is ``project=`` (a folder), else ``CONVEYOR_PROJECT``, else the working directory;
the ledger is the project's (``CONVEYOR_DB_URL``) and must exist (``conveyor db upgrade``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

if TYPE_CHECKING:
    from airflow.sdk import Context

    from conveyor.config import Project
    from conveyor.ledger import Ledger

log = logging.getLogger(__name__)


@contextmanager
def open_hub(project: str | None) -> Iterator[tuple[Project, Ledger]]:
    """The project and its ledger (refused when the ledger was never created); the engine is
    disposed of afterwards and pending parking events are flushed."""
    from conveyor.config import Project
    from conveyor.errors import ConfigError
    from conveyor.events import publisher_of
    from conveyor.ledger import Ledger
    from conveyor.ledger.db import current_revision

    loaded = Project.load(project)
    ledger = Ledger.open(loaded)
    try:
        if current_revision(ledger.engine) is None:
            raise ConfigError("ledger not initialised: run conveyor db upgrade")
        yield loaded, ledger
    finally:
        publisher = publisher_of(ledger.engine)
        if publisher is not None:
            publisher.flush()
        ledger.engine.dispose()


@contextmanager
def retry_only_transient(also: tuple[type[Exception], ...] = ()) -> Iterator[None]:
    """A terminal error (a wrong config, an unreadable input, a refusal) — or one of ``also`` —
    fails the task at once, since retrying cannot help; a transient one is left to Airflow's
    retries."""
    from airflow.sdk.exceptions import AirflowFailException

    from conveyor.errors import ConveyorError
    from conveyor.redact import safe_text

    try:
        yield
    except ConveyorError as exc:
        if exc.transient:
            raise
        raise AirflowFailException(safe_text(exc)) from exc
    except also as exc:
        raise AirflowFailException(safe_text(exc)) from exc


def stock_alerts(project: Project, ledger: Ledger, accepted: int, engine: Any = None) -> int:
    """The stock-alert check after records were accepted (as the CLI runs it)."""
    from conveyor.reconcile.alerts import check_after_accept
    from conveyor.reconcile.reference import EngineReference

    reference = EngineReference(engine) if engine is not None else None
    results = check_after_accept(project, ledger, accepted, reference)
    return sum(1 for r in results if r.status == "accepted")


class ConveyorPollOperator(BaseOperator):
    """``conveyor poll SYSTEM``: one inbound poll of every stream (or ``streams``), the
    connector configured from ``conveyor.yaml`` and the system's Airflow Connection."""

    template_fields: Sequence[str] = ("system", "project")

    def __init__(
        self,
        *,
        system: str,
        project: str | None = None,
        streams: Sequence[str] = (),
        conveyor_conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.system = system
        self.project = project
        self.streams = list(streams)
        self.conveyor_conn_id = conveyor_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        """Poll, accept in batches (parked records are kept and reported, not a failure)."""
        from conveyor.airflow.hooks import ConveyorHook
        from conveyor.mapping import MappingEngine
        from conveyor.runtime.inbound import poll_streams

        with retry_only_transient(), open_hub(self.project) as (project, ledger):
            hook = ConveyorHook(self.conveyor_conn_id, system=self.system, project=project)
            connector = hook.connector()
            engine = MappingEngine.load(project)
            problems: list[dict[str, Any]] = []
            with connector:
                results = poll_streams(
                    ledger, engine, connector, self.streams, on_problem=problems.append
                )
            accepted = sum(r.counts.get("accepted", 0) for r in results)
            summary = {
                "system": self.system,
                "stand_in": connector.stand_in,
                "streams": [r.as_dict() for r in results],
                "alerts": stock_alerts(project, ledger, accepted, engine),
                "parked": len(problems),
            }
        log.info("poll %s: %s", self.system, summary)
        return summary


class ConveyorFileDropsOperator(BaseOperator):
    """``conveyor watch --once``: one receive pass over every file-drop system (or ``systems``)."""

    def __init__(
        self, *, project: str | None = None, systems: Sequence[str] = (), **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.project = project
        self.systems = list(systems)

    def execute(self, context: Context) -> list[dict[str, Any]]:
        """Take in what lies in each inbox now; bad rows are parked, files archived."""
        from conveyor.mapping import MappingEngine
        from conveyor.runtime import registry
        from conveyor.runtime.inbound import receive_units

        out = []
        with retry_only_transient(), open_hub(self.project) as (project, ledger):
            engine = MappingEngine.load(project)
            for name in self.systems or file_drop_systems(project):
                connector = registry.create(project.system(name))
                with connector:
                    result = receive_units(ledger, engine, connector)
                out.append(result.as_dict())
                log.info("file drops %s: %s", name, result.as_dict())
            accepted = sum(int(r.get("accepted", 0)) for r in out)
            if accepted:
                stock_alerts(project, ledger, accepted, engine)
        return out


def file_drop_systems(project: Project) -> list[str]:
    """The systems whose connector takes file drops (``connector: files``), by name."""
    return sorted(name for name, s in project.systems.items() if s.connector == "files")


class ConveyorReconcileOperator(BaseOperator):
    """``conveyor reconcile --systems … --out …``: snapshots, compare, reports, stored run, stock
    alerts. Mismatches are the report's content, not a failure; a broken input (a missing file,
    an unknown system, a snapshot that cannot be read) fails the task."""

    template_fields: Sequence[str] = ("out", "project")

    def __init__(
        self,
        *,
        systems: Sequence[str],
        out: str,
        project: str | None = None,
        snapshots: Mapping[str, str] | None = None,
        as_of: str | None = None,
        runner: str = "airflow",
        alerts: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.systems = list(systems)
        self.out = out
        self.project = project
        self.snapshots = dict(snapshots or {})
        self.as_of = as_of
        self.runner = runner
        self.alerts = alerts

    def execute(self, context: Context) -> dict[str, Any]:
        """Run the reconciliation; its summary goes to the log and to XCom."""
        from conveyor.reconcile.service import RunOptions, run_reconciliation

        broken_input = (OSError, ValueError)  # as `conveyor reconcile` exits 2 on them
        with retry_only_transient(broken_input), open_hub(self.project) as (project, ledger):
            options = RunOptions(
                systems=self.systems,
                out=_within(project.root, self.out),
                snapshots={k: _within(project.root, v) for k, v in self.snapshots.items()},
                as_of=datetime.fromisoformat(self.as_of) if self.as_of else None,
                runner=self.runner,
                alerts=self.alerts,
            )
            outcome = run_reconciliation(project, ledger, options)
        summary = {
            "run_id": outcome.run_id,
            "as_of": outcome.record.as_of.isoformat(),
            "systems": outcome.result.systems,
            "summary": outcome.result.summary.as_dict(),
            "out": str(outcome.out),
            "reports": sorted(outcome.reports),
            "alerts": sum(1 for a in outcome.alerts if a.status == "accepted"),
        }
        log.info("reconciliation %s: %s", outcome.run_id, summary["summary"])
        return dict(_jsonable(summary))


class ConveyorReplayOperator(BaseOperator):
    """``conveyor replay``: parked deliveries of ``target`` (or all with ``everything``), whose
    reason contains ``reason_like``, or exactly ``ids`` — re-mapped and re-queued. With
    ``dry_run`` it only lists what it would replay and changes nothing."""

    template_fields: Sequence[str] = ("target", "reason_like", "ids", "list_only")

    def __init__(
        self,
        *,
        project: str | None = None,
        target: str | None = None,
        reason_like: str | None = None,
        ids: Sequence[int] | str = (),
        dry_run: bool | str = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.project = project
        self.target = target
        self.reason_like = reason_like
        self.ids = ids
        self.list_only = dry_run
        """``dry_run`` (``BaseOperator.dry_run`` is a method of Airflow's)."""

    def execute(self, context: Context) -> dict[str, Any]:
        """List (dry run) or replay; the chosen deliveries and the outcome go to XCom."""
        from conveyor.delivery.replay import replay_deliveries, select_parked
        from conveyor.delivery.status import parked_deliveries
        from conveyor.mapping import MappingEngine

        ids = parse_ids(self.ids)
        dry_run = _truthy(self.list_only)
        with retry_only_transient(), open_hub(self.project) as (project, ledger):
            engine = ledger.engine
            matching = parked_deliveries(
                engine, target=self.target or None, reason_like=self.reason_like or None, ids=ids
            )
            chosen = select_parked(engine, ids=[r["id"] for r in matching]) if matching else []
            listed = parked_deliveries(engine, ids=chosen) if chosen else []
            for row in listed:
                log.info(
                    "%s #%s → %s (%s %s): %s",
                    "would replay" if dry_run else "replaying",
                    row["id"],
                    row["target"],
                    row["type"],
                    row["key"],
                    row["reason"],
                )
            out: dict[str, Any] = {"dry_run": dry_run, "selected": chosen, "deliveries": listed}
            if not dry_run and chosen:
                result = replay_deliveries(engine, chosen, mapping=MappingEngine.load(project))
                out.update(result.as_dict())
        return dict(_jsonable(out))


class ConveyorMasterDataOperator(BaseOperator):
    """``conveyor mappings pull SYSTEM``: the ERP's material master into a staging folder and
    its diff against ``master_data/materials.csv``; ``master_data/`` is never written. A diff is
    the result, not a failure."""

    template_fields: Sequence[str] = ("system", "project", "since")

    def __init__(
        self,
        *,
        system: str,
        project: str | None = None,
        since: str | None = None,
        conveyor_conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.system = system
        self.project = project
        self.since = since
        self.conveyor_conn_id = conveyor_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        """Pull and diff; the summary goes to the log (one line per difference) and XCom."""
        from conveyor.airflow.hooks import ConveyorHook
        from conveyor.config import Project
        from conveyor.mapping.master_pull import pull_materials

        since = str(self.since or "").strip()
        with retry_only_transient((ValueError,)):
            project = Project.load(self.project)
            hook = ConveyorHook(self.conveyor_conn_id, system=self.system, project=project)
            connector = hook.connector()
            with connector:
                result = pull_materials(
                    project,
                    connector,
                    since=datetime.fromisoformat(since) if since not in ("", "None") else None,
                )
        for line in result.text():
            log.info("%s", line)
        return dict(_jsonable(result.as_dict()))


def parse_ids(ids: Sequence[int] | str | None) -> list[int]:
    """Delivery ids from a list or from the form's text (commas, spaces or lines)."""
    if ids is None:
        return []
    if isinstance(ids, str):
        return [int(part) for part in ids.replace(",", " ").split()]
    return [int(i) for i in ids]


def _truthy(value: bool | str) -> bool:
    if isinstance(value, str):
        return value.strip().lower() not in ("false", "0", "no", "")
    return bool(value)


def _within(root: Path, path: str) -> Path:
    """``path`` as given when absolute, else relative to the project."""
    chosen = Path(path).expanduser()
    return chosen if chosen.is_absolute() else root / chosen


def _jsonable(data: Any) -> Any:
    """``data`` with Decimals, datetimes and the like as the CLI's JSON writes them (XCom keeps
    JSON)."""
    import json

    from conveyor.messages import json_default

    return json.loads(json.dumps(data, default=json_default))
