"""XML records of a system's snapshot file."""

from __future__ import annotations

import json
from pathlib import Path

from conveyor.reconcile.sources.xml import xml_records


def test_xml_records_one_per_material_lot(tmp_path: Path) -> None:
    path = tmp_path / "lots.xml"
    path.write_text(
        """<?xml version="1.0"?>

<MaterialInformation xmlns="http://www.mesa.org/xml/B2MML">
  <MaterialLot>
    <ID>L-1</ID><MaterialDefinitionID>P-1001</MaterialDefinitionID>
    <Quantity><QuantityString>12.5</QuantityString><UnitOfMeasure>kg</UnitOfMeasure></Quantity>
    <Description>coil</Description>
  </MaterialLot>
  <MaterialLot><ID>L-2</ID><Quantity unit="kg">3</Quantity></MaterialLot>
</MaterialInformation>
""",
        encoding="utf-8",
    )
    records = list(xml_records(path))
    assert [line for line, _ in records] == [4, 9]
    first = records[0][1]
    assert first["ID"] == "L-1"
    assert first["Quantity"] == {"QuantityString": "12.5", "UnitOfMeasure": "kg"}
    assert first["Description"] == "coil"
    assert records[1][1]["Quantity"] == {"@unit": "kg", "#text": "3"}
    broken = tmp_path / "broken.xml"
    broken.write_text("<a><b></a>", encoding="utf-8")
    ((_, error),) = list(xml_records(broken))
    assert isinstance(error, ValueError)


def test_a_snapshot_with_a_dtd_is_refused_unread(tmp_path: Path) -> None:
    """Entities live in a DTD: unexpanded they would read as empty values, expanded they leak
    files; the file is refused instead."""
    path = tmp_path / "lots.xml"
    path.write_text(
        '<?xml version="1.0"?>\n<!DOCTYPE x [<!ENTITY secret SYSTEM "file:///etc/passwd">]>\n'
        "<MaterialInformation><MaterialLot><ID>&secret;</ID></MaterialLot></MaterialInformation>",
        encoding="utf-8",
    )
    ((line, error),) = list(xml_records(path))
    assert line == 1
    assert isinstance(error, ValueError)
    assert "DTD" in str(error)
    assert "root:" not in json.dumps(str(error))
