"""The hub's HTTP API (FastAPI): messages in, stock and traces out, parked deliveries replayed,
status, reconciliations, health and metrics. ``create_app(project)`` builds it; ``conveyor serve``
serves it alone and ``conveyor up`` beside the workers and pollers.

Request bodies are never parsed by FastAPI: they are read as bytes (``guards.read_body``, with
the size limit), then parsed with the project's safe JSON (``conveyor.messages``: depth, size,
surrogates) or handed to a format reader, as any file would be. Every route but ``/healthz`` and
``/readyz`` needs a bearer token with the route's scope (``conveyor.api.tokens``). Answers carry
quantities as exact decimal strings and pass through ``conveyor.redact``.

The routes take their guard as a parameter: ``mount_operations`` puts the operator's routes on
another application behind its own authentication (the Airflow plugin, ``conveyor.airflow``).
"""

from __future__ import annotations

import asyncio
import csv
import io
import logging
import re
import threading
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypedDict, Unpack

from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel
from pydantic import ValidationError as ModelError
from sqlalchemy.exc import DBAPIError, OperationalError

from conveyor.api import schemas as s
from conveyor.api.batcher import Admission, Busy, GroupCommit
from conveyor.api.guards import BodyLimit, jsonable, read_body, xml_refusal
from conveyor.api.metrics import Metrics
from conveyor.api.tokens import TokenInfo, TokenStore
from conveyor.errors import ConfigError
from conveyor.redact import redact_value, safe_text

if TYPE_CHECKING:
    from conveyor.config import Project
    from conveyor.ledger import AcceptResult, Ledger

log = logging.getLogger(__name__)
VERSION = "1"
INLINE_PARSE_BYTES = 64 * 1024


@dataclass(frozen=True)
class ApiSettings:
    """``api:`` in ``conveyor.yaml`` (every key optional)."""

    max_body_bytes: int = 16 << 20
    """Largest request body; over it: 413 (told before reading when Content-Length says so)."""
    max_messages: int = 1000
    """Most canonical messages in one ``POST /v1/messages``."""
    max_page: int = 10_000
    """Most stock positions or parked deliveries in one page."""
    cors_origins: tuple[str, ...] = ()
    """Browser origins allowed to call the API (none: CORS off)."""
    check_broker: bool = True
    """``/readyz`` also opens a broker connection when one is configured."""
    max_queued_messages: int = 10_000
    """Most messages waiting for the ledger (group commit); over it: 503 with ``Retry-After``."""
    max_queued_bodies: int = 16
    """Most ``/v1/ingest`` bodies being taken in or waiting to be; over it: 503 likewise."""
    retry_after_s: int = 2
    """The ``Retry-After`` of a 503 answered because the ledger is busy or unreachable."""

    @classmethod
    def of(cls, project: Project) -> ApiSettings:
        """Settings from the project's ``api:`` section."""
        raw = dict(project.raw.get("api") or {})
        if "cors_origins" in raw:
            raw["cors_origins"] = tuple(raw["cors_origins"])
        return cls(**raw)


@dataclass
class Hub:
    """What the routes share: the project, its ledger, the mapping engine (loaded on first use),
    tokens, metrics and the alert checker."""

    project: Project
    ledger: Ledger
    settings: ApiSettings
    tokens: TokenStore
    metrics: Metrics
    alerts: AlertChecker
    accepter: GroupCommit
    bodies: Admission
    """``/v1/ingest`` bodies in progress (bounded: ``api.max_queued_bodies``)."""
    _engine: Any = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def mapping_engine(self) -> Any:
        """The project's mapping engine (loaded once)."""
        with self._lock:
            if self._engine is None:
                from conveyor.mapping import MappingEngine

                self._engine = MappingEngine.load(self.project)
            return self._engine


class AlertChecker:
    """The stock-alert check after accepts (``alerts.on_accept``), run in one background thread
    so that a request never waits for it: nudges while it runs coalesce into one more check."""

    def __init__(self, project: Project, ledger: Ledger) -> None:
        self.project = project
        self.ledger = ledger
        self._wake = threading.Event()
        self._pending = 0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._reference: Any = None

    def nudge(self, accepted: int) -> None:
        """``accepted`` new messages were stored: check for alerts soon."""
        if accepted <= 0 or not self.project.alerts_on_accept:
            return
        with self._lock:
            self._pending += accepted
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="alerts", daemon=True)
                self._thread.start()
        self._wake.set()

    def _run(self) -> None:
        from conveyor.reconcile.alerts import check_after_accept

        while True:
            self._wake.wait()
            self._wake.clear()
            with self._lock:
                accepted, self._pending = self._pending, 0
            try:
                if self._reference is None:
                    from conveyor.reconcile.reference import load_reference

                    self._reference = load_reference(self.project)
                check_after_accept(self.project, self.ledger, accepted, self._reference)
            except Exception as exc:  # what was accepted stays; the next check catches up
                log.warning("stock alerts not checked: %s", safe_text(exc))


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    """A JSON answer: Decimals exact, datetimes ISO, every string redacted."""
    return JSONResponse(redact_value(jsonable(data)), status_code=status, headers=headers)


def _problems(error: Any) -> list[dict[str, Any]]:
    if error is None:
        return []
    problems = getattr(error, "problems", None)
    if problems:
        return [
            {
                "path": p.field,
                "rule": p.rule,
                "value": None if p.value is None else safe_text(p.value, 200),
                "message": safe_text(p.message, 500),
            }
            for p in problems
        ]
    return [{"path": "$", "rule": "invalid", "value": None, "message": safe_text(error, 500)}]


def _item(index: int, result: AcceptResult) -> dict[str, Any]:
    item: dict[str, Any] = {
        "index": index,
        "status": result.status,
        "message_id": result.message_id,
        "source": result.source,
        "key": result.key,
    }
    if result.parked_id is not None:
        item["parked_id"] = result.parked_id
    if result.error is not None:
        item["errors"] = _problems(result.error)
    return item


# ---------------------------------------------------------------------- security
_bearer = HTTPBearer(auto_error=False, description="A token from `conveyor tokens add`.")


def _scope(scope: str) -> Callable[..., Awaitable[TokenInfo]]:
    async def check(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> TokenInfo:
        hub: Hub = request.app.state.hub
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise HTTPException(
                401, "a bearer token is required", headers={"WWW-Authenticate": "Bearer"}
            )
        token = hub.tokens.check(credentials.credentials)
        if token is None:
            raise HTTPException(
                401, "unknown or revoked token", headers={"WWW-Authenticate": "Bearer"}
            )
        if not token.grants(scope):
            raise HTTPException(403, f"token {token.name!r} ({token.scope}) lacks scope {scope!r}")
        return token

    return check


Guard = Callable[[str], Any]
"""From a scope (``ingest``, ``read``, ``operate``) to the FastAPI dependency that requires it."""


def token_guard(scope: str) -> Any:
    """The hub's own guard: a bearer token from ``conveyor tokens`` with ``scope``."""
    return Depends(_scope(scope))


AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": s.Error, "description": "No token, or a token the hub does not know."},
    403: {"model": s.Error, "description": "The token lacks the route's scope."},
    413: {"model": s.Error, "description": "The body is over `api.max_body_bytes`."},
    503: {
        "model": s.Error,
        "description": "The ledger cannot be reached, or is behind (more than "
        "`api.max_queued_messages` messages or `api.max_queued_bodies` bodies wait): nothing was "
        "taken, send again after `Retry-After` seconds.",
        "headers": {
            "Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}}
        },
    },
}
QUERY_ERRORS: dict[int | str, dict[str, Any]] = {
    **AUTH_ERRORS,
    422: {"model": s.Error, "description": "A query parameter is not valid."},
}


class LazyHub:
    """A hub built on first use: an application that mounts the routes before any request
    (the Airflow plugin, imported by every Airflow process) opens no project until asked."""

    def __init__(self, build: Callable[[], Hub]) -> None:
        self._build = build
        self._hub: Hub | None = None
        self._lock = threading.Lock()

    @property
    def built(self) -> Hub | None:
        """The hub if a caller has built it already."""
        return self._hub

    def get(self) -> Hub:
        """The hub (built by the first caller)."""
        with self._lock:
            if self._hub is None:
                self._hub = self._build()
            return self._hub


def _app_hub(request: Request) -> Hub:
    found: Hub | LazyHub = request.app.state.hub
    return found.get() if isinstance(found, LazyHub) else found


HubDep = Annotated[Hub, Depends(_app_hub)]

DESCRIPTION = """
The hub's own API. Every route but `/healthz` and `/readyz` needs `Authorization: Bearer <token>`
(tokens from `conveyor tokens add NAME --scope ingest|read|operate`): `ingest` may post messages
and bodies, `read` may read everything under `/v1` and `/metrics`, `operate` may read and replay.

**Posting canonical messages.** `POST /v1/messages` takes one message or an array of up to
`api.max_messages`. Each message is accepted, a duplicate (same source + key and content), or a
conflict (same key, other content: parked). When every message is valid the answer is **202**
with one result per message. When any is invalid the answer is **422** with the same per-message
results — the valid messages beside the invalid ones **are stored** (their results say
`accepted`), and the invalid ones are parked with their JSON path, rule and value. Sending the
whole array again is safe: the stored ones come back as `duplicate`.

Quantities are exact decimal strings. Bodies over `api.max_body_bytes` get 413; JSON nested deeper
than `limits.max_json_depth` and XML with a document type declaration are refused.
"""


class HubParts(TypedDict, total=False):
    """What a caller may give the hub instead of what the project says."""

    ledger: Ledger | None
    settings: ApiSettings | None
    tokens: TokenStore | None
    metrics: Metrics | None


def create_app(project: Project, **parts: Unpack[HubParts]) -> FastAPI:
    """The API of ``project`` (its ledger unless one is given)."""
    hub = build_hub(project, **parts)
    settings = hub.settings
    app = FastAPI(
        title="Conveyor hub API",
        version=VERSION,
        description=DESCRIPTION,
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.hub = hub
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    _error_handlers(app)
    _routes(app, token_guard)
    return app


def build_hub(project: Project, **parts: Unpack[HubParts]) -> Hub:
    """What the routes of ``project`` share (its ledger unless one is given)."""
    from conveyor.ledger import Ledger

    ledger = parts.get("ledger") or Ledger.open(project)
    settings = parts.get("settings") or ApiSettings.of(project)
    metrics = parts.get("metrics") or Metrics(ledger, systems=project.systems)
    metrics.project = project
    return Hub(
        project=project,
        ledger=ledger,
        settings=settings,
        tokens=parts.get("tokens") or TokenStore.of_project(project.root),
        metrics=metrics,
        alerts=AlertChecker(project, ledger),
        accepter=GroupCommit(
            ledger, max_queued=settings.max_queued_messages, retry_after_s=settings.retry_after_s
        ),
        bodies=Admission("bodies", settings.max_queued_bodies, settings.retry_after_s),
    )


def mount_operations(app: FastAPI, hub: Hub | LazyHub, guard: Guard) -> None:
    """The operator's routes (stock, traces, parked, replay, status, reconciliations) on
    another application, each behind ``guard`` instead of the hub's tokens: how the Airflow
    plugin serves them under Airflow's own authentication."""
    app.state.hub = hub
    app.add_middleware(BodyLimit, limit=ApiSettings.max_body_bytes)
    _error_handlers(app)
    operation_routes(app, guard)


def _retry_after_s(request: Request) -> int:
    """The hub's ``api.retry_after_s``; the default while a lazily built hub is not built yet."""
    found: Hub | LazyHub = request.app.state.hub
    hub = found if isinstance(found, Hub) else found.built
    return (hub.settings if hub is not None else ApiSettings()).retry_after_s


def _error_handlers(app: FastAPI) -> None:
    @app.exception_handler(OperationalError)
    @app.exception_handler(DBAPIError)
    async def _database_down(request: Request, exc: Exception) -> JSONResponse:
        from conveyor.cli.common import database_problem

        log.error("ledger error on %s: %s", request.url.path, safe_text(exc))
        return _json(
            {"detail": database_problem(exc) or "the ledger failed"},
            503,
            headers={"Retry-After": str(_retry_after_s(request))},
        )

    @app.exception_handler(Busy)
    async def _busy(request: Request, exc: Exception) -> JSONResponse:
        # back pressure: the ledger is behind, nothing of this request was taken
        assert isinstance(exc, Busy)
        _app_hub(request).metrics.busy(exc.what)
        return _json({"detail": str(exc)}, 503, headers={"Retry-After": str(exc.retry_after_s)})

    @app.exception_handler(ConfigError)
    async def _misconfigured(request: Request, exc: Exception) -> JSONResponse:
        # a broken mapping or master-data file: nothing was taken, the sender may try again
        log.error("configuration error on %s: %s", request.url.path, safe_text(exc))
        return _json({"detail": f"the hub's configuration is broken: {safe_text(exc, 500)}"}, 503)


def _routes(app: FastAPI, guard: Guard) -> None:
    _service_routes(app)
    _intake_routes(app, guard)
    operation_routes(app, guard)
    _metrics_route(app, guard)


def _service_routes(app: FastAPI) -> None:
    # ------------------------------------------------------------------ health
    @app.get("/healthz", tags=["health"], response_model=s.Health)
    def healthz() -> dict[str, str]:
        """The process is up (no dependency is asked)."""
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["health"],
        response_model=s.Ready,
        responses={503: {"model": s.Ready, "description": "Ledger or broker unreachable."}},
    )
    def readyz(hub: HubDep) -> JSONResponse:
        """The ledger answers (and the broker, when one is configured)."""
        from sqlalchemy import text

        checks: dict[str, str] = {}
        try:
            with hub.ledger.engine.connect() as conn:
                conn.execute(text("select 1"))
            checks["ledger"] = "ok"
        except Exception as exc:
            checks["ledger"] = safe_text(exc, 300)
        broker = hub.project.broker_url
        if broker and hub.settings.check_broker:
            checks["broker"] = _broker_check(broker)
        ready = all(v == "ok" for v in checks.values())
        answer = {"status": "ok" if ready else "unavailable", "checks": checks}
        return _json(answer, 200 if ready else 503)


def _intake_routes(app: FastAPI, guard: Guard) -> None:
    # ------------------------------------------------------------------ messages in
    @app.post(
        "/v1/messages",
        tags=["messages"],
        status_code=202,
        response_model=s.AcceptAnswer,
        responses={
            **AUTH_ERRORS,
            422: {
                "model": s.AcceptAnswer,
                "description": "At least one message is invalid (parked); the valid ones are "
                "stored. Per-message results as in 202.",
            },
        },
        openapi_extra={"requestBody": s.MESSAGES_BODY},
        dependencies=[guard("ingest")],
    )
    async def post_messages(request: Request) -> JSONResponse:
        """Accept one canonical message or an array of them (see the API description)."""
        hub = _app_hub(request)
        hub.accepter.admission.check()  # the ledger is behind: refuse before reading the body
        body = await read_body(request, hub.settings.max_body_bytes)
        request_id = uuid.uuid4().hex
        if len(body) < INLINE_PARSE_BYTES:  # a small body parses faster than a thread hop
            records, origins = _parse_messages(hub, body, request_id)
        else:
            records, origins = await run_in_threadpool(_parse_messages, hub, body, request_id)
        results = await asyncio.wrap_future(hub.accepter.submit(records, origins))
        answer, status = _answer_messages(hub, records, results, request_id)
        return _json(answer, status)

    @app.post(
        "/v1/ingest/{system}/{message_type}",
        tags=["messages"],
        response_model=s.IngestAnswer,
        responses={
            **AUTH_ERRORS,
            400: {"model": s.Error, "description": "An XML body with a DOCTYPE or ENTITY."},
            404: {"model": s.Error, "description": "Unknown system or message type."},
            415: {"model": s.Error, "description": "A Content-Type whose format is not installed."},
            422: {"model": s.IngestAnswer, "description": "Some records were parked."},
        },
        openapi_extra={"requestBody": s.INGEST_BODY},
        dependencies=[guard("ingest")],
    )
    async def post_ingest(request: Request, system: str, message_type: str) -> JSONResponse:
        """A body in ``system``'s own format (by Content-Type: JSON, CSV, B2MML or IDoc XML),
        mapped and accepted as a dropped file would be: counts and the parked reasons."""
        from conveyor.messages import MESSAGE_TYPES

        hub = _app_hub(request)
        declared = hub.project.systems.get(system)
        if declared is None:
            raise HTTPException(404, f"unknown system {system!r}")
        if message_type not in MESSAGE_TYPES:
            raise HTTPException(404, f"unknown message type {message_type!r}")
        hub.bodies.enter(1)  # the ledger is behind: refuse before reading the body
        try:
            return await _take_body(request, hub, declared, message_type)
        finally:
            hub.bodies.leave(1)

    async def _take_body(
        request: Request, hub: Hub, declared: Any, message_type: str
    ) -> JSONResponse:
        from conveyor import formats
        from conveyor.api.ingest import format_for, is_xml, media_type

        system = declared.name
        header = request.headers.get("content-type")
        body = await read_body(request, hub.settings.max_body_bytes)
        request_id = uuid.uuid4().hex
        if is_xml(header) or body.lstrip()[:1] == b"<":
            refusal = xml_refusal(body)
            if refusal is not None:
                await run_in_threadpool(
                    hub.ledger.park,
                    stage="receive",
                    reason=refusal,
                    record=safe_text(body.decode("utf-8", "replace"), 4000),
                    system=system,
                    message_type=message_type,
                    file=f"http:{request_id}",
                )
                hub.metrics.count(system, message_type, "parked")
                raise HTTPException(400, refusal)
        name = format_for(header, declared)
        if name is None:
            raise HTTPException(415, f"Content-Type {media_type(header)!r} is not read here")
        try:
            reader = formats.reader(name)
        except ConfigError:
            raise HTTPException(415, f"format {name!r} is not installed") from None
        result, problems = await run_in_threadpool(
            _ingest, hub, declared, message_type, body, name, reader, request_id
        )
        answer = {
            "system": system,
            "type": message_type,
            "format": name,
            "unit": f"http:{request_id}",
            "already_taken": result.already_taken > 0,
            "failed": result.failed > 0,
            "records": result.records,
            "counts": result.counts,
            "parked": [
                {
                    "line": p.get("line"),
                    "status": p.get("status", "parked"),
                    "reason": safe_text(p.get("reason", ""), 1000),
                }
                for p in problems[:1000]
            ],
            "errors": result.errors,
        }
        if result.errors:
            return _json(answer, 503)
        bad = result.failed + result.counts.get("parked", 0) + result.counts.get("rejected", 0)
        return _json(answer, 422 if bad else 200)


def operation_routes(app: FastAPI, guard: Guard) -> None:
    """Stock, alerts, traces, parked, replay, status and reconciliations on ``app``."""

    # ------------------------------------------------------------------ stock
    @app.get(
        "/v1/stock",
        tags=["stock"],
        response_model=s.StockPage,
        responses={
            **QUERY_ERRORS,
            200: {"content": {"text/csv": {"schema": {"type": "string"}}}},
        },
        dependencies=[guard("read")],
    )
    def get_stock(
        request: Request,
        hub: HubDep,
        material: str | None = None,
        location: str | None = None,
        lot: str | None = None,
        plant: str | None = None,
        offset: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
        format: Literal["json", "csv"] | None = None,
    ) -> Response:
        """Current stock positions in base units (zero positions left out), paged; CSV with
        ``Accept: text/csv`` or ``format=csv``."""
        positions = hub.ledger.positions(material=material, location=location, lot=lot)
        if plant:
            positions = [p for p in positions if p.location.split("/", 1)[0] == plant]
        limit = min(limit, hub.settings.max_page)
        page = positions[offset : offset + limit]
        rows = [
            {
                "material": p.material,
                "location": p.location,
                "lot": p.lot or None,
                "quantity": p.quantity,
                "uom": p.uom,
                "updated_at": p.updated_at,
            }
            for p in page
        ]
        wants_csv = format == "csv" or (
            format is None and "text/csv" in request.headers.get("accept", "")
        )
        if wants_csv:
            out = io.StringIO()
            writer = csv.writer(out, lineterminator="\n")
            writer.writerow(["material", "location", "lot", "quantity", "uom", "updated_at"])
            for row in jsonable(rows):
                writer.writerow([_csv_cell(row[k]) for k in row])
            return PlainTextResponse(out.getvalue(), media_type="text/csv")
        following = offset + len(page)
        return _json(
            {
                "positions": rows,
                "total": len(positions),
                "offset": offset,
                "limit": limit,
                "next_offset": following if following < len(positions) else None,
            }
        )

    @app.get(
        "/v1/stock/alerts",
        tags=["stock"],
        response_model=s.Alerts,
        responses=AUTH_ERRORS,
        dependencies=[guard("read")],
    )
    def get_alerts(hub: HubDep) -> JSONResponse:
        """Current safety-stock and component-shortage alerts."""
        from conveyor.reconcile.alerts import evaluate
        from conveyor.reconcile.reference import load_reference

        alerts = evaluate(hub.ledger, load_reference(hub.project))
        return _json(
            {
                "alerts": [
                    {
                        "alert": a.alert,
                        "material": a.material,
                        "location": a.location,
                        "order_id": a.order_id,
                        "quantity": a.quantity,
                        "required": a.required,
                        "shortage": a.shortage,
                        "uom": a.uom,
                    }
                    for a in alerts
                ]
            }
        )

    # ------------------------------------------------------------------ messages out
    @app.get(
        "/v1/messages/{term:path}",
        tags=["messages"],
        response_model=s.Trace,
        responses={**AUTH_ERRORS, 404: {"model": s.Error, "description": "Nothing known."}},
        dependencies=[guard("read")],
    )
    def get_message(hub: HubDep, term: str) -> JSONResponse:
        """A message by id or business key (also an order id or lot): its status, stock effect
        and deliveries per target — what ``conveyor trace`` shows."""
        found = hub.ledger.trace(term)
        if not found["messages"]:
            raise HTTPException(404, "no message with this id or key")
        for message in found["messages"]:
            message["status"] = _message_status(message)
        return _json(found)

    @app.get(
        "/v1/parked",
        tags=["operations"],
        response_model=s.Parked,
        responses=QUERY_ERRORS,
        dependencies=[guard("read")],
    )
    def get_parked(
        hub: HubDep,
        target: str | None = None,
        reason: str | None = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    ) -> JSONResponse:
        """Parked and needs-check deliveries with their reasons, oldest first."""
        from conveyor.delivery.status import parked_deliveries

        rows = parked_deliveries(
            hub.ledger.engine,
            target=target,
            reason_like=reason,
            limit=min(limit, hub.settings.max_page),
        )
        return _json({"deliveries": rows})

    @app.post(
        "/v1/replay",
        tags=["operations"],
        response_model=s.ReplayAnswer,
        responses={**AUTH_ERRORS, 422: {"model": s.Error, "description": "Nothing was chosen."}},
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": s.ReplayRequest.model_json_schema()}},
            }
        },
        dependencies=[guard("operate")],
    )
    async def post_replay(request: Request) -> JSONResponse:
        """Re-map and re-queue parked deliveries chosen by ids, target and reason (``all`` for
        every one); ``dry_run`` lists what would go without touching anything."""
        hub = _app_hub(request)
        body = await read_body(request, hub.settings.max_body_bytes)
        asked = _model(s.ReplayRequest, body)
        if not (asked.ids or asked.target or asked.reason or asked.all):
            raise HTTPException(422, "say what to replay: ids, target, reason or all")
        answer = await run_in_threadpool(_replay, hub, asked)
        return _json(answer)

    @app.get(
        "/v1/status",
        tags=["operations"],
        response_model=s.Status,
        responses=AUTH_ERRORS,
        dependencies=[guard("read")],
    )
    def get_status(hub: HubDep) -> JSONResponse:
        """Per target: deliveries by status, the oldest open one and the last delivery;
        unrouted messages; live workers; stuck deliveries — what ``conveyor status`` shows
        (queue depths from the ledger)."""
        return _json(status_report(hub))

    # ------------------------------------------------------------------ reconciliation
    @app.get(
        "/v1/reconciliations",
        tags=["reconciliation"],
        response_model=s.Runs,
        responses=QUERY_ERRORS,
        dependencies=[guard("read")],
    )
    def get_runs(
        hub: HubDep,
        system: str | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    ) -> JSONResponse:
        """Stored reconciliation runs, newest first, with accuracy and its change."""
        from conveyor.reconcile.runs import RunStore

        return _json({"runs": RunStore(hub.ledger.engine).history(limit=limit, system=system)})

    @app.get(
        "/v1/reconciliations/{run}",
        tags=["reconciliation"],
        response_model=s.Run,
        responses={**AUTH_ERRORS, 404: {"model": s.Error, "description": "No such run."}},
        dependencies=[guard("read")],
    )
    def get_run(hub: HubDep, run: str) -> JSONResponse:
        """One run: its summary, inputs, and its report files (names and hashes; the files
        themselves under ``/v1/reconciliations/{run}/reports/{name}``)."""
        from conveyor.reconcile.runs import RunError, RunStore

        store = RunStore(hub.ledger.engine)
        try:
            record = store.get(run)
        except RunError as exc:
            raise HTTPException(404, str(exc)) from None
        return _json(
            {
                **record.as_dict(),
                "lines": record.lines,
                "matched": record.matched,
                "accuracy_pct": record.accuracy_pct,
                "variance_value": record.variance_value,
                "inputs": store.inputs(record),
            }
        )

    @app.get(
        "/v1/reconciliations/{run}/reports/{name}",
        tags=["reconciliation"],
        responses={
            **AUTH_ERRORS,
            200: {"content": {"application/octet-stream": {}}, "description": "The file."},
            404: {"model": s.Error, "description": "No such run or file."},
        },
        dependencies=[guard("read")],
    )
    def get_run_report(hub: HubDep, run: str, name: str) -> Response:
        """One report file of a run (HTML, XLSX, CSV or JSON), as the run wrote it."""
        from pathlib import Path

        from fastapi.responses import FileResponse

        from conveyor.reconcile.runs import RunError, RunStore

        try:
            record = RunStore(hub.ledger.engine).get(run)
        except RunError as exc:
            raise HTTPException(404, str(exc)) from None
        if name not in record.reports or not record.out_dir or "/" in name or "\\" in name:
            raise HTTPException(404, f"run {record.run_id} has no report {name!r}")
        path = Path(record.out_dir) / name
        if not path.is_file():
            raise HTTPException(404, f"report {name!r} is no longer in {record.out_dir}")
        # the HTML report opens in the browser (it carries its own Content-Security-Policy and
        # loads nothing); the other formats download
        shown = "inline" if name.endswith(".html") else "attachment"
        return FileResponse(path, filename=name, content_disposition_type=shown)


def _metrics_route(app: FastAPI, guard: Guard) -> None:
    # ------------------------------------------------------------------ metrics
    @app.get(
        "/metrics",
        tags=["health"],
        responses={
            **AUTH_ERRORS,
            200: {"content": {"text/plain": {"schema": {"type": "string"}}}},
        },
        dependencies=[guard("read")],
    )
    def get_metrics(hub: HubDep) -> Response:
        """Prometheus exposition of the hub's metrics (see ``docs/api.md``)."""
        from prometheus_client import CONTENT_TYPE_LATEST

        return Response(hub.metrics.render(), media_type=CONTENT_TYPE_LATEST)


def status_report(hub: Hub) -> dict[str, Any]:
    """What ``GET /v1/status`` answers (every configured target, with or without deliveries)."""
    from conveyor.delivery import status as queries
    from conveyor.delivery.maintenance import stuck_deliveries
    from conveyor.delivery.worker import project_targets

    engine = hub.ledger.engine
    counts = queries.delivery_counts(engine)
    chosen = sorted(set(counts) | set(project_targets(hub.project)))
    times = queries.delivery_times(engine)
    none = {"oldest_open_at": None, "last_delivered_at": None}
    return {
        "transport": "rabbitmq" if hub.project.broker_url else "embedded",
        "targets": {t: counts.get(t, dict.fromkeys(queries.STATUSES, 0)) for t in chosen},
        "times": {t: times.get(t, none) for t in chosen},
        "unrouted": queries.unrouted(engine),
        "workers": queries.workers(engine),
        "stuck": len(stuck_deliveries(engine)),
    }


_DECIMAL = re.compile(r"-?[0-9]+(\.[0-9]+)?")


def _csv_cell(value: Any) -> str:
    """A cell of a CSV answer: an exact decimal as it is (a negative quantity is no formula);
    any other text neutralised as in the reports (``=``, ``+``, ``-``, ``@``, their full-width
    forms, after leading whitespace, or a tab / CR first)."""
    from conveyor.reconcile.reports import neutralise

    text = "" if value is None else str(value)
    return text if _DECIMAL.fullmatch(text) else neutralise(text)


def _message_status(message: dict[str, Any]) -> str:
    deliveries = message.get("deliveries") or []
    if not deliveries:
        return "accepted" if message.get("routes") else "unrouted"
    statuses = {d["status"] for d in deliveries}
    if statuses == {"delivered"}:
        return "delivered"
    if statuses & {"parked", "needs_check"}:
        return "parked"
    return "in_delivery"


def _broker_check(url: str) -> str:
    try:
        import pika

        params = pika.URLParameters(url.split("?", 1)[0])
        params.socket_timeout = 2
        params.blocked_connection_timeout = 2
        connection = pika.BlockingConnection(params)
        connection.close()
    except Exception as exc:
        return safe_text(exc, 300)
    return "ok"


def _model(model: type[BaseModel], body: bytes) -> Any:
    """``body`` parsed with the safe JSON reader and checked against ``model`` (422 with the
    problems otherwise)."""
    from conveyor.mapping.readers import decode_bytes
    from conveyor.messages import parse_json

    text, encoding, marked = decode_bytes(body)
    value = parse_json(text, encoding=encoding, marked=marked)
    if isinstance(value, Exception):
        raise HTTPException(422, safe_text(value, 1000))
    try:
        return model.model_validate(value)
    except ModelError as exc:
        raise HTTPException(422, safe_text(exc, 1000)) from None


def _parse_messages(hub: Hub, body: bytes, request_id: str) -> tuple[list[Any], list[Any]]:
    """The records of one ``POST /v1/messages`` body with their origins (``http:<request>`` and
    line); a record that cannot be read is an ``UnreadableRecordError`` in its place."""
    from conveyor.errors import UnreadableRecordError
    from conveyor.ledger import Origin
    from conveyor.mapping.readers import decode_bytes
    from conveyor.messages import records_of_text

    text, encoding, marked = decode_bytes(body)
    records: list[Any] = []
    origins: list[Origin | None] = []
    name = f"http:{request_id}"
    found = records_of_text(text, hub.project.limits, encoding=encoding, marked=marked)
    if not text.strip():  # parked like any unreadable record, so the answer has one shape
        empty = UnreadableRecordError(
            "empty body: send one canonical message or an array of them", rule="json", text=""
        )
        found = iter([(1, empty)])
    for line, record in found:
        if len(records) >= hub.settings.max_messages:
            raise HTTPException(
                413,
                f"more than {hub.settings.max_messages} messages in one body (api.max_messages)",
            )
        records.append(record)
        origins.append(Origin(file=name, line=line))
    return records, origins


def _answer_messages(
    hub: Hub, records: list[Any], results: list[AcceptResult], request_id: str
) -> tuple[dict[str, Any], int]:
    """The answer to one ``POST /v1/messages`` and its status; the metrics counted."""
    items = []
    counts: dict[str, int] = {}
    for index, (record, result) in enumerate(zip(records, results, strict=True)):
        items.append(_item(index, result))
        counts[result.status] = counts.get(result.status, 0) + 1
        message_type = record.get("type") if isinstance(record, dict) else None
        hub.metrics.count(result.source, message_type, result.status)
    hub.alerts.nudge(counts.get("accepted", 0))
    bad = counts.get("rejected", 0)
    answer = {"request": request_id, "counts": counts, "results": items}
    return answer, 422 if bad else 202


def _ingest(
    hub: Hub,
    declared: Any,
    message_type: str,
    body: bytes,
    name: str,
    reader: Any,
    request_id: str,
) -> Any:
    from conveyor.api.ingest import ingest_body

    result, problems = ingest_body(
        hub.ledger,
        hub.mapping_engine(),
        declared,
        message_type,
        body,
        format_name=name,
        reader=reader,
        request_id=request_id,
    )
    for status, amount in result.counts.items():
        hub.metrics.count(declared.name, message_type, status, amount)
    hub.alerts.nudge(result.counts.get("accepted", 0))
    return result, problems


def _replay(hub: Hub, asked: s.ReplayRequest) -> dict[str, Any]:
    from conveyor.delivery.replay import replay_deliveries, select_parked
    from conveyor.delivery.status import parked_deliveries

    engine = hub.ledger.engine
    if asked.reason:
        # the reason chooses; deliveries held behind the chosen ones come along as always
        matching = [
            row["id"]
            for row in parked_deliveries(
                engine, target=asked.target, reason_like=asked.reason, ids=asked.ids
            )
        ]
        chosen = select_parked(engine, ids=matching) if matching else []
    else:
        chosen = select_parked(engine, target=asked.target, ids=asked.ids, everything=asked.all)
    if asked.dry_run:
        return {
            "dry_run": True,
            "selected": len(chosen),
            "requeued": 0,
            "still_failing": 0,
            "ids": chosen,
            "failures": [],
        }
    result = replay_deliveries(engine, chosen, mapping=hub.mapping_engine())
    return {"dry_run": False, **result.as_dict(), "ids": chosen}
