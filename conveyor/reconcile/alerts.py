"""Stock alerts: positions under the material's safety stock, and released production orders whose
components are short. Each alert is a canonical ``stock_alert`` message from the source ``hub``,
accepted by the ledger and routed like any other message (``routes:`` of ``conveyor.yaml``, e.g.
to a webhook or the ERP).

When: after every reconciliation run, and whenever stock positions move — ``check_moved`` looks at
the movements and orders the ledger accepted since its last call (a checkpoint) and re-checks only
the materials they touched. ``check_after_accept`` runs it after every ``conveyor accept``,
``ingest`` and ``replay --records`` that accepted something (``alerts.on_accept`` in
``conveyor.yaml`` turns that off); ``conveyor reconcile alerts`` runs it from the command line or
a DAG.

Safety stock is checked per material × plant, as an ERP's MRP does: the stock of the plant's
nettable locations (``locations.nettable`` is not ``no``: quality inspection and scrap do not
count), lots summed, in the material's base unit; the plant is the first part of the canonical
location (``1000`` of ``1000/RM``). A plant is checked for a material once the hub holds a
position of it there (zero positions included).

Components: each released order needs its components' quantities minus what was already
consumed for it, at the component's issue location; orders are served in order of scheduled
start, so a later order is short when earlier ones take the stock. The business key carries the
alert's figures, so the same situation raises one alert, and a change (more short, less short)
raises a new one.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Table, and_, func, or_, select

from conveyor.errors import MappingError
from conveyor.ledger.models import MessageRow, StockMovementRow, StockPositionRow, utcnow
from conveyor.messages import loads, new_message
from conveyor.quantity import format_quantity, parse_quantity, quantity_arithmetic

if TYPE_CHECKING:
    from conveyor.config import Project
    from conveyor.ledger import AcceptResult, Ledger
    from conveyor.reconcile.reference import Reference

log = logging.getLogger(__name__)

SOURCE = "hub"
CHECKPOINT_STREAM = "stock_alerts"
BELOW_SAFETY_STOCK = "below_safety_stock"
COMPONENT_SHORT = "component_short"
ZERO = Decimal(0)
RECHECK = timedelta(minutes=5)
"""How far before the previous check a check looks again (transactions committed late)."""
MOVING_TYPES = ("material_consumption", "production_output", "stock_transfer", "stock_adjustment")

positions_t = cast(Table, StockPositionRow.__table__)
movements_t = cast(Table, StockMovementRow.__table__)
messages_t = cast(Table, MessageRow.__table__)


@dataclass(frozen=True)
class Alert:
    """One shortage."""

    alert: str
    material: str
    location: str | None
    quantity: Decimal
    required: Decimal
    uom: str
    order_id: str | None = None

    @property
    def shortage(self) -> Decimal:
        """How much is missing."""
        return self.required - self.quantity

    def key(self) -> str:
        """Business key: the alert with its figures (same figures → same key → one message)."""
        key = "/".join(
            (
                "alert",
                self.alert,
                self.material,
                self.location or "*",
                self.order_id or "-",
                format_quantity(self.quantity),
                format_quantity(self.required),
            )
        )
        if len(key) > 200:
            digest = hashlib.sha256(key.encode()).hexdigest()[:32]
            key = f"alert/{self.alert}/{digest}"
        return key

    def payload(self, as_of: datetime, run_id: str | None = None) -> dict[str, Any]:
        """The ``stock_alert`` payload."""
        payload: dict[str, Any] = {
            "alert": self.alert,
            "material": self.material,
            "quantity": format_quantity(self.quantity),
            "required": format_quantity(self.required),
            "shortage": format_quantity(self.shortage),
            "uom": self.uom,
            "as_of": as_of.isoformat(),
        }
        if self.location:
            payload["location"] = self.location
        if self.order_id:
            payload["order_id"] = self.order_id
        if run_id:
            payload["run_id"] = run_id
        return payload


def on_hand(
    ledger: Ledger, materials: Iterable[str] | None = None
) -> dict[tuple[str, str], tuple[Decimal, str]]:
    """Stock per material × location (lots summed, zero positions included) with its unit."""
    query = select(
        positions_t.c.material, positions_t.c.location, positions_t.c.quantity, positions_t.c.uom
    )
    wanted = sorted(set(materials)) if materials is not None else None
    stock: dict[tuple[str, str], tuple[Decimal, str]] = {}
    with ledger.engine.connect() as conn:
        chunks = (
            [wanted[i : i + 500] for i in range(0, len(wanted), 500)]
            if wanted is not None
            else [None]
        )
        for chunk in chunks:
            part = query if chunk is None else query.where(positions_t.c.material.in_(chunk))
            for r in conn.execute(part):
                key = (r.material, r.location)
                current = stock.get(key)
                stock[key] = ((current[0] if current else ZERO) + r.quantity, r.uom)
    return stock


def plant_of(location: str) -> str:
    """The plant of a canonical location (``plant/warehouse/bin``)."""
    return location.split("/", 1)[0]


def safety_stock_alerts(
    stock: dict[tuple[str, str], tuple[Decimal, str]], reference: Reference
) -> list[Alert]:
    """Plants whose nettable stock of a material is under the material's safety stock."""
    plants: dict[tuple[str, str], Decimal] = {}
    safety: dict[str, tuple[Decimal, str]] = {}
    for (material, location), (quantity, uom) in sorted(stock.items()):
        info = reference.material(material)
        if info is None or info.safety_stock is None:
            continue
        safety[material] = (info.safety_stock, info.base_uom)
        key = (material, plant_of(location))
        total = plants.setdefault(key, ZERO)
        if not reference.nettable(location):
            continue
        try:
            base = reference.convert(material, quantity, uom, info.base_uom)
        except MappingError as exc:
            log.warning("%s at %s not counted for safety stock: %s", material, location, exc)
            continue
        plants[key] = total + base
    alerts = []
    for (material, plant), quantity in plants.items():
        required, base_uom = safety[material]
        if quantity < required:
            alerts.append(Alert(BELOW_SAFETY_STOCK, material, plant, quantity, required, base_uom))
    return alerts


def released_orders(ledger: Ledger) -> list[dict[str, Any]]:
    """The latest version of every production order whose status is ``released``."""
    latest: dict[str, dict[str, Any]] = {}
    with ledger.engine.connect() as conn:
        rows = conn.execute(
            select(messages_t.c.order_id, messages_t.c.payload)
            .where(messages_t.c.type == "production_order", messages_t.c.reversal_of.is_(None))
            .order_by(messages_t.c.id)
        )
        for r in rows:
            if r.order_id:
                latest[r.order_id] = loads(r.payload)
    orders = [p for p in latest.values() if p.get("status") == "released"]
    orders.sort(key=lambda p: (str(p.get("scheduled_start") or "~"), str(p["order_id"])))
    return orders


def consumed(ledger: Ledger, order_ids: Iterable[str]) -> dict[tuple[str, str], Decimal]:
    """What was already consumed per (order, material) (reversals counted back)."""
    ids = sorted(set(order_ids))
    out: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    if not ids:
        return out
    with ledger.engine.connect() as conn:
        for start in range(0, len(ids), 500):
            rows = conn.execute(
                select(messages_t.c.order_id, movements_t.c.material, movements_t.c.quantity)
                .join(messages_t, messages_t.c.id == movements_t.c.message_pk)
                .where(
                    messages_t.c.type == "material_consumption",
                    messages_t.c.order_id.in_(ids[start : start + 500]),
                )
            )
            for r in rows:
                out[(r.order_id, r.material)] -= r.quantity  # consumption moves stock down
    return out


def component_alerts(
    ledger: Ledger,
    stock: dict[tuple[str, str], tuple[Decimal, str]],
    reference: Reference,
    materials: set[str] | None = None,
) -> list[Alert]:
    """Components of released orders that the stock on hand cannot cover."""
    orders = released_orders(ledger)
    used = consumed(ledger, (str(o["order_id"]) for o in orders))
    left = {key: quantity for key, (quantity, _) in stock.items()}
    alerts: list[Alert] = []
    for order in orders:
        order_id = str(order["order_id"])
        for component in order.get("components") or []:
            material = component["material"]
            if materials is not None and material not in materials:
                continue
            location = component.get("location") or order["location"]
            held = stock.get((material, location))
            uom = held[1] if held else component["uom"]
            try:
                needed = parse_quantity(component["quantity"])
                if component["uom"] != uom:
                    needed = reference.convert(material, needed, component["uom"], uom)
            except MappingError as exc:
                log.warning("order %s component %s not checked: %s", order_id, material, exc)
                continue
            remaining = needed - used.get((order_id, material), ZERO)
            if remaining <= 0:
                continue
            available = left.get((material, location), ZERO)
            if available < remaining:
                alerts.append(
                    Alert(
                        COMPONENT_SHORT,
                        material,
                        location,
                        max(available, ZERO),
                        remaining,
                        uom,
                        order_id,
                    )
                )
            left[(material, location)] = available - remaining
    return alerts


def evaluate(
    ledger: Ledger, reference: Reference, *, materials: Iterable[str] | None = None
) -> list[Alert]:
    """Every current shortage (of ``materials`` only, when given)."""
    wanted = set(materials) if materials is not None else None
    stock = on_hand(ledger, wanted)
    safety = safety_stock_alerts(stock, reference)
    return safety + component_alerts(ledger, stock, reference, wanted)


@quantity_arithmetic  # stock sums and shortages keep all 38 digits of a quantity
def raise_alerts(
    ledger: Ledger,
    reference: Reference,
    *,
    as_of: datetime | None = None,
    run_id: str | None = None,
    materials: Iterable[str] | None = None,
) -> list[AcceptResult]:
    """Evaluate and accept the alerts as ``stock_alert`` messages (duplicates change nothing)."""
    alerts = evaluate(ledger, reference, materials=materials)
    if not alerts:
        return []
    moment = as_of or utcnow()
    messages = [
        new_message(
            "stock_alert", SOURCE, alert.key(), alert.payload(moment, run_id), occurred_at=moment
        )
        for alert in alerts
    ]
    return ledger.accept_batch(messages)


def check_moved(ledger: Ledger, reference: Reference) -> list[AcceptResult]:
    """New alerts for the materials whose stock moved, or that a production order named, since
    the last call (the cursor is the ledger checkpoint ``hub``/``stock_alerts``).

    Row ids are not commit order on PostgreSQL: a transaction that began earlier can commit rows
    with ids below the cursor after a check. So each check also looks again at what was accepted
    in the ``RECHECK`` before the previous check; checking a material twice is harmless (the same
    figures make the same alert key)."""
    cursor = json.loads(ledger.checkpoint(SOURCE, CHECKPOINT_STREAM) or "{}")
    last_movement = int(cursor.get("movement", 0))
    last_message = int(cursor.get("message", 0))
    started = utcnow()
    since = (
        datetime.fromisoformat(cursor["checked_at"]) - RECHECK if "checked_at" in cursor else None
    )
    m, mv = messages_t, movements_t
    with ledger.engine.connect() as conn:
        top_movement = conn.execute(select(func.max(mv.c.id))).scalar_one() or 0
        top_message = conn.execute(select(func.max(m.c.id))).scalar_one() or 0
        moved = set(
            conn.execute(
                select(mv.c.material)
                .where(mv.c.id > last_movement, mv.c.id <= top_movement)
                .distinct()
            ).scalars()
        )
        new_orders = and_(m.c.id > last_message, m.c.id <= top_message)
        if since is not None:
            late = select(m.c.id).where(m.c.type.in_(MOVING_TYPES), m.c.accepted_at >= since)
            moved.update(
                conn.execute(
                    select(mv.c.material).where(mv.c.message_pk.in_(late)).distinct()
                ).scalars()
            )
            new_orders = or_(new_orders, m.c.accepted_at >= since)
        for r in conn.execute(
            select(m.c.payload).where(m.c.type == "production_order", new_orders)
        ):
            moved.update(c["material"] for c in loads(r.payload).get("components") or [])
    results = raise_alerts(ledger, reference, materials=moved) if moved else []
    results = [r for r in results if r.status == "accepted"]
    ledger.save_checkpoint(
        SOURCE,
        CHECKPOINT_STREAM,
        json.dumps(
            {
                "movement": int(top_movement),
                "message": int(top_message),
                "checked_at": started.isoformat(),
            }
        ),
    )
    return results


def check_after_accept(
    project: Project, ledger: Ledger, accepted: int, reference: Reference | None = None
) -> list[AcceptResult]:
    """The alert check that follows an accept of ``accepted`` new messages: ``check_moved``
    unless nothing new was accepted or ``alerts.on_accept`` is off. ``reference`` defaults to
    the project's mappings and master data."""
    if accepted <= 0 or not project.alerts_on_accept:
        return []
    if reference is None:
        from conveyor.reconcile.reference import load_reference

        reference = load_reference(project)
    return check_moved(ledger, reference)
