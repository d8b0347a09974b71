"""The Kingdee simulator and connector as the Kingdee tests and benchmark use them: a simulator
over real loopback HTTP with test-only faults (refuse or drop the answer for given hub keys,
repeat its credentials in error texts), and the connector's settings and secrets for it."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from connectors.kingdee import KingdeeConnector
from conveyor.connector import BatchItem, ItemResult
from simulators._erp import SimRequest, SimResponse, SimServer
from simulators.kingdee import FORMS, Form, KingdeeSimulator, error_item

ACCT_ID = "65a1b2c3d4e5f6"
USERNAME = "kd-integ-user"
PASSWORD = "kd-pass-5e1f7a20c3"
APP_ID = "300001_AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcY"
APP_SECRET = "0123456789abcdef0123456789abcdef"
MISSING_STOCK = "单据体实体【明细】第【1】行分录，【仓库】字段必录"
"""A real K/3 Cloud refusal (DIALECTS.md): what refused keys are answered with."""


class FaultySimulator(KingdeeSimulator):
    """The Kingdee simulator with per-key faults for the tests."""

    def __init__(self, **options: Any) -> None:
        options.setdefault("username", USERNAME)
        options.setdefault("password", PASSWORD)
        options.setdefault("app_id", APP_ID)
        options.setdefault("app_secret", APP_SECRET)
        super().__init__(**options)
        self.reject: set[str] = set()
        self.drop: set[str] = set()
        self.echo_secrets = False
        self.calls: dict[str, int] = {}
        self.calls_lock = threading.Lock()
        self.expire_at_saves: set[int] = set()
        """The sessions expire (the clock passes their lifetime) before these BatchSave calls."""

    def handle_api(self, request: SimRequest) -> SimResponse:
        operation = request.path.rsplit(".", 3)[-3] if request.path.endswith(".kdsvc") else ""
        with self.calls_lock:
            self.calls[operation] = self.calls.get(operation, 0) + 1
            if operation == "BatchSave" and self.calls[operation] in self.expire_at_saves:
                self.advance(self.session_ttl_s + 1)
        response = super().handle_api(request)
        if operation == "BatchSave" and self.drop:
            text = request.body.decode("utf-8", "replace")
            hit = [key for key in self.drop if f'"{key}"' in text]
            if hit:
                self.drop.difference_update(hit)
                self.faults.drop_next += 1  # committed, then the answer is never sent
        return response

    def _validate(self, form: Form, doc: Mapping[str, Any], index: int) -> list[dict[str, Any]]:
        errors = super()._validate(form, doc, index)
        if any(str(doc.get(field)) in self.reject for field in ("FDescription", "FNote")):
            text = MISSING_STOCK
            if self.echo_secrets:
                text += f"（用户 {self.username}，密码 {self.password}，密钥 {self.app_secret}）"
            errors.append(error_item(text, "FStockId", index))
        return errors

    def posts(self, key: str) -> int:
        """How many documents carry the hub's ``key`` (over every writable form)."""
        with self.lock:
            return sum(
                1
                for form in FORMS.values()
                if form.writable
                for doc in self._docs(form)
                if key in (doc.get("FDescription"), doc.get("FNote"))
            )


def serve(**options: Any) -> SimServer:
    """A started :class:`FaultySimulator` on loopback."""
    from simulators._erp import start

    return start(FaultySimulator(**options))


@pytest.fixture
def sim() -> Iterator[SimServer]:
    """A started :class:`FaultySimulator` on loopback, shut down after the test."""
    server = serve()
    try:
        yield server
    finally:
        server.shutdown()


def simulator_of(server: SimServer) -> FaultySimulator:
    """The simulator a server of :func:`serve` runs."""
    found = server.simulator
    assert isinstance(found, FaultySimulator)
    return found


def plant_secrets(monkeypatch: pytest.MonkeyPatch, system: str = "kingdee") -> None:
    """The simulator's credentials as the system's secrets (environment)."""
    from conveyor.runtime.secrets import env_name

    for name, value in secrets().items():
        monkeypatch.setenv(env_name(system, name), value)


def secrets() -> dict[str, str]:
    """The four secrets of a Kingdee connection to the simulator."""
    return {"USERNAME": USERNAME, "PASSWORD": PASSWORD, "APP_ID": APP_ID, "APP_SECRET": APP_SECRET}


def settings(url: str, **more: Any) -> dict[str, Any]:
    """Connector settings for the simulator at ``url``."""
    return {"url": url, "acct_id": ACCT_ID, "org": "100", "timeout_s": 5, **more}


def instock_model(document: Mapping[str, Any]) -> dict[str, Any]:
    """A PRD_INSTOCK document for a plain (unmapped) document or canonical message: what the
    conformance suite posts, since it runs without an outbound mapping."""
    payload = document.get("payload", document)
    return {
        "FormId": "PRD_INSTOCK",
        "Model": {
            "FBillType": {"FNumber": "SCRKD01_SYS"},
            "FStockOrgId": {"FNumber": "100"},
            "FPrdOrgId": {"FNumber": "100"},
            "FEntity": [
                {
                    "FMaterialId": {"FNumber": "5.01.001"},
                    "FStockId": {"FNumber": "CK020"},
                    "FUnitID": {"FNumber": "Pcs"},
                    "FRealQty": str(payload.get("quantity", "1")),
                    "FMoBillNo": str(payload.get("order_id", "")),
                }
            ],
        },
    }


class PlainDocumentsKingdee(KingdeeConnector):
    """The connector taking the conformance suite's plain documents (as PRD_INSTOCK bills)."""

    def send_batch(self, items: Sequence[BatchItem]) -> list[ItemResult]:
        """Shape each plain document as a PRD_INSTOCK bill, then save as the connector does."""
        shaped = [
            item
            if "FormId" in item.document
            else replace(item, document=instock_model(item.document))
            for item in items
        ]
        return super().send_batch(shaped)


def drop_keys(simulator: FaultySimulator, keys: Collection[str]) -> None:
    """Commit, then drop the answer of the next BatchSave carrying any of ``keys``."""
    simulator.drop.update(keys)


REPO = Path(__file__).resolve().parents[2]
NEW_MATERIAL_NAME = '=HYPERLINK("http://x")新物料'
"""A new material's name that starts like a spreadsheet formula (neutralised in the CSV files)."""


def change_material_master(simulator: KingdeeSimulator) -> None:
    """What the master-data tests change in the ERP after seeding: one description and one base
    unit changed, one material added (with a formula-like name), one deleted — from the 12
    materials of ``master_data/`` with a Kingdee number: pulled 12, new 1, changed 2, missing 1,
    unchanged 9."""
    simulator.upsert_material("1.01.002", name="ABS颗粒 阻燃 FR granulate")
    simulator.upsert_material("1.02.001", base_unit="box")
    simulator.upsert_material("9.99.001", name=NEW_MATERIAL_NAME, base_unit="Pcs", group="raw")
    assert simulator.delete_material("3.01.002")


def write_master_data_project(root: Path, url: str | None) -> Path:
    """A project with the shipped master data and one Kingdee system ``kingdee`` (at ``url``;
    None: the URL comes from the Airflow Connection ``kingdee_k3``)."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copytree(REPO / "master_data", root / "master_data", dirs_exist_ok=True)
    shown = settings(url) if url else {"acct_id": ACCT_ID, "org": "100", "timeout_s": 5}
    config = {"systems": {"kingdee": {"connector": "kingdee", "role": "erp",
                                      "connection": "kingdee_k3", "settings": shown}}}  # fmt: skip
    (root / "conveyor.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    return root
