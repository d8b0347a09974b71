"""In transit: movements the hub accepted but had not delivered to a system by its snapshot."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import update

from conveyor.ledger import Ledger
from conveyor.ledger.models import DeliveryRow, MessageRow
from conveyor.messages import new_message
from conveyor.reconcile.lines import join_key
from conveyor.reconcile.transit import in_transit


def _deliver(ledger: Ledger, key: str, target: str, status: str, at: datetime | None) -> None:
    deliveries = DeliveryRow.__table__
    messages = MessageRow.__table__
    pk = (
        messages.select()
        .with_only_columns(messages.c.id)
        .where(messages.c.key == key)
        .scalar_subquery()
    )
    with ledger.engine.begin() as conn:
        conn.execute(
            update(deliveries)
            .where(deliveries.c.message_pk == pk, deliveries.c.target == target)
            .values(status=status, delivered_at=at)
        )


def test_undelivered_movements_are_in_transit_per_target(ledger: Ledger) -> None:
    # conftest routes: stock_* from mes → erp and wms; stock_transfer from wms → erp
    out = {
        "order_id": "PO-1",
        "material": "M1",
        "quantity": "5",
        "uom": "KG",
        "location": "1000/FG",
        "lot": "B1",
    }
    transfer = {
        "material": "M2",
        "quantity": "3",
        "uom": "PCS",
        "from_location": "1000/RM",
        "to_location": "1000/WIP",
    }
    for message in (
        new_message("production_output", "mes", "GR-1", out),
        new_message("production_output", "mes", "GR-2", {**out, "quantity": "2"}),
        new_message("stock_transfer", "wms", "TR-1", transfer),
    ):
        assert ledger.accept(message).status == "accepted"
    taken = datetime.now(UTC) + timedelta(minutes=1)
    _deliver(ledger, "GR-1", "erp", "delivered", taken - timedelta(minutes=2))
    _deliver(ledger, "GR-1", "wms", "delivered", taken + timedelta(minutes=5))  # after the count
    _deliver(ledger, "GR-2", "wms", "parked", None)
    transit = in_transit(ledger.engine, ["erp", "wms"], as_of=taken)
    fg = join_key("M1", "1000/FG", "B1")
    assert transit.quantities[fg] == {"erp": Decimal(2), "wms": Decimal(7)}
    assert transit.quantities[join_key("M2", "1000/RM")] == {"erp": Decimal(-3)}
    assert transit.quantities[join_key("M2", "1000/WIP")] == {"erp": Decimal(3)}
    assert "mes:GR-2 → wms (parked)" in transit.refs[fg]
    # the WMS counted after GR-1 arrived: only GR-2 is missing there
    later = in_transit(
        ledger.engine,
        ["erp", "wms"],
        as_of=taken,
        snapshot_times={"wms": taken + timedelta(minutes=10)},
    )
    assert later.quantities[fg]["wms"] == Decimal(2)
    # movements accepted after the run's as_of are not in the comparison at all
    assert in_transit(ledger.engine, ["erp"], as_of=taken - timedelta(days=1)).quantities == {}


def test_transit_collapses_to_material_and_location(ledger: Ledger) -> None:
    payload = {"material": "M1", "quantity": "1", "uom": "KG", "location": "L1", "reason": "x"}
    for key, lot in (("A-1", "A"), ("A-2", "B")):
        message = new_message("stock_adjustment", "mes", key, {**payload, "lot": lot})
        assert ledger.accept(message).status == "accepted"
    transit = in_transit(ledger.engine, ["wms"], as_of=datetime.now(UTC) + timedelta(seconds=5))
    collapsed = transit.collapsed()
    assert collapsed.quantities == {join_key("M1", "L1"): {"wms": Decimal(2)}}
    assert len(collapsed.refs[join_key("M1", "L1")]) == 2
