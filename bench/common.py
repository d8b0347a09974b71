"""Shared bench helpers: the closing JSON line, a results table, machine facts, peak memory."""

from __future__ import annotations

import json
import os
import resource
import sys
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

PG_ADMIN_URL = os.environ.get(
    "CONVEYOR_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


@contextmanager
def throwaway_database(admin_url: str = PG_ADMIN_URL) -> Iterator[str]:
    """A new PostgreSQL database for one bench run (dropped afterwards); exit 1 if unreachable."""
    from sqlalchemy import text

    from conveyor.ledger.db import make_engine

    admin = make_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"conveyor_bench_{uuid.uuid4().hex[:8]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        print(f"PostgreSQL not reachable at {admin_url}: {exc}", file=sys.stderr)
        sys.exit(1)
    try:
        yield admin_url.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    return {"cpus": os.cpu_count()}


def peak_rss_mb(children: bool = False) -> float:
    """Peak resident memory of this process (or of its finished children) in MB."""
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    return resource.getrusage(who).ru_maxrss / 1024


def table(rows: Sequence[Sequence[object]], header: Sequence[str]) -> None:
    """Print a plain aligned table."""
    cells = [[str(c) for c in header], *[[str(c) for c in r] for r in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for index, row in enumerate(cells):
        print(
            "  ".join(
                c.ljust(w) if col == 0 else c.rjust(w)
                for col, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if index == 0:
            print("  ".join("-" * w for w in widths))


def result(
    bench: str,
    metric: str,
    value: float,
    unit: str,
    anchor_name: str,
    anchor_value: float,
    *,
    higher_is_better: bool = True,
    target: str,
    meets_target: bool,
    extra: dict[str, Any] | None = None,
) -> None:
    """Print the closing JSON line of a benchmark (BENCH.md)."""
    ratio = value / anchor_value if higher_is_better else anchor_value / value
    print(
        json.dumps(
            {
                "bench": bench,
                "metric": metric,
                "value": round(value, 3),
                "unit": unit,
                "anchor": {"name": anchor_name, "value": round(anchor_value, 3)},
                "ratio": round(ratio, 3),
                "target": target,
                "meets_target": meets_target,
                "extra": extra or {},
                "machine": machine(),
            }
        )
    )
