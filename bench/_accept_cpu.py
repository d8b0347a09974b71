"""CPU per accepted message, on the hub's side and on PostgreSQL's: ``python bench/_accept_cpu.py
[--messages N]`` accepts N new messages (``bench.validate``'s mix, two routes each, batches of
1,000) into a throwaway database with ``Ledger.accept_batch``, and reads the CPU time of this
process (``getrusage``) and of the database's server backends (``/proc/<pid>/stat``, found in
``pg_stat_activity``) around it. The same messages are then offered again (all duplicates).
With ``--sqlite`` the ledger is a SQLite file in a temporary folder instead (wall-clock rate
beside). Linux only, PostgreSQL on this machine. Used for docs/scaling.md.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import Engine, text

from bench.accept import BATCH, ROUTES
from bench.common import throwaway_database
from bench.validate import corpus
from conveyor.ledger import Ledger
from conveyor.ledger.db import make_engine
from conveyor.routing import Router

TICK = os.sysconf("SC_CLK_TCK")


def backend_cpu_s(engine: Engine) -> float:
    """CPU seconds of every server backend connected to this engine's database (0 on SQLite)."""
    if engine.dialect.name != "postgresql":
        return 0.0
    with engine.connect() as conn:
        pids = conn.execute(
            text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
        ).scalars()
        total = 0
        for pid in pids:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:  # not on this machine, or gone
                continue
            total += int(fields[11]) + int(fields[12])
    return total / TICK


def self_cpu_s() -> float:
    """CPU seconds of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@contextmanager
def sqlite_database() -> Iterator[str]:
    """A SQLite ledger file in a temporary folder."""
    with tempfile.TemporaryDirectory() as folder:
        yield f"sqlite:///{folder}/ledger.db"


def main() -> None:
    """Accept N messages twice; print CPU per message, hub and PostgreSQL."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--sqlite", action="store_true")
    args = parser.parse_args()
    n = args.messages
    with sqlite_database() if args.sqlite else throwaway_database() as url:
        engine = make_engine(url) if args.sqlite else make_engine(url, pool_size=1, max_overflow=0)
        ledger = Ledger(engine, Router.from_config(ROUTES))
        ledger.upgrade()
        items = corpus(n)
        for label in ("new messages", "the same again (duplicates)"):
            hub, server, wall = self_cpu_s(), backend_cpu_s(engine), time.perf_counter()
            for i in range(0, n, BATCH):
                ledger.accept_batch(items[i : i + BATCH])
            hub, server = self_cpu_s() - hub, backend_cpu_s(engine) - server
            wall = time.perf_counter() - wall
            print(
                f"{engine.dialect.name}, {label}: {n} messages in {wall:.2f} s "
                f"({n / wall:,.0f} msg/s), hub {hub:.2f} CPU-s ({hub / n * 1000:.3f} ms/msg), "
                f"database server {server:.2f} CPU-s ({server / n * 1000:.3f} ms/msg)"
            )
        engine.dispose()


if __name__ == "__main__":
    main()
