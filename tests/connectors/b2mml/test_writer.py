"""Outbound B2MML: a production order mapped by ``mappings/mes_b2mml.yaml`` becomes a V0600
``ProcessProductionSchedule`` or a V07 ``ProcessOperationsSchedule`` that validates against the
official schema, with the order's components as consumed material requirements."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from connectors.b2mml import B2mmlConnector
from connectors.b2mml.writer import DocumentError, schedule
from connectors.b2mml.xml import V0600, V07, schema_for
from conveyor.mapping import MappingEngine
from conveyor.messages import new_message

ORDER = {
    "order_id": "100046",
    "material": "FG-5001",
    "quantity": "48",
    "uom": "PCS",
    "location": "1000/FG",
    "status": "released",
    "scheduled_start": "2026-11-22T08:00:00+08:00",
    "scheduled_end": "2026-11-22T20:00:00+08:00",
    "components": [
        {
            "line": "10",
            "material": "RM-2001",
            "quantity": "384",
            "uom": "PCS",
            "location": "1000/WIP-ASSY",
        },
        {
            "line": "20",
            "material": "RM-1001",
            "quantity": "12.5",
            "uom": "KG",
            "location": "1000/WIP-MOLD",
        },
    ],
}


def mapped(engine: MappingEngine) -> dict[str, Any]:
    message = new_message("production_order", "erp", "100046", ORDER)
    return engine.map_outbound("mesx", message)


def names(tree: Any, path: str, namespace: str) -> list[str]:
    return [e.text for e in tree.iterfind(path, {"b": namespace})]


@pytest.mark.parametrize(
    ("version", "namespace", "document", "root"),
    [
        ("V0600", V0600, "ProductionSchedule", "ProcessProductionSchedule"),
        ("V0701", V07, "OperationsSchedule", "ProcessOperationsSchedule"),
    ],
)
def test_a_schedule_of_each_version_validates_against_the_official_schema(
    b2mml_engine: MappingEngine,
    xsd_dir: Path,
    version: str,
    namespace: str,
    document: str,
    root: str,
) -> None:
    body = B2mmlConnector(
        "mesx", {"out_dir": "/nowhere", "version": version, "xsd_dir": str(xsd_dir)}
    ).render(mapped(b2mml_engine))
    tree = etree.fromstring(body)
    compiled = schema_for({"xsd_dir": str(xsd_dir)}, namespace, document)
    assert compiled is not None
    assert compiled.validate(tree), compiled.error_log
    assert etree.QName(tree).localname == root
    requirement = f".//b:{'ProductionRequest' if version == 'V0600' else 'OperationsRequest'}"
    assert names(tree, f"{requirement}/b:ID", namespace) == ["100046"]
    assert names(tree, ".//b:MaterialRequirement/b:MaterialDefinitionID", namespace) == [
        "P-5001",
        "P-2001",
        "P-1001",
    ]
    assert names(tree, ".//b:MaterialRequirement/b:MaterialUse", namespace) == [
        "Produced",
        "Consumed",
        "Consumed",
    ]
    assert names(tree, ".//b:QuantityString", namespace) == ["48", "384", "12.5"]
    assert names(tree, ".//b:UnitOfMeasure", namespace) == ["pcs", "pcs", "kg"]


def test_a_schedule_without_its_material_is_refused() -> None:
    with pytest.raises(DocumentError, match="MaterialDefinitionID"):
        schedule({"ID": "1", "Quantity": "1"}, "V0600")
    with pytest.raises(DocumentError, match="unknown B2MML version"):
        schedule({"ID": "1", "Quantity": "1", "MaterialDefinitionID": "M"}, "V05")


def test_a_schedule_that_breaks_the_schema_is_never_sent(xsd_dir: Path, tmp_path: Path) -> None:
    connector = B2mmlConnector("mesx", {"out_dir": str(tmp_path), "xsd_dir": str(xsd_dir)})
    document = {"ID": "1", "MaterialDefinitionID": "M", "Quantity": "1", "StartTime": "tomorrow"}
    with pytest.raises(DocumentError, match="breaks the B2MML schema"):
        connector.send(document, message_type="production_order", key="erp:1")
    assert list(tmp_path.iterdir()) == []
