"""Outbound B2MML: a ``production_order`` (as its outbound mapping made it, with B2MML names)
becomes ``ProcessProductionSchedule`` (V0600) or ``ProcessOperationsSchedule`` (V07).

The mapped document (``mappings/mes_b2mml.yaml``) is flat and version-neutral::

    {"ID": schedule id, "RequestID": order id, "SegmentID": …, "ProcessSegmentID": …,
     "MaterialDefinitionID": …, "Quantity": "48", "UnitOfMeasure": "pcs", "Location": …,
     "StartTime": RFC 3339, "EndTime": RFC 3339,
     "MaterialRequirement": [{"ID": line, "MaterialDefinitionID": …, "Quantity": …,
                              "UnitOfMeasure": …, "Location": …}, …]}

The produced material is a material requirement with ``MaterialUse`` Produced, each component
one with Consumed. Element order follows the official schemas, which the tests check it against.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from lxml import etree

from connectors.b2mml.xml import V0600, V07
from conveyor.errors import TerminalError

VERSION_NAMESPACES = {"V0600": V0600, "V0701": V07, "V07": V07}
"""The ``version`` setting → namespace."""


class DocumentError(TerminalError):
    """The mapped document cannot become valid B2MML (a missing field, a schema violation)."""


def _text(value: Any) -> str:
    return "" if value is None else str(value)


class _Builder:
    def __init__(self, namespace: str) -> None:
        self.ns = namespace

    def el(self, parent: Any, name: str, text: Any = None) -> Any:
        element = etree.SubElement(parent, f"{{{self.ns}}}{name}")
        if text is not None:
            element.text = _text(text)
        return element

    def opt(self, parent: Any, name: str, value: Any) -> None:
        if value not in (None, ""):
            self.el(parent, name, value)

    def quantity(self, parent: Any, item: Mapping[str, Any]) -> None:
        quantity = self.el(parent, "Quantity")
        self.el(quantity, "QuantityString", item.get("Quantity"))
        self.el(quantity, "DataType", "decimal")
        self.opt(quantity, "UnitOfMeasure", item.get("UnitOfMeasure"))


def _requirements(document: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """``(MaterialUse, item)`` for the produced material and every component."""
    produced = {
        "ID": "0",
        "MaterialDefinitionID": document.get("MaterialDefinitionID"),
        "Quantity": document.get("Quantity"),
        "UnitOfMeasure": document.get("UnitOfMeasure"),
        "Location": document.get("Location"),
    }
    out: list[tuple[str, Mapping[str, Any]]] = [("Produced", produced)]
    components = document.get("MaterialRequirement") or []
    if not isinstance(components, list):
        raise DocumentError("MaterialRequirement must be a list (map it with each:)")
    for index, component in enumerate(components, start=1):
        item = dict(component)
        item.setdefault("ID", str(index))
        out.append(("Consumed", item))
    return out


def _required(document: Mapping[str, Any], *names: str) -> None:
    missing = [n for n in names if document.get(n) in (None, "")]
    if missing:
        raise DocumentError(f"the mapped schedule lacks {', '.join(missing)}")


def schedule(document: Mapping[str, Any], version: str, *, now: datetime | None = None) -> bytes:
    """The ``Process…Schedule`` document of ``version`` (``V0600`` or ``V0701``) as UTF-8 XML."""
    namespace = VERSION_NAMESPACES.get(version)
    if namespace is None:
        raise DocumentError(f"unknown B2MML version {version!r} (V0600 or V0701)")
    _required(document, "ID", "MaterialDefinitionID", "Quantity")
    created = (now or datetime.now(UTC)).isoformat(timespec="seconds")
    b = _Builder(namespace)
    if namespace == V0600:
        root = etree.Element(f"{{{namespace}}}ProcessProductionSchedule", nsmap={None: namespace})  # type: ignore[dict-item]
        root.set("releaseID", "6.0")
        area = b.el(root, "ApplicationArea")
        b.el(area, "CreationDateTime", created)
        data = b.el(root, "DataArea")
        b.el(data, "Process")
        _v0600(b, b.el(data, "ProductionSchedule"), document, created)
    else:
        root = etree.Element(f"{{{namespace}}}ProcessOperationsSchedule", nsmap={None: namespace})  # type: ignore[dict-item]
        root.set("releaseID", "7.0")
        area = b.el(root, "ApplicationArea")
        b.el(area, "CreationDateTime", created)
        data = b.el(root, "DataArea")
        b.el(data, "Process")
        _v07(b, b.el(data, "OperationsSchedule"), document, created)
    body: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    return body


def _v0600(b: _Builder, sched: Any, document: Mapping[str, Any], created: str) -> None:
    b.el(sched, "ID", document["ID"])
    b.el(sched, "PublishedDate", created)
    b.opt(sched, "StartTime", document.get("StartTime"))
    b.opt(sched, "EndTime", document.get("EndTime"))
    request = b.el(sched, "ProductionRequest")
    b.el(request, "ID", document.get("RequestID") or document["ID"])
    b.opt(request, "StartTime", document.get("StartTime"))
    b.opt(request, "EndTime", document.get("EndTime"))
    segment = b.el(request, "SegmentRequirement")
    b.el(segment, "ID", document.get("SegmentID") or "1")
    b.opt(segment, "ProcessSegmentID", document.get("ProcessSegmentID"))
    b.opt(segment, "EarliestStartTime", document.get("StartTime"))
    b.opt(segment, "LatestEndTime", document.get("EndTime"))
    for use, item in _requirements(document):
        requirement = b.el(segment, "MaterialRequirement")
        b.el(requirement, "MaterialDefinitionID", item.get("MaterialDefinitionID"))
        if item.get("Location"):
            location = b.el(requirement, "Location")
            b.el(location, "EquipmentID", item["Location"])
            b.el(location, "EquipmentElementLevel", "StorageZone")
        b.el(requirement, "MaterialUse", use)
        b.quantity(requirement, item)


def _v07(b: _Builder, sched: Any, document: Mapping[str, Any], created: str) -> None:
    b.el(sched, "ID", document["ID"])
    b.el(sched, "PublishedDate", created)
    b.opt(sched, "StartTime", document.get("StartTime"))
    b.opt(sched, "EndTime", document.get("EndTime"))
    b.el(sched, "OperationsType", "Production")
    request = b.el(sched, "OperationsRequest")
    b.el(request, "ID", document.get("RequestID") or document["ID"])
    b.opt(request, "StartTime", document.get("StartTime"))
    b.opt(request, "EndTime", document.get("EndTime"))
    b.el(request, "OperationsType", "Production")
    segment = b.el(request, "SegmentRequirement")
    b.el(segment, "ID", document.get("SegmentID") or "1")
    b.opt(segment, "EarliestStartTime", document.get("StartTime"))
    b.opt(segment, "LatestEndTime", document.get("EndTime"))
    b.el(segment, "OperationsType", "Production")
    b.el(segment, "ProcessSegmentID", document.get("ProcessSegmentID") or "")
    b.el(segment, "OperationsDefinitionID", document.get("OperationsDefinitionID") or "")
    b.el(segment, "OperationsSegmentID", document.get("SegmentID") or "1")
    for use, item in _requirements(document):
        requirement = b.el(segment, "MaterialRequirement")
        b.el(requirement, "ID", item.get("ID"))
        b.el(requirement, "MaterialDefinitionID", item.get("MaterialDefinitionID"))
        b.el(requirement, "MaterialUse", use)
        if item.get("Location"):
            storage = b.el(requirement, "StorageLocation")
            b.el(storage, "Location", item["Location"])
            b.el(storage, "LocationType", "Operational Location")
        b.quantity(requirement, item)
