"""What ``conveyor_on_parked`` does with its events (no Airflow needed): take them out of the
triggering asset events, log each in one line, hand them all to the configured notifier."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from conveyor.airflow.notify import describe, load_notifier, notify, parking_events

DELIVERY = {
    "kind": "delivery",
    "delivery_id": 12,
    "target": "sap",
    "status": "parked",
    "type": "material_consumption",
    "source": "mes",
    "key": "MC-7/1",
    "reason": "HTTP 422: material is blocked",
}
RECORD = {
    "kind": "record",
    "parked_id": 3,
    "system": "mes",
    "stage": "map",
    "file": "mes_consumption.csv",
    "line": 4,
    "reason": "no row in materials.csv with mes_part = 'P-9999'",
}
SEEN: list[list[dict[str, Any]]] = []


def remember(events: list[dict[str, Any]]) -> None:
    """A notifier for the test."""
    SEEN.append(events)


@dataclass
class AssetEvent:
    extra: dict[str, Any] = field(default_factory=dict)


def test_events_come_from_the_payload_of_each_asset_event() -> None:
    triggering = {
        "conveyor_parked": [
            AssetEvent({"from_trigger": True, "payload": DELIVERY}),
            AssetEvent({"from_trigger": True, "payload": RECORD}),
            AssetEvent({}),  # a manual asset event carries no payload
        ]
    }
    assert parking_events(triggering) == [DELIVERY, RECORD]


def test_each_event_is_one_line_for_the_operator() -> None:
    assert describe(DELIVERY) == (
        "delivery #12 to sap parked: material_consumption mes/MC-7/1: HTTP 422: material is blocked"
    )
    assert describe(RECORD) == (
        "record #3 from mes parked at map (mes_consumption.csv:4): "
        "no row in materials.csv with mes_part = 'P-9999'"
    )


def test_notify_logs_every_event_and_calls_the_notifier_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    SEEN.clear()
    notify([DELIVERY, RECORD], f"{__name__}:remember")
    assert SEEN == [[DELIVERY, RECORD]]
    assert "delivery #12 to sap parked" in caplog.text
    assert "record #3 from mes" in caplog.text
    notify([], f"{__name__}:remember")
    assert len(SEEN) == 1  # nothing parked: nobody woken


def test_a_notifier_must_be_module_colon_function() -> None:
    with pytest.raises(ValueError, match="module:function"):
        load_notifier("tests.conveyor.airflow.test_notify.remember")
    with pytest.raises(ValueError, match="not callable"):
        load_notifier(f"{__name__}:SEEN")
