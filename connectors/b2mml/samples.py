"""Sample B2MML performance documents of plant 1000 (the codes of ``master_data/``), generated:
for the tests, the ``b2mml`` benchmark and trying the connector by hand. ``chunks`` streams a
document of any size without holding it."""

from __future__ import annotations

from collections.abc import Iterator

from connectors.b2mml.xml import V0600, V07

_ACTUALS = (
    ("P-2001", "L2611-11", "ASSY-1", "Consumed", "16", "pcs"),
    ("P-1001", "L2611-07", "MOLD-1", "Consumed", "0.125", "kg"),
    ("P-5001", "FG2611-21", "FG", "Produced", "2", "pcs"),
)


def _value(text: str, unit: str = "") -> str:
    unit_part = f"<UnitOfMeasure>{unit}</UnitOfMeasure>" if unit else ""
    return f"<Value><ValueString>{text}</ValueString><DataType>string</DataType>{unit_part}</Value>"


def _context(number: int) -> str:
    """What a machine's segment response carries besides materials (V0600): process data, the
    operators and the equipment with its counters."""
    data = "".join(
        f"<ProductionData><ID>{name}</ID><Description>{name} setpoint</Description>"
        f"{_value(value, unit)}</ProductionData>"
        for name, value, unit in (
            ("MeltTemp", "231.5", "Cel"),
            ("MouldTemp", "45.0", "Cel"),
            ("InjectionPressure", "812", "bar"),
            ("HoldPressure", "420", "bar"),
            ("CycleTime", "28.4", "s"),
            ("Cavities", "4", ""),
            ("ScrapCount", "2", ""),
            ("ShotCount", "96", ""),
        )
    )
    people = "".join(
        f"<PersonnelActual><PersonID>OP-{number % 90 + n}</PersonID>"
        f"<Description>operator shift B</Description><Quantity><QuantityString>8"
        f"</QuantityString><UnitOfMeasure>h</UnitOfMeasure></Quantity></PersonnelActual>"
        for n in (1, 2)
    )
    machines = "".join(
        f"<EquipmentActual><EquipmentID>{machine}</EquipmentID><Description>{machine}"
        f"</Description><Quantity><QuantityString>7.5</QuantityString><UnitOfMeasure>h"
        f"</UnitOfMeasure></Quantity><EquipmentActualProperty><ID>Cycles</ID>{_value('96')}"
        f"</EquipmentActualProperty><EquipmentActualProperty><ID>Downtime</ID>"
        f"{_value('12', 'min')}</EquipmentActualProperty></EquipmentActual>"
        for machine in ("IMM-07", "ROBOT-07", "CHILLER-2")
    )
    return data + people + machines


def _actual(version: str, index: int, detail: bool = False) -> str:
    material, lot, location, use, quantity, unit = _ACTUALS[index % len(_ACTUALS)]
    if version == "V0600":
        where = (
            f"<Location><EquipmentID>{location}</EquipmentID>"
            "<EquipmentElementLevel>StorageZone</EquipmentElementLevel></Location>"
            f"<MaterialUse>{use}</MaterialUse>"
        )
        head = ""
    else:
        where = (
            f"<MaterialUse>{use}</MaterialUse><StorageLocation><Location>{location}</Location>"
            "<LocationType>Operational Location</LocationType></StorageLocation>"
        )
        head = f"<ID>{index + 1}</ID>"
    properties = (
        "".join(
            f"<MaterialActualProperty><ID>{name}</ID>{_value(value)}</MaterialActualProperty>"
            for name, value in (("Supplier", "V-2031"), ("Grade", "A"), ("Moisture", "0.02"))
        )
        if detail
        else ""
    )
    description = f"<Description>{material} {use.lower()}</Description>" if detail else ""
    return (
        f"<MaterialActual>{head}<MaterialDefinitionID>{material}</MaterialDefinitionID>"
        f"<MaterialLotID>{lot}</MaterialLotID>{description}{where}<Quantity><QuantityString>"
        f"{quantity}</QuantityString><UnitOfMeasure>{unit}</UnitOfMeasure></Quantity>"
        f"{properties}</MaterialActual>\n"
    )


def chunks(
    number: int,
    actuals: int = 3,
    version: str = "V0600",
    order: str = "100045",
    *,
    detail: bool = False,
) -> Iterator[bytes]:
    """Document ``number`` (performance ``PERF-<number>``) with ``actuals`` material actuals, in
    pieces; ``version`` is ``V0600`` (``ProcessProductionPerformance``) or ``V0701``
    (``SyncOperationsPerformance``). ``detail`` (V0600) adds what a machine reports besides
    materials — process data, operators, equipment counters, material properties — as real
    documents carry."""
    v0600 = version == "V0600"
    ns = V0600 if v0600 else V07
    root = "ProcessProductionPerformance" if v0600 else "SyncOperationsPerformance"
    verb = "Process" if v0600 else "Sync"
    kind = "Production" if v0600 else "Operations"
    typed = "" if v0600 else "<OperationsType>Production</OperationsType>"
    yield (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<{root} xmlns="{ns}" releaseID="1">'
        "<ApplicationArea><CreationDateTime>2026-11-21T19:56:00+08:00</CreationDateTime>"
        f"</ApplicationArea><DataArea><{verb}/><{kind}Performance><ID>PERF-{number}</ID>"
        f"<PublishedDate>2026-11-21T19:56:00+08:00</PublishedDate>{typed}"
        f"<{kind}Response><ID>RESP-{number}</ID>{typed}<{kind}RequestID>{order}"
        f"</{kind}RequestID><SegmentResponse><ID>SEG-{number}</ID>"
        "<ActualEndTime>2026-11-21T19:55:00+08:00</ActualEndTime>"
        + ("" if v0600 else "<OperationsType>Production</OperationsType>")
        + (_context(number) if detail and v0600 else "")
        + "\n"
    ).encode()
    batch: list[str] = []
    for index in range(actuals):
        batch.append(_actual(version, index, detail and v0600))
        if len(batch) >= 1000:
            yield "".join(batch).encode()
            batch = []
    yield "".join(batch).encode()
    yield (
        f"</SegmentResponse></{kind}Response></{kind}Performance></DataArea></{root}>\n"
    ).encode()


def document(
    number: int, actuals: int = 3, version: str = "V0600", *, detail: bool = False
) -> bytes:
    """Document ``number`` whole (see ``chunks``)."""
    return b"".join(chunks(number, actuals, version, detail=detail))
