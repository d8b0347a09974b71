"""``python -m bench chaos [--quick] [--messages N]``: deliveries per second while the hub's
broker and database restart, workers and the API are SIGKILLed and every target fails in
windows (5xx, held answers, refused connections, answers dropped after the commit) — the chaos
soak of ``tests/chaos/soak.py`` on a private PostgreSQL and RabbitMQ (they are restarted, so the
shared ones are never touched). Meets its target when nothing is missing and nothing is doubled.

There is no anchor: the figure is what the faults leave of the hub's throughput; ``extra`` has
the soak's account (missing, duplicates, parked, restarts, kills, faults).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine, table


def main() -> None:
    """Run the soak and print its table and JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3,000 messages")
    parser.add_argument("--messages", type=int, help="messages (default 20,000)")
    args = parser.parse_args()
    from tests.chaos.soak import FAULT_KINDS, Plan, soak
    from tests.support.private_services import postgres_available, rabbit_available

    if not (postgres_available() and rabbit_available()):
        print("chaos needs PostgreSQL and RabbitMQ binaries and root", file=sys.stderr)
        sys.exit(1)
    messages = args.messages or (3_000 if args.quick else 20_000)
    plan = Plan.for_messages(messages)
    with soak(plan) as ready:
        ready.run()
        figures = ready.account()
    table(
        [
            ["messages", figures.messages],
            ["deliveries", figures.deliveries],
            ["delivered", figures.delivered],
            ["parked", figures.parked],
            ["missing", figures.missing],
            ["duplicates", figures.duplicates],
            ["broker restarts", figures.broker_restarts],
            ["worker kills", figures.worker_kills],
            ["api kills", figures.api_kills],
            ["database restarts", figures.db_restarts],
            *[[f"fault windows: {kind}", figures.faults[kind]] for kind in FAULT_KINDS],
            ["seconds", round(figures.seconds, 1)],
        ],
        ["chaos", "value"],
    )
    print(figures.line())
    meets = figures.missing == 0 and figures.duplicates == 0
    print(
        json.dumps(
            {
                "bench": "chaos",
                "metric": "deliveries_per_s_under_faults",
                "value": round(figures.rate, 3),
                "unit": "msg/s",
                "anchor": None,
                "ratio": None,
                "target": "0 missing and 0 duplicates",
                "meets_target": meets,
                "extra": {
                    "messages": figures.messages,
                    "deliveries": figures.deliveries,
                    "missing": figures.missing,
                    "duplicates": figures.duplicates,
                    "parked": figures.parked,
                    "inbound_missing": figures.inbound_missing,
                    "stock_mismatches": figures.stock_mismatches,
                    "broker_restarts": figures.broker_restarts,
                    "database_restarts": figures.db_restarts,
                    "worker_kills": figures.worker_kills,
                    "api_kills": figures.api_kills,
                    "crashes_restarted": sum(figures.crashes.values()),
                    "fault_windows": dict(figures.faults),
                    "seconds": round(figures.seconds, 1),
                },
                "machine": machine(),
            }
        )
    )
    sys.exit(0 if meets else 1)


if __name__ == "__main__":
    main()
