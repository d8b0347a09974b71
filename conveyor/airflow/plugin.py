"""The operator's page in the Airflow UI: an Airflow plugin that serves the hub's operator routes
(status, parked, replay, stock, traces, reconciliations and their reports) under ``/conveyor``
behind Airflow's own authentication, and a "Conveyor" view in the navigation showing per target
the queue, retries, parked deliveries by reason (each with a replay through the
``conveyor_replay`` DAG) and the latest reconciliation.

The api-server has no command line of the hub's: the project comes from ``CONVEYOR_PROJECT`` (the
folder with ``conveyor.yaml``) and the ledger from ``CONVEYOR_DB_URL``, as for the CLI. Nothing
is opened at import (every Airflow process imports plugins): the project is loaded on the first
request, and a missing or broken one answers 503 with the reason.
"""

from __future__ import annotations

import json
import os
import secrets
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from airflow.api_fastapi.auth.managers.models.resource_details import AccessView, DagAccessEntity
from airflow.api_fastapi.core_api.security import requires_access_dag, requires_access_view
from airflow.plugins_manager import AirflowPlugin
from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse

from conveyor.api.app import Hub, HubDep, LazyHub, build_hub, mount_operations, status_report
from conveyor.errors import ConfigError

URL_PREFIX = "/conveyor"
REPLAY_DAG = "conveyor_replay"
REASON_FILTER_CHARS = 200
"""A replay's ``reason`` filter is "contains": the first characters of a long reason choose the
same deliveries without copying the whole text into the run's conf."""


def load_hub() -> Hub:
    """The hub of ``CONVEYOR_PROJECT`` (its ledger from ``CONVEYOR_DB_URL``); refused when the
    project has no ``conveyor.yaml``, rather than opening an empty ledger in Airflow's folder."""
    from conveyor.config import CONFIG_FILE, Project
    from conveyor.paths import project_dir

    root = project_dir()
    if not (root / CONFIG_FILE).is_file():
        raise ConfigError(
            f"no {CONFIG_FILE} in {root}: set CONVEYOR_PROJECT (and CONVEYOR_DB_URL) in the "
            "environment of the Airflow api-server",
            file=CONFIG_FILE,
        )
    return build_hub(Project.load(root))


def _anyone_allowed_in() -> None:
    """Reading needs no more than the app-wide check (Airflow's plugin view access)."""


def airflow_guard(scope: str) -> Any:
    """Airflow's permissions for the hub's scopes: whoever may see plugins may read; replaying
    needs the right to trigger the ``conveyor_replay`` DAG, as the DAG's own form does."""
    if scope == "read":
        return Depends(_anyone_allowed_in)
    if scope == "operate":
        return Depends(requires_access_dag("POST", DagAccessEntity.RUN, param_dag_id=REPLAY_DAG))
    raise ValueError(f"scope {scope!r} is not served inside Airflow")


def create_app(source: Hub | LazyHub | None = None) -> FastAPI:
    """The plugin's application: the page at ``/`` and the hub's operator routes under ``/v1``,
    every one behind Airflow's authentication (plugin view access); the hub of
    ``CONVEYOR_PROJECT``, loaded on first use, unless ``source`` gives one."""
    app = FastAPI(
        title="Conveyor (operator's page)",
        dependencies=[Depends(requires_access_view(AccessView.PLUGINS))],
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    mount_operations(app, source or LazyHub(load_hub), airflow_guard)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page(request: Request, hub: HubDep) -> HTMLResponse:
        """The operator's page (rendered here, so it works without any script)."""
        nonce = secrets.token_urlsafe(16)
        html = render_page(overview(hub), airflow_root=_airflow_root(request), nonce=nonce)
        policy = (
            f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'unsafe-inline'; "
            "connect-src 'self'; frame-ancestors 'self'; base-uri 'none'; form-action 'none'"
        )
        return HTMLResponse(
            html, headers={"Cache-Control": "no-store", "Content-Security-Policy": policy}
        )

    return app


def _airflow_root(request: Request) -> str:
    """The Airflow UI's base path (the plugin's mount point without ``/conveyor``)."""
    root = str(request.scope.get("root_path") or "")
    return root[: -len(URL_PREFIX)] if root.endswith(URL_PREFIX) else ""


def overview(hub: Hub, *, now: datetime | None = None) -> dict[str, Any]:
    """What the page shows: per target the queue, retries, parked by reason, the oldest open
    delivery's age and the last delivery; and the latest reconciliation."""
    from conveyor.delivery.status import OPEN, parked_reasons
    from conveyor.reconcile.runs import RunStore

    now = now or datetime.now(UTC)
    status = status_report(hub)
    reasons: dict[str, list[dict[str, Any]]] = {}
    for group in parked_reasons(hub.ledger.engine):
        reason = group["reason"]
        # no reason, no filter to replay by (an empty one would take the whole target)
        conf = reason and {
            "target": group["target"],
            "reason_like": reason[:REASON_FILTER_CHARS],
            "ids": None,
            "dry_run": True,
        }
        reasons.setdefault(group["target"], []).append(
            {
                **group,
                "reason": reason or "(no reason recorded)",
                "since": _age(group["oldest_at"], now),
                "conf": conf,
            }
        )
    targets = []
    for name, counts in status["targets"].items():
        times = status["times"][name]
        targets.append(
            {
                "name": name,
                "queue": sum(counts.get(state, 0) for state in OPEN),
                "unpublished": counts.get("unpublished", 0),
                "retrying": counts.get("retrying", 0),
                "parked": counts.get("parked", 0) + counts.get("needs_check", 0),
                "delivered": counts.get("delivered", 0),
                "oldest_open": _age(times["oldest_open_at"], now),
                "oldest_open_at": times["oldest_open_at"],
                "last_delivered": _age(times["last_delivered_at"], now),
                "last_delivered_at": times["last_delivered_at"],
                "reasons": reasons.get(name, []),
            }
        )
    runs = RunStore(hub.ledger.engine).history(limit=1)
    latest = runs[0] if runs else None
    report = None
    if latest is not None:
        names = RunStore(hub.ledger.engine).get(latest["run_id"]).reports
        report = "report.html" if "report.html" in names else None
    return {
        "now": now,
        "transport": status["transport"],
        "targets": targets,
        "unrouted": status["unrouted"]["count"],
        "stuck": status["stuck"],
        "workers": sum(1 for w in status["workers"] if w["alive"]),
        "reconciliation": latest,
        "report": report,
        "replay_dag": REPLAY_DAG,
    }


def _age(when: datetime | None, now: datetime) -> str | None:
    """``when`` as an age an operator reads at a glance: ``45 s``, ``12 min``, ``3 h 5 min``,
    ``2 d 4 h``."""
    if when is None:
        return None
    seconds = max(0, int((now - when).total_seconds()))
    if seconds < 60:
        return f"{seconds} s"
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if minutes < 60:
        return f"{minutes} min"
    if hours < 24:
        return f"{hours} h {minutes % 60} min"
    return f"{days} d {hours % 24} h"


def render_page(data: dict[str, Any], *, airflow_root: str = "", nonce: str = "") -> str:
    """The page's HTML (jinja2, every value escaped; strings redacted once more)."""
    from conveyor.api.guards import jsonable
    from conveyor.redact import redact_value

    template = _templates().get_template("operator.html.j2")
    page: str = template.render(
        **redact_value(data),
        airflow_root=airflow_root,
        nonce=nonce,
        as_json=lambda value: json.dumps(jsonable(value), sort_keys=True),
        percent=_percent,
        when=_when,
    )
    return page


def _percent(value: Decimal | float | None) -> str:
    return "–" if value is None else f"{Decimal(str(value)):.2f} %"


def _when(value: datetime | None) -> str:
    return "" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _templates() -> Any:
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    folder = os.path.join(os.path.dirname(__file__), "templates")
    return Environment(
        loader=FileSystemLoader(folder),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )


app = create_app()


class ConveyorPlugin(AirflowPlugin):
    """The hub's operator routes and page inside the Airflow UI."""

    name = "conveyor"
    fastapi_apps = [{"app": app, "url_prefix": URL_PREFIX, "name": "Conveyor"}]  # noqa: RUF012
    external_views = [  # noqa: RUF012
        {
            "name": "Conveyor",
            "href": f"{URL_PREFIX}/",
            "url_route": "conveyor",
            "destination": "nav",
            "category": "browse",
        }
    ]
