"""The ledger: every accepted message, the stock it moved, and its deliveries — in one database.

``Ledger.accept_batch`` is the gate of the hub: it validates, deduplicates by the database's unique
``(source, key)``, updates stock positions, and writes one delivery + outbox row per route target,
all in one transaction. Rejected records are parked in the same transaction, never dropped.
"""

from __future__ import annotations

from conveyor.ledger.core import AcceptResult, Checkpoint, Ledger, Origin, Position

__all__ = ["AcceptResult", "Checkpoint", "Ledger", "Origin", "Position"]
