"""Bench ``validate``: canonical messages validated per second on one core, against per-message
``jsonschema.validate`` on the same messages (target: >= 50,000 msg/s)."""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import result, table
from conveyor import messages

TARGET = 50_000


def corpus(n: int) -> list[dict[str, object]]:
    """A realistic mix: consumption, output, transfer, adjustment (six-to-eight-field payloads)."""
    kinds = [
        (
            "material_consumption",
            {
                "order_id": "100045",
                "material": "RM-1001",
                "quantity": "12.5",
                "uom": "KG",
                "location": "1000/WIP-MOLD",
                "lot": "L2611-07",
            },
        ),
        (
            "production_output",
            {
                "order_id": "100045",
                "material": "FG-5001",
                "quantity": "4",
                "uom": "PCS",
                "location": "1000/FG",
                "lot": "FG261121-A",
            },
        ),
        (
            "stock_transfer",
            {
                "material": "RM-2001",
                "quantity": "400",
                "uom": "PCS",
                "from_location": "1000/RM",
                "to_location": "1000/WIP-MOLD",
            },
        ),
        (
            "stock_adjustment",
            {
                "material": "RM-PAINT-02",
                "quantity": "-0.75",
                "uom": "L",
                "location": "1000/RM",
                "reason": "scrap",
            },
        ),
    ]
    out = []
    for i in range(n):
        kind, payload = kinds[i % len(kinds)]
        out.append(
            messages.new_message(
                kind,
                "mes",
                f"DOC-{i}/1",
                copy.deepcopy(payload),
                occurred_at="2026-11-21T08:30:00+08:00",
            )
        )
    return out


def rate(fn: object, items: list[dict[str, object]], seconds: float) -> float:
    """Messages per second of ``fn`` over ``items``, repeated for at least ``seconds``."""
    done = 0
    start = time.perf_counter()
    while True:
        for item in items:
            fn(item)  # type: ignore[operator]
        done += len(items)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return done / elapsed


def main() -> None:
    """Measure and print the table and the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    seconds = 1.0 if args.quick else 5.0
    items = corpus(2_000)
    import jsonschema
    from referencing import Registry, Resource

    schemas = {kind: messages.schema(kind) for kind in {m["type"] for m in items}}  # type: ignore[misc]
    registry: Registry = Registry(
        retrieve=lambda uri: Resource.from_contents(messages._load_schema(uri))
    )  # type: ignore[call-arg]

    def naive(message: dict[str, object]) -> None:
        jsonschema.validate(message, schemas[message["type"]], registry=registry)  # type: ignore[index]

    for item in items[:50]:  # warm the compiled validators and check both agree
        messages.validate(item)
        naive(item)
    anchor = rate(naive, items[:200], seconds / 2)
    value = rate(messages.validate, items, seconds)
    table(
        [
            ("jsonschema.validate per message (anchor)", f"{anchor:,.0f}"),
            ("conveyor.messages.validate (compiled + Decimal parsing)", f"{value:,.0f}"),
        ],
        ["validator", "msg/s"],
    )
    result(
        "validate",
        "messages_validated_per_s",
        value,
        "msg/s",
        "per-message jsonschema.validate",
        anchor,
        target=f">= {TARGET:,} msg/s on one core",
        meets_target=value >= TARGET,
    )


if __name__ == "__main__":
    main()
