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


def _actual(version: str, index: int) -> str:
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
    return (
        f"<MaterialActual>{head}<MaterialDefinitionID>{material}</MaterialDefinitionID>"
        f"<MaterialLotID>{lot}</MaterialLotID>{where}<Quantity><QuantityString>{quantity}"
        f"</QuantityString><UnitOfMeasure>{unit}</UnitOfMeasure></Quantity></MaterialActual>\n"
    )


def chunks(
    number: int, actuals: int = 3, version: str = "V0600", order: str = "100045"
) -> Iterator[bytes]:
    """Document ``number`` (performance ``PERF-<number>``) with ``actuals`` material actuals, in
    pieces; ``version`` is ``V0600`` (``ProcessProductionPerformance``) or ``V0701``
    (``SyncOperationsPerformance``)."""
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
        + "\n"
    ).encode()
    batch: list[str] = []
    for index in range(actuals):
        batch.append(_actual(version, index))
        if len(batch) >= 1000:
            yield "".join(batch).encode()
            batch = []
    yield "".join(batch).encode()
    yield (
        f"</SegmentResponse></{kind}Response></{kind}Performance></DataArea></{root}>\n"
    ).encode()


def document(number: int, actuals: int = 3, version: str = "V0600") -> bytes:
    """Document ``number`` whole (see ``chunks``)."""
    return b"".join(chunks(number, actuals, version))
