"""The shared Chunk of canonical rows."""

from __future__ import annotations

import json
from decimal import Decimal

from conveyor.reconcile.sources import (
    Chunk,
)


def test_chunk_select_and_record() -> None:
    chunk = Chunk(
        [("M1", "L1", "", "1", "KG", ""), ("M2", "L2", "B", Decimal("2.50"), "KG", "x")],
        first_line=10,
    )
    picked = chunk.select([1])
    assert len(picked) == 1
    assert picked.line(0) == 11
    assert json.loads(picked.record(0)) == {
        "material": "M2",
        "location": "L2",
        "lot": "B",
        "quantity": "2.5",
        "uom": "KG",
    }
    assert chunk.keys(lot_level=False) == ["M1\x1fL1\x1f", "M2\x1fL2\x1f"]
    assert chunk.descriptions() == {"M2": "x"}
