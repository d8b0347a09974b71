"""The demo's MES and WMS sides, as files and HTTP calls: read the B2MML schedules the hub wrote,
write the performance documents the MES reports (B2MML V0600), and write the warehouse's stock
count (GBK CSV with Chinese headers)."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from xml.sax.saxutils import escape

from lxml import etree

from conveyor.demo.story import Actual, Report

V0600 = "http://www.mesa.org/xml/B2MML-V0600"
COUNT_HEADER = ("物料编码", "库位", "批号", "数量", "单位", "盘点时间")
"""The WMS count export's columns: material (SKU), location, lot, quantity, unit, counted at."""


def read_schedules(folder: Path) -> dict[str, str]:
    """Produced material (MES part) → production request id, from the schedules in ``folder``."""
    from connectors.b2mml.xml import safe_parser

    parser = safe_parser()
    found: dict[str, str] = {}
    for path in sorted(folder.glob("*.xml")):
        root = etree.fromstring(path.read_bytes(), parser)
        for request in root.iter("{*}ProductionRequest", "{*}OperationsRequest"):
            order_id = request.findtext("{*}ID") or ""
            for requirement in request.iter("{*}MaterialRequirement"):
                if requirement.findtext("{*}MaterialUse") == "Produced":
                    found[requirement.findtext("{*}MaterialDefinitionID") or ""] = order_id
    return found


def _actual(actual: Actual) -> str:
    return (
        f"<MaterialActual><MaterialDefinitionID>{escape(actual.part)}</MaterialDefinitionID>"
        + (f"<MaterialLotID>{escape(actual.lot)}</MaterialLotID>" if actual.lot else "")
        + f"<Location><EquipmentID>{escape(actual.area)}</EquipmentID>"
        "<EquipmentElementLevel>StorageZone</EquipmentElementLevel></Location>"
        f"<MaterialUse>{actual.use}</MaterialUse><Quantity><QuantityString>{actual.quantity}"
        f"</QuantityString><UnitOfMeasure>{escape(actual.unit)}</UnitOfMeasure></Quantity>"
        "</MaterialActual>"
    )


def performance(report: Report, document_id: str, order_id: str, when: datetime) -> bytes:
    """The report as a V0600 ``ProcessProductionPerformance`` document."""
    stamp = when.isoformat(timespec="seconds")
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<ProcessProductionPerformance xmlns="{V0600}"'
        f' releaseID="1"><ApplicationArea><CreationDateTime>{stamp}</CreationDateTime>'
        "</ApplicationArea><DataArea><Process/><ProductionPerformance>"
        f"<ID>{escape(document_id)}</ID><PublishedDate>{stamp}</PublishedDate>"
        f"<ProductionResponse><ID>{escape(document_id)}</ID>"
        f"<ProductionRequestID>{escape(order_id)}</ProductionRequestID>"
        f"<SegmentResponse><ID>{escape(report.name)}</ID><ActualEndTime>{stamp}</ActualEndTime>"
        + "".join(_actual(a) for a in report.actuals)
        + "</SegmentResponse></ProductionResponse></ProductionPerformance></DataArea>"
        "</ProcessProductionPerformance>\n"
    ).encode("utf-8")


def count_csv(rows: Sequence[tuple[str, str, str, Decimal, str]], counted_at: datetime) -> bytes:
    """The WMS count export, GBK: rows of (SKU, WMS location, lot, quantity, WMS unit code)."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\r\n")
    writer.writerow(COUNT_HEADER)
    stamp = counted_at.strftime("%Y-%m-%d %H:%M:%S")
    for sku, location, lot, quantity, unit in rows:
        writer.writerow((sku, location, lot, f"{quantity:f}", unit, stamp))
    return text.getvalue().encode("gbk")
