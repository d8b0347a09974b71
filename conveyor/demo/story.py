"""The demo plant's day, as data: opening stock, the two released orders, what the MES reports
(file drop, HTTP push, corrections), what it asks the warehouse to stage, and the differences the
warehouse's count finds. Plant 1000, canonical codes of ``plant/master_data``; every figure the
demo prints is read back from the run, these are only its inputs."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True)
class Position:
    """A stock position in canonical terms."""

    material: str
    location: str
    lot: str
    quantity: Decimal
    uom: str


@dataclass(frozen=True)
class Component:
    """A component line of an order, issued at the order's location."""

    material: str
    quantity: Decimal


@dataclass(frozen=True)
class Order:
    """A production order as the ERP releases it."""

    product: str
    quantity: Decimal
    location: str
    components: tuple[Component, ...]


@dataclass(frozen=True)
class Actual:
    """One material actual of a B2MML performance document, in the MES's own codes."""

    part: str
    lot: str
    area: str
    use: str
    """``Consumed`` or ``Produced``."""
    quantity: str
    unit: str


@dataclass(frozen=True)
class Report:
    """A performance document the MES sends for the order making ``product``."""

    name: str
    product: str
    channel: str
    """``file`` (dropped into the hub's MES folder) or ``http`` (pushed to the API)."""
    actuals: tuple[Actual, ...]


@dataclass(frozen=True)
class Difference(Position):
    """A deliberate difference in the WMS count: ``quantity`` on top of the hub's figure (a
    position the hub does not hold at all is ``quantity`` alone), and why."""

    why: str = ""


D = Decimal

OPENING: tuple[Position, ...] = (
    Position("RM-1001", "1000/WIP-MOLD", "L2611-07", D("600"), "KG"),
    Position("RM-1003", "1000/WIP-MOLD", "L2611-03", D("80"), "KG"),
    Position("RM-2001", "1000/WIP-ASSY", "L2611-11", D("25000"), "PCS"),
    Position("RM-2002", "1000/WIP-ASSY", "L2611-12", D("6000"), "PCS"),
    Position("PK-3001", "1000/WIP-ASSY", "", D("1200"), "PCS"),
)
"""Line-side stock at the start of the shift, the same in the ERP and in the hub."""

ORDERS: tuple[Order, ...] = (
    Order(
        "SF-4001",
        D("200"),
        "1000/WIP-MOLD",
        (Component("RM-1001", D("120")), Component("RM-1003", D("4"))),
    ),
    Order(
        "FG-5001",
        D("48"),
        "1000/WIP-ASSY",
        (
            Component("RM-2001", D("384")),
            Component("RM-2002", D("48")),
            Component("PK-3001", D("4")),
        ),
    ),
)

NEW_MATERIAL = "SF-4002"
"""Made on a trial run, known to the ERP but not yet to the hub's master data."""

REPORTS: tuple[Report, ...] = (
    Report(
        "MOLD",
        "SF-4001",
        "file",
        (
            Actual("P-1001", "L2611-07", "MOLD-1", "Consumed", "118.5", "kg"),
            Actual("P-1003", "L2611-03", "MOLD-1", "Consumed", "4", "kg"),
            Actual("P-4001", "H2611-29", "MOLD-1", "Produced", "196", "pcs"),
            Actual("P-4002", "H2611-29", "MOLD-1", "Produced", "12", "pcs"),
        ),
    ),
    Report(
        "ASSY",
        "FG-5001",
        "http",
        (
            Actual("P-2001", "L2611-11", "ASSY-1", "Consumed", "384", "pcs"),
            Actual("P-2002", "L2611-12", "ASSY-1", "Consumed", "48", "pcs"),
            Actual("P-2002", "L2611-12", "ASSY-1", "Consumed", "10", "pcs"),
            Actual("P-3001", "", "ASSY-1", "Consumed", "4", "pcs"),
            Actual("P-5001", "FG2611-29", "FG", "Produced", "48", "pcs"),
        ),
    ),
)

REVERSED_LINE = ("ASSY", 3)
"""The O-rings scanned twice: the MES reverses that line."""
FAILING_LINE = ("MOLD", 3)
"""The housings' receipt: the ERP's first answer to it is a 503 (retried)."""
LOST_LINE = ("ASSY", 5)
"""The gearboxes' receipt: the ERP commits it, and its answer is lost."""

SCRAP = Position("SF-4001", "1000/WIP-MOLD", "H2611-29", D("6"), "PCS")
"""Short shots moved to the scrap area ``1000/SCRAP``."""
SCRAP_TO = "1000/SCRAP"

STAGING: tuple[tuple[str, str, Decimal, str], ...] = (
    ("RM-2001", "1000/RM", D("1000"), "PCS"),
    ("RM-2002", "1000/RM", D("100"), "PCS"),
    ("PK-3001", "1000/PK", D("10"), "PCS"),
)
"""What the MES asks the warehouse to stage at the assembly line for the next order."""

DIFFERENCES: tuple[Difference, ...] = (
    Difference(
        "RM-1001",
        "1000/WIP-MOLD",
        "L2611-07",
        D("-0.5"),
        "KG",
        why="granulate spilt at the hopper and not booked as scrap",
    ),
    Difference(
        "PK-3001",
        "1000/PK",
        "",
        D("400"),
        "PCS",
        why="cartons received at the dock whose goods receipt reached neither the ERP nor the hub",
    ),
)
