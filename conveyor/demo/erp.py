"""The demo's ERP, one of three simulators (``--erp kingdee|sap|yonbip``): started on a free port
with the plant's master data (plus the material the hub does not know yet), given the opening
stock and the released orders, and asked afterwards what it holds. Each also says how the hub is
configured for it (systems and secrets) and aims its deterministic faults at one document.

Simulators and connectors are plug-ins: they are imported inside the methods that start or read
them, never when the engine is imported.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from conveyor.demo.story import Order, Position

CONNECTION = "demo_erp"
"""The connection name of the ERP system: its secrets are ``CONVEYOR_DEMO_ERP_*``."""


@dataclass
class Posting:
    """A document the ERP holds: the hub's key it carries, and its number as the ledger keeps it."""

    key: str
    number: str


@dataclass
class DemoErp:
    """What every demo ERP does; subclasses fill in the vendor's side."""

    kind: str = ""
    system: str = ""
    """The ERP's system name in ``conveyor.yaml``."""
    order_source: str = ""
    """The system production orders come from (the ERP itself, or its IDoc folder)."""
    server: Any = None
    batches: bool = False
    """Whether the hub posts to it in batch saves."""
    keys: list[str] = field(default_factory=list)

    def start(self, master_dir: Path, extra_materials: Path, run_dir: Path) -> None:
        """Start the simulator (free port, in this process)."""
        raise NotImplementedError

    @property
    def url(self) -> str:
        """The simulator's base URL."""
        return str(self.server.url)

    @property
    def simulator(self) -> Any:
        """The simulator object behind the server."""
        return self.server.simulator

    def open_stock(self, positions: Sequence[Position], master: MasterRows) -> None:
        """The opening stock, in the ERP's own codes."""
        raise NotImplementedError

    def release(self, orders: Sequence[Order], master: MasterRows) -> None:
        """Release ``orders`` (the ERP numbers them)."""
        raise NotImplementedError

    def systems(self, run_dir: Path) -> dict[str, dict[str, Any]]:
        """``systems:`` entries of ``conveyor.yaml`` for the ERP side."""
        raise NotImplementedError

    def secrets(self) -> dict[str, str]:
        """Secret name → value of the ERP connection (the simulator's demo credentials)."""
        return {}

    def aim_faults(self, fail_key: str, drop_key: str) -> None:
        """Answer the first call carrying ``fail_key`` with a 503, and commit the first carrying
        ``drop_key`` but lose its answer."""
        self.simulator.faults.update({"fail_keys": [fail_key], "drop_keys": [drop_key]})

    def postings(self, keys: Sequence[str]) -> list[Posting]:
        """Every posting the ERP holds (``keys``: the hub keys it may carry)."""
        raise NotImplementedError

    def stop(self) -> None:
        """Stop the simulator."""
        if self.server is not None:
            self.server.shutdown()
            self.server = None


class MasterRows:
    """The plant's materials and locations by canonical code (the simulators' seed orders want
    the master-data rows)."""

    def __init__(self, master_dir: Path, extra_materials: Path) -> None:
        self.materials = {
            row["material"]: row
            for path in (master_dir / "materials.csv", extra_materials)
            for row in _rows(path)
        }
        self.locations = {row["location"]: row for row in _rows(master_dir / "locations.csv")}


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle))


def seed_orders(orders: Sequence[Order], master: MasterRows) -> list[Any]:
    """The story's orders as the simulators' neutral ``SeedOrder`` (numbered from 1)."""
    from simulators._erp import SeedComponent, SeedOrder

    start = datetime.now().replace(minute=0, second=0, microsecond=0)
    return [
        SeedOrder(
            index=index,
            number=f"{index:06d}",
            product=master.materials[order.product],
            quantity=order.quantity,
            location=master.locations[order.location],
            start=start,
            finish=start + timedelta(hours=8),
            components=[
                SeedComponent(master.materials[c.material], c.quantity) for c in order.components
            ],
        )
        for index, order in enumerate(orders, start=1)
    ]


def stock_rows(
    positions: Sequence[Position],
    master: MasterRows,
    material_column: str,
    warehouse_column: str,
    org_column: str | None = None,
    *,
    org: str = "",
) -> list[dict[str, Any]]:
    """``positions`` as a simulator's ``set_stock`` rows, in the ERP's codes (its columns of the
    master data; the organisation from a column or one for all)."""
    return [
        {
            "org": master.locations[p.location][org_column] if org_column else org,
            "warehouse": master.locations[p.location][warehouse_column],
            "material": master.materials[p.material][material_column],
            "lot": p.lot,
            "quantity": p.quantity,
        }
        for p in positions
    ]


class KingdeeErp(DemoErp):
    """Kingdee K/3 Cloud: orders polled (``PRD_MO`` with ``PRD_PPBOM``), postings by ``BatchSave``
    (audited at once), stock from ``STK_Inventory``."""

    def __init__(self) -> None:
        super().__init__(kind="kingdee", system="kingdee", order_source="kingdee", batches=True)

    def start(self, master_dir: Path, extra_materials: Path, run_dir: Path) -> None:
        """Start the Kingdee simulator."""
        from simulators.kingdee import serve

        self.server = serve(master_data=master_dir, materials=extra_materials)

    def open_stock(self, positions: Sequence[Position], master: MasterRows) -> None:
        """Opening stock per organisation, warehouse, material number and lot."""
        self.simulator.set_stock(
            stock_rows(positions, master, "kingdee_number", "kingdee_stock", "kingdee_stock_org")
        )

    def release(self, orders: Sequence[Order], master: MasterRows) -> None:
        """Audited, released ``PRD_MO`` bills with their ``PRD_PPBOM``."""
        with self.simulator.lock:
            self.simulator.seed_orders(seed_orders(orders, master))

    def systems(self, run_dir: Path) -> dict[str, dict[str, Any]]:
        """The ``kingdee`` system: polled every 0.3 s, posting in batch saves."""
        sim = self.simulator
        return {
            "kingdee": {
                "role": "erp",
                "connector": "kingdee",
                "connection": CONNECTION,
                "poll_every": 0.3,
                "batch_size": 20,
                "settings": {
                    "url": self.url,
                    "acct_id": sim.acct_id,
                    "org": "100",
                    "auto_submit_audit": True,
                    "timeout_s": 5,
                },
            }
        }

    def secrets(self) -> dict[str, str]:
        """The simulator's API user."""
        sim = self.simulator
        return {"USERNAME": sim.username, "PASSWORD": sim.password}

    def aim_faults(self, fail_key: str, drop_key: str) -> None:
        """Keys ride in the bills' remark (``FDescription``), quoted in the JSON body."""
        super().aim_faults(f'"{fail_key}"', f'"{drop_key}"')

    def postings(self, keys: Sequence[str]) -> list[Posting]:
        """Every saved bill (picks, returns, receipts, transfers) with the key in its remark."""
        from simulators.kingdee import FORMS

        found: list[Posting] = []
        with self.simulator.lock:
            for form in FORMS.values():
                if not form.writable or form.form_id in ("PRD_MO", "PRD_PPBOM"):
                    continue
                for doc in self.simulator._docs(form):
                    key = doc.get("FDescription") or doc.get("FNote") or ""
                    found.append(Posting(str(key), str(doc["FBillNo"])))
        return found


class SapErp(DemoErp):
    """SAP over SOAP: orders as LOIPRO IDoc files dropped into a folder the hub watches, goods
    movements by ``BAPI_GOODSMVT_CREATE`` committed in the same session, stock from MARD/MCHB."""

    def __init__(self) -> None:
        super().__init__(kind="sap", system="sap", order_source="sap_idoc")
        self.idoc_dir: Path | None = None

    def start(self, master_dir: Path, extra_materials: Path, run_dir: Path) -> None:
        """Start the SAP simulator; its IDocs go to the hub's ``sap_idoc`` inbox."""
        from simulators.sap import serve

        self.server = serve(master_data=master_dir, materials=extra_materials)
        self.idoc_dir = run_dir / "sap" / "idoc" / "inbox"
        self.idoc_dir.mkdir(parents=True, exist_ok=True)

    def open_stock(self, positions: Sequence[Position], master: MasterRows) -> None:
        """Opening stock per material, plant, storage location and batch."""
        self.simulator.set_stock_rows(
            [
                (
                    master.materials[p.material]["sap_material"],
                    master.locations[p.location]["sap_plant"],
                    master.locations[p.location]["sap_storage_location"],
                    p.lot.upper(),
                    p.quantity,
                )
                for p in positions
            ]
        )

    def release(self, orders: Sequence[Order], master: MasterRows) -> None:
        """Released orders, sent as LOIPRO IDoc-XML files."""
        assert self.idoc_dir is not None
        self.simulator.orders = seed_orders(orders, master)
        self.simulator.emit_idocs(str(self.idoc_dir))

    def systems(self, run_dir: Path) -> dict[str, dict[str, Any]]:
        """``sap`` (SOAP postings) and ``sap_idoc`` (the IDoc folder, read with ``loipro``)."""
        from simulators.sap import STYLES

        assert self.idoc_dir is not None
        return {
            "sap": {
                "role": "erp",
                "connector": "sap",
                "connection": CONNECTION,
                "settings": {
                    "wsdl": self.url + STYLES["rfc"]["wsdl"],
                    "timeout_s": 5,
                    "wsdl_cache": str(run_dir / "sap" / "wsdl-cache.db"),
                },
            },
            "sap_idoc": {
                "role": "erp",
                "connector": "files",
                "mapping": "mappings/sap.yaml",
                "poll_every": 0.3,
                "settings": {
                    "root": str(self.idoc_dir.parent),
                    "patterns": {"*.xml": "loipro"},
                    "stable_seconds": 0,
                    "events": False,
                    "poll_seconds": 0.3,
                },
            },
        }

    def aim_faults(self, fail_key: str, drop_key: str) -> None:
        """SAP carries the hub's key as a reference; a lost answer is lost after the commit."""
        from connectors.sap import reference

        self.simulator.faults.update({"fail_keys": [reference(fail_key)]})
        self.simulator.behaviour.drop_commit_refs.append(reference(drop_key))

    def postings(self, keys: Sequence[str]) -> list[Posting]:
        """Committed material documents, by the reference each carries."""
        from connectors.sap import document_ref, reference

        by_ref = {reference(key): key for key in keys}
        return [
            Posting(
                by_ref.get(doc["XBLNR"], doc["XBLNR"]),
                document_ref(doc["MBLNR"], doc["MJAHR"], doc["XBLNR"]),
            )
            for doc in self.simulator.committed()
        ]


class YonbipErp(DemoErp):
    """YonBIP open API: orders polled by ``pubts``, saves made idempotent by ``resubmitCheckKey``,
    current stock by ``QueryCurrentStocksByCondition``."""

    def __init__(self) -> None:
        super().__init__(kind="yonbip", system="yonbip", order_source="yonbip")

    def start(self, master_dir: Path, extra_materials: Path, run_dir: Path) -> None:
        """Start the YonBIP simulator."""
        from simulators.yonyou import serve

        self.server = serve(mode="yonbip", master_data=master_dir, materials=extra_materials)

    def open_stock(self, positions: Sequence[Position], master: MasterRows) -> None:
        """Opening stock per organisation, warehouse, product code and batch."""
        self.simulator.set_stock(
            stock_rows(positions, master, "yonyou_code", "yonyou_warehouse", org=self.simulator.org)
        )

    def release(self, orders: Sequence[Order], master: MasterRows) -> None:
        """Approved production orders with their material lists."""
        with self.simulator.lock:
            self.simulator.seed_orders(seed_orders(orders, master))

    def systems(self, run_dir: Path) -> dict[str, dict[str, Any]]:
        """The ``yonbip`` system, polled every 0.3 s."""
        return {
            "yonbip": {
                "role": "erp",
                "connector": "yonbip",
                "connection": CONNECTION,
                "poll_every": 0.3,
                "settings": {"url": self.url, "org": self.simulator.org, "timeout_s": 5},
            }
        }

    def secrets(self) -> dict[str, str]:
        """The simulator's self-built app."""
        return {"APP_KEY": self.simulator.app_key, "APP_SECRET": self.simulator.app_secret}

    def aim_faults(self, fail_key: str, drop_key: str) -> None:
        """Saves carry the hub's key as their ``resubmitCheckKey``."""
        from connectors.yonbip import resubmit_check_key

        super().aim_faults(resubmit_check_key(fail_key), resubmit_check_key(drop_key))

    def postings(self, keys: Sequence[str]) -> list[Posting]:
        """Every saved stock document, by its ``resubmitCheckKey``."""
        from connectors.yonbip import resubmit_check_key
        from simulators.yonyou import DEFAULT_SAVE_PATHS

        by_check = {resubmit_check_key(key): key for key in keys}
        found: list[Posting] = []
        with self.simulator.lock:
            for kind in DEFAULT_SAVE_PATHS:
                for doc in self.simulator.store.all("bip:" + kind).values():
                    check = str(doc.get("resubmitCheckKey") or "")
                    found.append(Posting(by_check.get(check, check), str(doc["code"])))
        return found


ERPS: dict[str, type[DemoErp]] = {"kingdee": KingdeeErp, "sap": SapErp, "yonbip": YonbipErp}
"""``--erp`` → its demo ERP."""
