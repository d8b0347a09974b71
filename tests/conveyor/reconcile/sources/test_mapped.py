"""Source: a system's own files through its mapping."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from conveyor.config import Project
from conveyor.reconcile.reference import Reference
from conveyor.reconcile.sources import (
    MappedSnapshot,
    open_snapshot_file,
)

from .helpers import rows_of


def test_system_files_go_through_the_mapping(plant: Project, reference: Reference) -> None:
    path = plant.root / "files" / "sap_mard.csv"
    snapshot = open_snapshot_file("sap", path, reference=reference)
    assert isinstance(snapshot, MappedSnapshot)
    rows = rows_of(snapshot)
    assert ("RM-1001", "1000/RM", "", Decimal("1250.5"), "KG") in rows
    assert ("RM-2001", "1000/WIP-ASSY", "", Decimal(10000), "PCS") in rows  # 10.000 ST
    assert snapshot.mapping_version == reference.version("sap")
    assert snapshot.as_of is not None  # STICHTAG, read by the mapping
    (bad,) = snapshot.unmapped
    assert (bad.line, bad.stage, bad.problems[0]["rule"]) == (13, "map", "lookup")


def test_wms_export_in_grams_is_converted_by_the_mapping(
    tmp_path: Path, reference: Reference
) -> None:
    path = tmp_path / "onhand.csv"
    path.write_text(
        "SKU,LOC,LOT,QTY,UOM\nSKU-1002,WH1-RM,L7,300000,G\nSKU-9999,WH1-RM,,1,KG\n",
        encoding="utf-8",
    )
    snapshot = open_snapshot_file("wms", path, reference=reference)
    assert rows_of(snapshot) == [("RM-1002", "1000/RM", "L7", Decimal(300), "KG")]
    assert [u.stage for u in snapshot.unmapped] == ["map"]
