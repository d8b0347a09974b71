"""A polling test connector: ``count`` canonical production orders of its own system, handed out
one by one after a numeric cursor, pausing ``pause_s`` every ``pause_every`` records (so a test
can stop the process half-way). Registered by module path in a test ``conveyor.yaml``:
``connector: tests.support.counting_source:CountingSource``."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any, ClassVar

from conveyor.connector import Connector, RawRecord, Stream


def order(system: str, number: int) -> dict[str, Any]:
    """The canonical production order number ``number`` of ``system`` (the same message id
    every time it is made, as a system that re-sends a document would)."""
    return {
        "message_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"conveyor-test:{system}/{number}")),
        "type": "production_order",
        "source": system,
        "key": f"PO-{number:06d}",
        "occurred_at": "2026-11-21T08:00:00+08:00",
        "schema_version": "1.0",
        "payload": {
            "order_id": f"PO-{number:06d}",
            "material": "FG-5001",
            "quantity": "10",
            "uom": "PCS",
            "location": "1000/FG01",
            "status": "released",
        },
    }


class CountingSource(Connector):
    """``count`` production orders; the cursor is the number of the last one handed out."""

    kind = "counting"
    capabilities = frozenset({"poll"})
    streams = (Stream(name="orders", message_type="production_order", source="counter"),)
    config_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "count": {"type": "integer", "minimum": 0},
            "pause_every": {"type": "integer", "minimum": 1},
            "pause_s": {"type": "number", "minimum": 0},
        },
        "required": ["count"],
        "additionalProperties": False,
    }

    def poll(self, stream: str, cursor: str | None) -> Iterator[RawRecord]:
        every = int(self.settings.get("pause_every", 1_000_000))
        pause = float(self.settings.get("pause_s", 0))
        for number in range(int(cursor or 0) + 1, int(self.settings["count"]) + 1):
            if pause and number % every == 0:
                time.sleep(pause)
            yield RawRecord(
                order(self.name, number), file=self.name, line=number, cursor=str(number)
            )
