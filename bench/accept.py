"""Bench ``accept``: messages accepted per second into PostgreSQL in batches of 1,000 — validation,
dedupe by the unique business key, stock positions, deliveries and outbox rows in one transaction
per batch (target: >= 5,000 msg/s). Anchor, same run: a plain multi-row INSERT of the same message
rows (no validation, no stock, no routing), to show what the ledger's work costs."""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import Engine

from bench.common import result, table, throwaway_database
from bench.validate import corpus
from conveyor import messages
from conveyor.ledger import Ledger
from conveyor.ledger.db import make_engine
from conveyor.ledger.models import MessageRow
from conveyor.routing import Router

TARGET = 5_000
BATCH = 1_000
ROUTES = [{"type": "*", "source": "mes", "targets": ["sap", "wms"]}]


def main() -> None:
    """Create a throwaway database, measure, print, drop it."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n = 10_000 if args.quick else 100_000
    with throwaway_database() as url:
        measure(make_engine(url), n)


def measure(engine: Engine, n: int) -> None:
    """Anchor, then the ledger (new messages, then the same again as duplicates)."""
    try:
        ledger = Ledger(engine, Router.from_config(ROUTES))
        ledger.upgrade()
        items = corpus(n)
        # anchor: the same message rows, one multi-row INSERT per batch
        rows = [
            {
                "message_id": str(uuid.uuid4()),
                "type": m["type"],
                "source": "anchor",
                "key": m["key"],
                "occurred_at": messages.occurred_at(m),
                "accepted_at": messages.occurred_at(m),
                "schema_version": "1.0",
                "routes": 0,
                "payload": messages.dumps(m["payload"]),
            }
            for m in items
        ]
        table_ = MessageRow.__table__
        start = time.perf_counter()
        for i in range(0, n, BATCH):
            with engine.begin() as conn:
                conn.execute(table_.insert(), rows[i : i + BATCH])  # type: ignore[attr-defined]
        anchor = n / (time.perf_counter() - start)

        start = time.perf_counter()
        accepted = 0
        for i in range(0, n, BATCH):
            accepted += sum(
                r.status == "accepted" for r in ledger.accept_batch(items[i : i + BATCH])
            )
        value = n / (time.perf_counter() - start)
        start = time.perf_counter()
        duplicates = 0
        for i in range(0, n, BATCH):
            duplicates += sum(
                r.status == "duplicate" for r in ledger.accept_batch(items[i : i + BATCH])
            )
        dup_rate = n / (time.perf_counter() - start)
        if accepted != n or duplicates != n:
            sys.exit(f"expected {n} accepted then {n} duplicates, got {accepted} and {duplicates}")
        table(
            [
                ("plain INSERT of the message rows (anchor)", f"{anchor:,.0f}"),
                (
                    "Ledger.accept_batch: new messages (validate, dedupe, stock, 2 routes)",
                    f"{value:,.0f}",
                ),
                ("Ledger.accept_batch: the same again (all duplicates)", f"{dup_rate:,.0f}"),
            ],
            ["path, batches of 1,000, PostgreSQL", "msg/s"],
        )
        result(
            "accept",
            "messages_accepted_per_s",
            value,
            "msg/s",
            "plain multi-row INSERT of the same rows",
            anchor,
            target=f">= {TARGET:,} msg/s into PostgreSQL",
            meets_target=value >= TARGET,
            extra={"messages": n, "batch": BATCH, "duplicates_per_s": round(dup_rate)},
        )
    finally:
        engine.dispose()


if __name__ == "__main__":
    main()
