"""Source: a connector's snapshot, through a mapping and without."""

from __future__ import annotations

from decimal import Decimal

from conveyor.config import Project
from conveyor.reconcile.reference import NoReference, Reference
from conveyor.reconcile.sources import (
    connector_snapshot,
)

from .helpers import rows_of


def test_connector_snapshot_through_mapping_and_without(
    plant: Project, reference: Reference
) -> None:
    from connectors.fake import FakeConnector

    mapped = FakeConnector(
        "wms",
        {
            "snapshot_rows": [
                {"SKU": "SKU-1001", "LOC": "WH1-RM", "LOT": "L1", "QTY": "5", "UOM": "KG"},
                {"SKU": "nope", "LOC": "WH1-RM", "LOT": "", "QTY": "5", "UOM": "KG"},
            ]
        },
    )
    snapshot = connector_snapshot("wms", mapped, reference=reference)
    assert snapshot.kind == "connector"
    assert rows_of(snapshot) == [("RM-1001", "1000/RM", "L1", Decimal(5), "KG")]
    assert snapshot.rows == 2
    assert len(snapshot.unmapped) == 1
    assert snapshot.sha256 is not None
    canonical = FakeConnector(
        "scale",
        {
            "snapshot_rows": [
                {"material": "M1", "location": "L1", "quantity": 2, "uom": "KG"},
                {"sku": "M2"},
            ]
        },
    )
    plain = connector_snapshot("scale", canonical, reference=NoReference())
    assert rows_of(plain) == [("M1", "L1", "", Decimal(2), "KG")]
    assert [u.stage for u in plain.unmapped] == ["map"]
