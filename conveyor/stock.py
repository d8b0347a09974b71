"""What a movement does to stock: the one place that turns a canonical message into signed changes
per material × location × lot. Output adds, consumption removes, transfer moves, adjustment adds or
removes by its sign, a reversal (``reversal_of``) undoes; orders, requests and snapshots move
nothing. Signs flip with ``copy_negate`` (exact: unary minus would round to the context).

What a reversal may be is the ledger's rule (``Ledger._check_reversals``): it undoes exactly the
stock effect of its original, at most once, and a reversal is never reversed itself."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

NO_LOT = ""
"""Lot value for stock that is not lot-tracked (a real value, so positions stay unique)."""


@dataclass(frozen=True)
class Movement:
    """A signed change of one stock position, in the message's (base) unit."""

    material: str
    location: str
    lot: str
    quantity: Decimal
    uom: str

    @property
    def position(self) -> tuple[str, str, str]:
        """The position key: material, location, lot."""
        return (self.material, self.location, self.lot)


def movements(message: dict[str, Any]) -> list[Movement]:
    """The stock changes a validated canonical message causes (empty for non-movements)."""
    kind = message["type"]
    p = message["payload"]
    lot = p.get("lot") or NO_LOT
    quantity: Decimal = p.get("quantity", Decimal(0))
    if kind == "production_output":
        changes = [Movement(p["material"], p["location"], lot, quantity, p["uom"])]
    elif kind == "material_consumption":
        changes = [Movement(p["material"], p["location"], lot, quantity.copy_negate(), p["uom"])]
    elif kind == "stock_adjustment":
        changes = [Movement(p["material"], p["location"], lot, quantity, p["uom"])]
    elif kind == "stock_transfer":
        changes = [
            Movement(p["material"], p["from_location"], lot, quantity.copy_negate(), p["uom"]),
            Movement(p["material"], p["to_location"], lot, quantity, p["uom"]),
        ]
    else:
        return []
    if p.get("reversal_of"):
        changes = [
            Movement(m.material, m.location, m.lot, m.quantity.copy_negate(), m.uom)
            for m in changes
        ]
    return changes
