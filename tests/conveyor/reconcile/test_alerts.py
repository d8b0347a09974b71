"""Stock alerts: safety stock and short components become ``stock_alert`` messages that the
ledger accepts and routes like any other message; the same situation alerts once."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from conveyor.config import Project
from conveyor.ledger import Ledger
from conveyor.ledger.models import DeliveryRow, MessageRow
from conveyor.messages import new_message, validate
from conveyor.reconcile.alerts import (
    BELOW_SAFETY_STOCK,
    COMPONENT_SHORT,
    Alert,
    check_moved,
    evaluate,
    raise_alerts,
)
from conveyor.reconcile.reference import Reference


def _alerts(ledger: Ledger) -> list[dict[str, Any]]:
    messages = MessageRow.__table__
    with ledger.engine.connect() as conn:
        rows = conn.execute(
            select(messages.c.key, messages.c.payload).where(messages.c.type == "stock_alert")
        ).all()
    return [{"key": r.key, **json.loads(r.payload)} for r in rows]


def _order(
    ledger: Ledger, order_id: str, start: str, quantity: str, status: str = "released"
) -> None:
    payload = {
        "order_id": order_id,
        "material": "FG-5001",
        "quantity": "10",
        "uom": "PCS",
        "location": "1000/FG",
        "status": status,
        "scheduled_start": start,
        "components": [
            {"material": "RM-2003", "quantity": quantity, "uom": "PCS", "location": "1000/WIP-ASSY"}
        ],
    }
    key = f"{order_id}/{status}"
    assert ledger.accept(new_message("production_order", "sap", key, payload)).status == "accepted"


def test_plants_under_safety_stock(hub: Ledger, reference: Reference) -> None:
    alerts = {(a.material, a.location): a for a in evaluate(hub, reference)}
    below = alerts[("RM-2001", "1000")]  # 10,000 PCS in plant 1000, safety stock 20,000
    assert below == Alert(
        BELOW_SAFETY_STOCK, "RM-2001", "1000", Decimal(10000), Decimal(20000), "PCS"
    )
    assert below.shortage == Decimal(10000)
    assert ("RM-1001", "1000") not in alerts  # 1,250.5 in the store + 75 line side ≥ 500
    assert ("RM-1004", "1000") not in alerts  # exactly at safety stock is not under it
    assert not [a for a in alerts if a[1] != "1000"]  # one check per plant, not per bin


def test_stock_in_quality_inspection_or_scrap_is_not_available(
    hub: Ledger, reference: Reference
) -> None:
    # RM-1001: 1,325.5 KG in plant 1000; move 900 KG of lot L1/L2 to inspection and scrap
    for key, to_location, lot, quantity in (
        ("TR-QI", "1000/QI", "L1", "800"),
        ("TR-SCRAP", "1000/SCRAP", "L2", "100"),
    ):
        payload = {
            "material": "RM-1001",
            "lot": lot,
            "quantity": quantity,
            "uom": "KG",
            "from_location": "1000/RM",
            "to_location": to_location,
        }
        accepted = hub.accept(new_message("stock_transfer", "wms", key, payload))
        assert accepted.status == "accepted"
    alerts = {(a.material, a.location): a for a in evaluate(hub, reference)}
    below = alerts[("RM-1001", "1000")]
    assert (below.quantity, below.required) == (Decimal("425.5"), Decimal(500))  # 350.5 + 75


def test_alerts_are_messages_routed_like_any_other_and_raised_once(
    hub: Ledger, reference: Reference
) -> None:
    results = raise_alerts(hub, reference, run_id="run-1")
    assert results
    assert {r.status for r in results} == {"accepted"}
    assert all(r.targets == ["sap"] for r in results)  # route: stock_alert → sap
    stored = _alerts(hub)
    assert len(stored) == len(results)
    deliveries = DeliveryRow.__table__
    with hub.engine.connect() as conn:
        targets = (
            conn.execute(
                select(deliveries.c.target)
                .join(MessageRow.__table__, MessageRow.__table__.c.id == deliveries.c.message_pk)
                .where(MessageRow.__table__.c.type == "stock_alert")
            )
            .scalars()
            .all()
        )
    assert set(targets) == {"sap"}
    assert len(targets) == len(results)
    sample = stored[0]
    assert sample["run_id"] == "run-1"
    again = raise_alerts(hub, reference)
    assert {r.status for r in again} == {"duplicate"}
    assert len(_alerts(hub)) == len(results)


def test_released_orders_short_of_components(hub: Ledger, reference: Reference) -> None:
    # RM-2003 at 1000/WIP-ASSY holds 250 pieces
    _order(hub, "PO-1", "2026-11-22T06:00:00+08:00", "200")
    _order(hub, "PO-2", "2026-11-22T08:00:00+08:00", "100")
    _order(hub, "PO-3", "2026-11-21T06:00:00+08:00", "1000", status="created")
    short = [a for a in evaluate(hub, reference) if a.alert == COMPONENT_SHORT]
    assert short == [
        Alert(COMPONENT_SHORT, "RM-2003", "1000/WIP-ASSY", Decimal(50), Decimal(100), "PCS", "PO-2")
    ]  # PO-1 starts first and takes 200; PO-3 is not released
    consumption = {
        "order_id": "PO-1",
        "material": "RM-2003",
        "quantity": "150",
        "uom": "PCS",
        "location": "1000/WIP-ASSY",
    }
    assert hub.accept(new_message("material_consumption", "mes", "C-1", consumption)).status == (
        "accepted"
    )
    # 100 left on hand; PO-1 still needs 50, PO-2 its 100: short by 50 again, with new figures
    short = [a for a in evaluate(hub, reference) if a.alert == COMPONENT_SHORT]
    assert [(a.order_id, a.quantity, a.required) for a in short] == [
        ("PO-2", Decimal(50), Decimal(100))
    ]


def scrap_10_kg_of_rm_1003(hub: Ledger, key: str) -> None:
    """RM-1003 in 1000/RM goes from 50 KG (its safety stock) to 40."""
    payload = {
        "material": "RM-1003",
        "location": "1000/RM",
        "quantity": "-10",
        "uom": "KG",
        "reason": "scrap",
    }
    assert hub.accept(new_message("stock_adjustment", "mes", key, payload)).status == "accepted"


def test_check_moved_looks_only_at_what_moved_since_last_time(
    hub: Ledger, reference: Reference
) -> None:
    first = check_moved(hub, reference)
    assert first  # everything moved since no check ever ran
    assert check_moved(hub, reference) == []  # nothing moved since
    scrap_10_kg_of_rm_1003(hub, "ADJ-99")
    moved = check_moved(hub, reference)
    assert [(r.status, r.key) for r in moved] == [
        ("accepted", "alert/below_safety_stock/RM-1003/1000/-/40/50")
    ]


def test_alert_messages_satisfy_their_schema(plant: Project) -> None:
    alert = Alert(COMPONENT_SHORT, "M1", "L1", Decimal("1.5"), Decimal(4), "KG", "PO-9")
    from datetime import UTC, datetime

    message = new_message("stock_alert", "hub", alert.key(), alert.payload(datetime.now(UTC)))
    checked = validate(message)
    assert checked["payload"]["shortage"] == "2.5"
    assert checked["payload"]["quantity"] == Decimal("1.5")


def test_a_movement_committed_below_the_cursor_is_still_checked(
    hub: Ledger, reference: Reference
) -> None:
    assert check_moved(hub, reference)
    # As if a transaction that took its ids earlier commits after the check saw higher ones:
    cursor = json.loads(hub.checkpoint("hub", "stock_alerts") or "{}")
    hub.save_checkpoint(
        "hub",
        "stock_alerts",
        json.dumps({**cursor, "movement": cursor["movement"] + 1000, "message": 10**9}),
    )
    scrap_10_kg_of_rm_1003(hub, "ADJ-LATE")
    moved = check_moved(hub, reference)
    assert [r.key for r in moved] == ["alert/below_safety_stock/RM-1003/1000/-/40/50"]
