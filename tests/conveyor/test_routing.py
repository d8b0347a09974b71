"""Routes: wildcards, conditions, no echo to the source, ordering keys."""

from __future__ import annotations

from conveyor.messages import new_message
from conveyor.routing import Router, ordering_key


def consumption(
    source: str = "mes", location: str = "1000/LINE1", **extra: str
) -> dict[str, object]:
    payload = {
        "order_id": "PO-1",
        "material": "M1",
        "quantity": "1",
        "uom": "KG",
        "location": location,
    }
    payload.update(extra)
    return new_message("material_consumption", source, "MC-1/1", payload)


def test_wildcards_and_union_of_targets() -> None:
    router = Router.from_config(
        [
            {"type": "material_*", "source": "m*", "targets": ["sap"]},
            {"type": ["material_consumption"], "targets": ["wms", "sap"]},
        ]
    )
    assert router.targets(consumption()) == ["sap", "wms"]


def test_condition_on_payload() -> None:
    router = Router.from_config(
        [{"type": "*", "when": {"payload.location": "1000/*"}, "targets": ["sap"]}]
    )
    assert router.targets(consumption(location="1000/LINE1")) == ["sap"]
    assert router.targets(consumption(location="2000/LINE1")) == []


def test_never_back_to_source() -> None:
    router = Router.from_config([{"type": "*", "targets": ["mes", "sap"]}])
    assert router.targets(consumption(source="mes")) == ["sap"]


def test_no_route_is_empty() -> None:
    assert Router().targets(consumption()) == []


def test_ordering_key_groups_order_and_reversal() -> None:
    original = consumption()
    reversal = consumption(reversal_of="MC-1/1")
    assert ordering_key(original) == ordering_key(reversal) == "order:PO-1"
    transfer = new_message(
        "stock_transfer",
        "wms",
        "TO-9/2",
        {"material": "M", "quantity": "1", "uom": "KG", "from_location": "A", "to_location": "B"},
    )
    assert ordering_key(transfer) == "doc:wms:TO-9"
