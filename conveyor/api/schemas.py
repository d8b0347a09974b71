"""The shapes of the API's answers and bodies, for the published OpenAPI document (and the
schemathesis run that holds the answers to it). Quantities are exact decimal strings."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

Quantity = str
"""An exact decimal as text, e.g. ``"120.125"`` (never a binary float)."""


class Error(BaseModel):
    """An error answer."""

    detail: Any


class Health(BaseModel):
    """``/healthz``."""

    status: str


class Ready(BaseModel):
    """``/readyz``: each dependency's check (``ok`` or why not)."""

    status: str
    checks: dict[str, str]


class FieldProblem(BaseModel):
    """One reason a message was refused."""

    path: str
    rule: str
    value: str | None
    message: str


class AcceptItem(BaseModel):
    """What happened to one posted message."""

    index: int = Field(description="Position in the posted array (0 for a single message).")
    status: str = Field(description="accepted, duplicate, conflict or rejected (parked).")
    message_id: str | None
    source: str | None
    key: str | None
    parked_id: int | None = None
    errors: list[FieldProblem] = Field(default_factory=list)


class AcceptAnswer(BaseModel):
    """Answer to ``POST /v1/messages``."""

    request: str
    counts: dict[str, int]
    results: list[AcceptItem]


class ParkedRecord(BaseModel):
    """A record of an ingested body that did not go in."""

    line: int | None
    status: str
    reason: str


class IngestAnswer(BaseModel):
    """Answer to ``POST /v1/ingest/{system}/{type}``."""

    system: str
    type: str
    format: str
    unit: str
    already_taken: bool
    failed: bool
    records: int
    counts: dict[str, int]
    parked: list[ParkedRecord]
    errors: list[dict[str, str]]


class StockPosition(BaseModel):
    """One stock position, in the material's base unit."""

    material: str
    location: str
    lot: str | None
    quantity: Quantity
    uom: str
    updated_at: str


class StockPage(BaseModel):
    """A page of stock positions."""

    positions: list[StockPosition]
    total: int
    offset: int
    limit: int
    next_offset: int | None


class StockAlert(BaseModel):
    """A current shortage."""

    alert: str
    material: str
    location: str | None
    order_id: str | None
    quantity: Quantity
    required: Quantity
    shortage: Quantity
    uom: str


class Alerts(BaseModel):
    """``GET /v1/stock/alerts``."""

    alerts: list[StockAlert]


class TraceMessage(BaseModel):
    """One message as the ledger holds it, with its stock effect and deliveries."""

    model_config = ConfigDict(extra="allow")

    message_id: str
    type: str
    source: str
    key: str
    status: str = Field(description="delivered, in_delivery, parked, accepted or unrouted.")
    stock_changes: list[dict[str, Any]]
    deliveries: list[dict[str, Any]]


class Trace(BaseModel):
    """``GET /v1/messages/{id-or-key}`` (``conveyor trace``)."""

    term: str
    messages: list[TraceMessage]
    parked: list[dict[str, Any]]


class Parked(BaseModel):
    """``GET /v1/parked``."""

    deliveries: list[dict[str, Any]]


MAX_ID = 2**63 - 1
"""Largest delivery id (a BIGINT): a larger number names no delivery, and the database driver
refuses to send it at all."""


class ReplayRequest(BaseModel):
    """What to replay: parked deliveries by id, target and reason (``all``: every one)."""

    model_config = ConfigDict(extra="forbid")

    ids: list[Annotated[int, Field(ge=1, le=MAX_ID)]] = Field(
        default_factory=list, max_length=100_000
    )
    target: str | None = None
    reason: str | None = Field(default=None, description="Reason contains (case-insensitive).")
    all: bool = False
    dry_run: bool = False


class ReplayAnswer(BaseModel):
    """What a replay did (or, with ``dry_run``, would do)."""

    dry_run: bool
    selected: int
    requeued: int
    still_failing: int
    ids: list[int]
    failures: list[dict[str, Any]]


class Status(BaseModel):
    """``GET /v1/status`` (``conveyor status``)."""

    transport: str
    targets: dict[str, dict[str, int]]
    times: dict[str, dict[str, datetime | None]] = Field(
        default_factory=dict,
        description="Per target: `oldest_open_at` (the oldest pending, in-flight or retrying "
        "delivery was created) and `last_delivered_at`.",
    )
    unrouted: dict[str, Any]
    workers: list[dict[str, Any]]
    stuck: int


class Runs(BaseModel):
    """``GET /v1/reconciliations``."""

    runs: list[dict[str, Any]]


class Run(BaseModel):
    """``GET /v1/reconciliations/{run}``."""

    model_config = ConfigDict(extra="allow")

    run_id: str
    summary: dict[str, Any]
    reports: dict[str, str]


MESSAGES_BODY: dict[str, Any] = {
    "required": True,
    "description": "One canonical message (schemas/envelope.json) or an array of them.",
    "content": {
        "application/json": {
            "schema": {
                "oneOf": [
                    {"type": "object"},
                    {"type": "array", "items": {"type": "object"}},
                ]
            }
        }
    },
}
INGEST_BODY: dict[str, Any] = {
    "required": True,
    "description": "A body in the system's own format; the Content-Type names the format.",
    "content": {
        "application/json": {"schema": {}},
        "text/csv": {"schema": {"type": "string"}},
        "application/xml": {"schema": {"type": "string"}},
    },
}
