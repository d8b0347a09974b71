"""Source: the hub's own stock positions, optionally as they stood at an earlier ``as_of``.

"As of" means by when a movement *occurred* (``stock_movements.occurred_at``, the time the source
system gave the event), not when the hub accepted it: the auditor's question is "what stock did
the hub hold at 18:00 by the movements that happened before 18:00". A consumption posted at 17:55
and sent to the hub at 18:20 counts; a goods receipt at 19:55 does not, even when the hub took it
in before the run. (Movements *in transit* — accepted but not yet delivered to a system when its
snapshot was taken — are a separate question, answered by ``reconcile.transit``.)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from conveyor.quantity import format_quantity
from conveyor.reconcile.sources.base import CHUNK_ROWS, HUB_FIELDS, Chunk, Progress, Snapshot
from conveyor.reconcile.sources.store import Capture, SnapshotStore

if TYPE_CHECKING:
    from sqlalchemy import Engine


class HubSnapshot(Snapshot):
    """The hub's own stock positions; with ``as_of`` in the past, movements that occurred after
    it (``occurred_at > as_of``, whenever the hub accepted them) are taken back out, so the hub
    is seen as it stood then by the movements that had happened."""

    kind = "hub"

    def __init__(
        self, engine: Engine, *, as_of: datetime | None = None, system: str = "hub"
    ) -> None:
        super().__init__(system, "hub ledger", canonical=True, tracks_lots=True, as_of=as_of)
        self.engine = engine

    def chunks(
        self, progress: Progress | None = None, store: SnapshotStore | None = None
    ) -> Iterator[Chunk]:
        from sqlalchemy import select

        from conveyor.ledger.models import StockMovementRow, StockPositionRow

        positions = StockPositionRow.__table__
        later: dict[tuple[str, str, str], Decimal] = {}
        if self.as_of is not None:
            movements = StockMovementRow.__table__
            query = select(
                movements.c.material,
                movements.c.location,
                movements.c.lot,
                movements.c.quantity,
            ).where(movements.c.occurred_at > self.as_of)
            with self.engine.connect() as conn:
                for r in conn.execute(query):
                    key = (r.material, r.location, r.lot)
                    later[key] = later.get(key, Decimal(0)) + r.quantity
        sha = hashlib.sha256()
        capture = store.capture(".jsonl") if store is not None else None
        current = select(
            positions.c.material,
            positions.c.location,
            positions.c.lot,
            positions.c.quantity,
            positions.c.uom,
        ).order_by(positions.c.material, positions.c.location, positions.c.lot)
        with self.engine.connect() as conn:
            result = conn.execution_options(yield_per=CHUNK_ROWS).execute(current)
            for part in result.partitions():
                rows: list[tuple[str, str, str, Decimal, str]] = []
                for row in part:
                    material, location, lot, held, uom = row
                    quantity: Decimal = held - later.get((material, location, lot), Decimal(0))
                    if quantity != 0:
                        rows.append((material, location, lot, quantity, uom))
                yield from self._emit(rows, sha, capture, progress)
        self.sha256 = sha.hexdigest()
        if capture is not None:
            self.stored_path = str(capture.finish(self.sha256))

    def _emit(
        self,
        rows: list[tuple[str, str, str, Decimal, str]],
        sha: Any,
        capture: Capture | None,
        progress: Progress | None,
    ) -> Iterator[Chunk]:
        self.rows += len(rows)
        if progress is not None:
            progress(len(rows))
        if not rows:
            return
        encoded = "".join(
            json.dumps(
                {
                    "material": m,
                    "location": loc,
                    "lot": lot,
                    "quantity": format_quantity(q),
                    "uom": u,
                },
                ensure_ascii=False,
            )
            + "\n"
            for m, loc, lot, q, u in rows
        ).encode()
        sha.update(encoded)
        if capture is not None:
            capture.write(encoded)
        chunk = Chunk(list(rows), HUB_FIELDS)
        if not self.lots_seen and chunk.has_lots():
            self.lots_seen = True
        yield chunk
