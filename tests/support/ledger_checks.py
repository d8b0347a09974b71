"""Ledger invariants the hostile-input tests check after every case."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import select

from conveyor.ledger import Ledger
from conveyor.ledger.models import StockMovementRow
from conveyor.quantity import add


def movement_sums(ledger: Ledger) -> dict[tuple[str, str, str], Decimal]:
    """The exact sum of every stored movement per material × location × lot."""
    sums: dict[tuple[str, str, str], Decimal] = {}
    with ledger.engine.connect() as conn:
        for r in conn.execute(select(StockMovementRow)):
            key = (r.material, r.location, r.lot)
            sums[key] = add(sums.get(key, Decimal(0)), r.quantity)
    return sums


def assert_positions_balance(ledger: Ledger) -> None:
    """Every stock position equals the sum of the accepted movements at it, digit for digit."""
    positions = {
        (p.material, p.location, p.lot): p.quantity for p in ledger.positions(include_zero=True)
    }
    assert positions == movement_sums(ledger)
