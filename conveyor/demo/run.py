"""``conveyor demo``: a plant in a box. An ERP simulator, the MES and the WMS (as files and HTTP
calls) and the hub between them — the same ``OneMachine`` that ``conveyor up`` runs: API,
delivery workers, pollers and file-drop receivers on threads of this process — play one shift of
plant 1000 (``conveyor.demo.story``), step by step, each step waiting on the ledger's counts with
a deadline. The run ends with a reconciliation of ERP, WMS and hub; every figure of the summary is
read from the ledger, the simulators and the report, never from the story's constants.

Everything is written under the run directory (a fresh one per run): the project (``plant/``:
``conveyor.yaml``, mappings, master data, the SQLite ledger and API tokens), the MES and WMS
folders and the reconciliation report.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import yaml
from sqlalchemy import func, select

from conveyor.demo import story
from conveyor.demo.erp import CONNECTION, ERPS, DemoErp, MasterRows, Posting
from conveyor.demo.mes import count_csv, performance, read_schedules
from conveyor.errors import ConveyorError
from conveyor.ledger.models import DeliveryRow, MessageRow, ParkedRecordRow

if TYPE_CHECKING:
    from conveyor.ledger import Ledger
    from conveyor.reconcile.service import RunOutcome
    from conveyor.runtime.hub import OneMachine

TEMPLATE = Path(__file__).resolve().parent / "plant"
"""The demo plant's mappings and master data (package data)."""
SUMMARY_FIELDS = (
    "orders",
    "movements",
    "postings",
    "parked",
    "replayed",
    "lost_answers_recovered",
    "alerts",
    "accuracy_pct",
    "report_dir",
)
"""The figures ``--json`` starts with (the issue's list), in this order."""
MOVING = ("material_consumption", "production_output", "stock_transfer", "stock_adjustment")
WAIT_S = 30.0
"""The longest any one step may wait for the hub."""
PLANT_TZ = ZoneInfo("Asia/Shanghai")


class DemoError(ConveyorError):
    """A step did not reach its state before its deadline (what was expected, what was seen)."""


@dataclass
class DemoOptions:
    """What ``conveyor demo`` was asked for."""

    out: Path | None = None
    erp: str = "kingdee"
    broker: str | None = None
    db: str | None = None
    keep_running: bool = False


@dataclass
class Summary:
    """The run's figures (``--json``), each read from the run."""

    erp: str
    orders: int
    movements: int
    postings: int
    parked: int
    replayed: int
    lost_answers_recovered: int
    retried: int
    alerts: int
    accuracy_pct: float | None
    report_dir: str
    lines: list[dict[str, Any]] = field(default_factory=list)
    checks: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return asdict(self)


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def fresh_run_dir(base: Path | None) -> Path:
    """``base`` when given (it must be empty or new), else ``./conveyor-demo/run-<UTC stamp>``."""
    if base is None:
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        base = Path("conveyor-demo") / f"run-{stamp}-{uuid.uuid4().hex[:4]}"
    if base.exists() and any(base.iterdir()):
        raise DemoError(f"{base} is not empty: give a new --out directory")
    base.mkdir(parents=True, exist_ok=True)
    return base.resolve()


def set_environment(values: Mapping[str, str | None]) -> None:
    """Set the variables (None: remove it)."""
    for name, value in values.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@contextmanager
def environment(values: Mapping[str, str | None]) -> Iterator[None]:
    """Set (or, with None, remove) environment variables for the run; restore them after."""
    before = {name: os.environ.get(name) for name in values}
    try:
        set_environment(values)
        yield
    finally:
        set_environment(before)


def fresh_database(url: str, tag: str) -> str:
    """A new database ``conveyor_demo_<tag>`` on the PostgreSQL server of ``url``: its URL."""
    from sqlalchemy import text
    from sqlalchemy.engine import make_url

    from conveyor.ledger.db import make_engine, normalise_url

    name = f"conveyor_demo_{tag}"
    admin = make_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    return make_url(normalise_url(url)).set(database=name).render_as_string(hide_password=False)


def broker_with_prefix(url: str, tag: str) -> str:
    """``url`` with a queue-name prefix of its own (unless it names one)."""
    if "prefix=" in url:
        return url
    return f"{url}{'&' if '?' in url else '?'}prefix=conveyor.demo.{tag}"


def write_project(run_dir: Path, erp: DemoErp) -> Path:
    """The demo plant's project under ``run_dir/plant``: the template's mappings and master
    data, and a ``conveyor.yaml`` naming the simulators and folders of this run."""
    plant = run_dir / "plant"
    shutil.copytree(TEMPLATE / "mappings", plant / "mappings")
    shutil.copytree(TEMPLATE / "master_data", plant / "master_data")
    folders = {
        "schedules": run_dir / "mes" / "schedules",
        "drop": run_dir / "mes" / "drop",
        "staging": run_dir / "wms" / "staging",
    }
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    systems: dict[str, Any] = {
        **erp.systems(run_dir),
        "mes": {
            "role": "mes",
            "connector": "b2mml",
            "settings": {"out_dir": str(folders["schedules"])},
        },
        "mes_drop": {
            "role": "mes",
            "connector": "files",
            "mapping": "mappings/mes.yaml",
            "poll_every": 0.3,
            "settings": {
                "root": str(folders["drop"]),
                "patterns": {"*.xml": "b2mml"},
                "stable_seconds": 0,
                "events": False,
                "poll_seconds": 0.3,
            },
        },
        "wms": {
            "role": "wms",
            "connector": "files",
            "settings": {"outbox": str(folders["staging"]), "encoding": "gbk"},
        },
    }
    config = {
        "systems": systems,
        "routes": [
            {
                "name": "orders to the shop floor",
                "type": "production_order",
                "source": erp.order_source,
                "targets": ["mes"],
            },
            {
                "name": "shop-floor movements to the ERP",
                "type": ["material_consumption", "production_output", "stock_transfer"],
                "source": ["mes", "mes_drop"],
                "targets": [erp.system],
            },
            {
                "name": "staging requests to the warehouse",
                "type": "material_request",
                "source": "mes",
                "targets": ["wms"],
            },
        ],
        "retry": {"max_attempts": 6, "base_delay_s": 0.2, "max_delay_s": 1},
        "transport": {"concurrency": 2, "batch_size": 20},
    }
    header = "# The demo plant (conveyor demo): simulators stand in for the ERP, MES and WMS.\n"
    (plant / "conveyor.yaml").write_text(
        header + yaml.safe_dump(config, allow_unicode=True, sort_keys=False), encoding="utf-8"
    )
    return plant


class Demo:
    """One run of the demo (see the module docstring)."""

    def __init__(self, options: DemoOptions, say: Callable[[str], None] = print) -> None:
        if options.erp not in ERPS:
            raise DemoError(f"unknown --erp {options.erp!r} (one of {', '.join(ERPS)})")
        self.options = options
        self.say = say
        self.run_dir = fresh_run_dir(options.out)
        self.tag = f"{datetime.now(UTC):%Y%m%d%H%M%S}_{uuid.uuid4().hex[:6]}"
        self.erp: DemoErp = ERPS[options.erp]()
        self.hub_log: list[str] = []
        self.machine: OneMachine | None = None
        self.waiting: threading.Thread | None = None
        self.started = time.monotonic()
        self.keys: dict[tuple[str, int], tuple[str, str]] = {}
        """Story line (report, line number) → (source system, business key)."""
        self.orders: dict[str, str] = {}
        self._restore: dict[str, str | None] = {}
        """The environment before a ``keep_running`` run, put back by ``stop``."""

    # ------------------------------------------------------------------ helpers
    def step(self, text: str) -> None:
        """One progress line, with the seconds since the start."""
        self.say(f"[{time.monotonic() - self.started:5.1f}s] {text}")

    def wait_for(self, what: str, check: Callable[[], Any], timeout: float = WAIT_S) -> Any:
        """Poll ``check`` until it gives something true; ``DemoError`` after ``timeout``."""
        deadline = time.monotonic() + timeout
        pause = 0.05
        while True:
            found = check()
            if found:
                return found
            if time.monotonic() > deadline:
                raise DemoError(f"gave up waiting for {what} after {timeout:g} s (hub: {self.log})")
            time.sleep(pause)
            pause = min(pause * 1.5, 0.3)

    @property
    def log(self) -> str:
        """The hub's last status lines (for an error message)."""
        return "; ".join(self.hub_log[-5:])

    @property
    def ledger(self) -> Ledger:
        """The hub's ledger."""
        assert self.machine is not None
        return self.machine.ledger

    def count(self, query: Any) -> int:
        """The number a ``select count(*)`` gives."""
        with self.ledger.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def messages(self, *types: str) -> int:
        """Messages of ``types`` in the ledger."""
        m = MessageRow
        return self.count(select(func.count()).select_from(m).where(m.type.in_(types)))

    def deliveries(self, target: str, status: str = "delivered") -> int:
        """Deliveries to ``target`` in ``status``."""
        d = DeliveryRow
        return self.count(
            select(func.count()).select_from(d).where(d.target == target, d.status == status)
        )

    def parked_records(self, status: str | None = None) -> int:
        """Parked input records (in ``status``: ``parked``, ``replayed``; None: all)."""
        p = ParkedRecordRow
        query = select(func.count()).select_from(p)
        if status is not None:
            query = query.where(p.status == status)
        return self.count(query)

    def key_of(self, line: tuple[str, int]) -> str:
        """The business key of a story line (report name, line number) in its source."""
        return self.keys[line][1]

    def hub_key_of(self, line: tuple[str, int]) -> str:
        """The hub's key of a story line towards targets (``<source>:<key>``)."""
        from conveyor.delivery.idempotent import business_key

        source, key = self.keys[line]
        return business_key({"source": source, "key": key})

    # ------------------------------------------------------------------ the run
    def run(self) -> Summary:
        """Run the story; the summary at the end (the hub and the ERP are stopped unless
        ``keep_running``)."""
        env: dict[str, str | None] = {
            "CONVEYOR_DB_URL": None,
            "CONVEYOR_BROKER_URL": None,
            "CONVEYOR_PROJECT": None,
        }
        if self.options.keep_running:  # the hub goes on after this returns: so does its environment
            before = {name: os.environ.get(name) for name in env}
            set_environment(env)
            plant = self._prepare(env)
            before.update({name: os.environ.get(name) for name in env if name not in before})
            self._restore = before
            set_environment(env)
            return self._play(plant)
        try:
            with environment(env):
                plant = self._prepare(env)
                with environment(env):  # the secrets and URLs of this run
                    try:
                        return self._play(plant)
                    finally:
                        self.stop()
        finally:
            self.erp.stop()  # also when the run stopped before the hub started

    def _prepare(self, env: dict[str, str | None]) -> Path:
        from conveyor.runtime.secrets import env_name

        master = self.run_dir / "plant" / "master_data"
        self.erp.start(TEMPLATE / "master_data", TEMPLATE / "new_material.csv", self.run_dir)
        plant = write_project(self.run_dir, self.erp)
        self.master = MasterRows(master, TEMPLATE / "new_material.csv")
        for name, value in self.erp.secrets().items():
            env[env_name(CONNECTION, name)] = value
        if self.options.db:
            env["CONVEYOR_DB_URL"] = (
                fresh_database(self.options.db, self.tag)
                if self.options.db.startswith("postgresql")
                else self.options.db
            )
        if self.options.broker:
            env["CONVEYOR_BROKER_URL"] = broker_with_prefix(self.options.broker, self.tag)
        return plant

    def _play(self, plant: Path) -> Summary:
        from conveyor.api.tokens import TokenStore
        from conveyor.config import Project
        from conveyor.runtime.hub import OneMachine

        erp = self.erp
        self.step(f"run directory {self.run_dir}")
        project = Project.load(plant)
        self.token = TokenStore.of_project(plant).add("mes", "ingest")
        self.port = free_port()
        self.machine = OneMachine(project, port=self.port, say=self.hub_log.append)
        self.project = project
        self._opening()
        erp.open_stock(story.OPENING, self.master)
        self.machine.start()
        self.waiting = threading.Thread(target=self.machine.wait, name="demo-hub", daemon=True)
        self.waiting.start()
        transport = "RabbitMQ" if project.broker_url else "embedded transport"
        database = self.ledger.engine.url.render_as_string(hide_password=True)
        self.step(
            f"hub up: API http://127.0.0.1:{self.port}, ledger {database}, {transport}; "
            f"{erp.kind} simulator at {erp.url}"
        )
        self._orders()
        self._reports()
        self._corrections()
        self._postings()
        self._replay()
        alerts = self._alerts()
        outcome = self._reconcile()
        return self._summary(outcome, alerts)

    def _opening(self) -> None:
        from conveyor.messages import new_message

        opened = datetime.now(UTC).replace(microsecond=0)
        messages = [
            new_message(
                "stock_adjustment",
                "wms",
                f"OPENING-{index}",
                {
                    "material": p.material,
                    "location": p.location,
                    "lot": p.lot,
                    "quantity": str(p.quantity),
                    "uom": p.uom,
                    "reason": "opening_balance",
                },
                occurred_at=opened.isoformat(),
            )
            for index, p in enumerate(story.OPENING, start=1)
        ]
        results = self.ledger.accept_batch(messages)
        accepted = sum(1 for r in results if r.status == "accepted")
        self.step(f"opening stock: {accepted} line-side positions in the hub and the ERP")

    def _orders(self) -> None:
        erp = self.erp
        erp.release(story.ORDERS, self.master)
        schedules = self.run_dir / "mes" / "schedules"
        self.wait_for(
            "the schedules of the released orders",
            lambda: self.deliveries("mes") >= len(story.ORDERS),
        )
        self.orders = read_schedules(schedules)
        orders = self.messages("production_order")
        files = len(list(schedules.glob("*.xml")))
        self.step(
            f"ERP released {len(story.ORDERS)} production orders → hub polled {orders} → "
            f"MES got {files} B2MML schedules ({', '.join(sorted(self.orders.values()))})"
        )

    def _reports(self) -> None:
        import requests  # a dependency of the hub (httpx is only the tests')

        now = datetime.now(PLANT_TZ).replace(microsecond=0)
        parts = {row["material"]: row["mes_part"] for row in self.master.materials.values()}
        documents = {}
        for report in story.REPORTS:
            order_id = self.orders[parts[report.product]]
            document_id = f"{report.name}-{order_id}"
            source = "mes_drop" if report.channel == "file" else "mes"
            for line in range(1, len(report.actuals) + 1):
                self.keys[(report.name, line)] = (source, f"{document_id}/{line}")
            documents[report.name] = performance(report, document_id, order_id, now)
        self.erp.aim_faults(self.hub_key_of(story.FAILING_LINE), self.hub_key_of(story.LOST_LINE))
        expected_records = sum(len(r.actuals) for r in story.REPORTS)
        for report in story.REPORTS:
            body = documents[report.name]
            if report.channel == "file":
                inbox = self.run_dir / "mes" / "drop" / "inbox"
                inbox.mkdir(parents=True, exist_ok=True)
                temporary = inbox / f".{report.name}.tmp"
                temporary.write_bytes(body)
                temporary.rename(inbox / f"{report.name}.xml")
            else:
                answer = requests.post(
                    f"http://127.0.0.1:{self.port}/v1/ingest/mes/material_consumption",
                    data=body,
                    headers={
                        "Authorization": f"Bearer {self.token}",
                        "Content-Type": "application/b2mml+xml",
                    },
                    timeout=30,
                )
                if answer.status_code not in (200, 422):
                    raise DemoError(f"the API refused the MES push: {answer.status_code}")
        self.wait_for(
            "the MES reports to be taken in",
            lambda: (
                self.messages(*MOVING) - len(story.OPENING) + self.parked_records()
                >= expected_records
            ),
        )
        taken = self.messages(*MOVING) - len(story.OPENING)
        self.step(
            f"MES reported {expected_records} material actuals as B2MML "
            f"(1 file drop, 1 HTTP push with a token): {taken} accepted, "
            f"{self.parked_records()} parked (MES part P-4002 unknown to the hub)"
        )

    def _corrections(self) -> None:
        import requests  # a dependency of the hub (httpx is only the tests')

        from conveyor.messages import new_message

        now = datetime.now(PLANT_TZ).replace(microsecond=0).isoformat()
        reversed_key = self.key_of(story.REVERSED_LINE)
        with self.ledger.engine.connect() as conn:
            original = conn.execute(
                select(MessageRow.payload).where(
                    MessageRow.source == "mes", MessageRow.key == reversed_key
                )
            ).scalar_one()
        payload = json.loads(original)
        order_id = payload["order_id"]
        messages = [
            new_message(
                "material_consumption",
                "mes",
                f"{reversed_key}/REV",
                {**payload, "reversal_of": reversed_key},
                occurred_at=now,
            ),
            new_message(
                "stock_transfer",
                "mes",
                f"SCRAP-{order_id}/1",
                {
                    "material": story.SCRAP.material,
                    "from_location": story.SCRAP.location,
                    "to_location": story.SCRAP_TO,
                    "lot": story.SCRAP.lot,
                    "quantity": str(story.SCRAP.quantity),
                    "uom": story.SCRAP.uom,
                    "order_id": order_id,
                    "attributes": {"reason": "short shots"},
                },
                occurred_at=now,
            ),
        ]
        assembly = self.orders[self.master.materials["FG-5001"]["mes_part"]]
        for line, (material, source, quantity, uom) in enumerate(story.STAGING, start=1):
            messages.append(
                new_message(
                    "material_request",
                    "mes",
                    f"STAGE-{assembly}/{line}",
                    {
                        "order_id": assembly,
                        "material": material,
                        "from_location": source,
                        "to_location": "1000/WIP-ASSY",
                        "quantity": str(quantity),
                        "uom": uom,
                    },
                    occurred_at=now,
                )
            )
        answer = requests.post(
            f"http://127.0.0.1:{self.port}/v1/messages",
            data=json.dumps(messages).encode(),
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
            timeout=30,
        )
        if answer.status_code != 202:
            raise DemoError(f"the API refused the MES corrections: {answer.text[:500]}")
        self.wait_for(
            "the staging requests to reach the WMS",
            lambda: self.deliveries("wms") >= len(story.STAGING),
        )
        staged = len(list((self.run_dir / "wms" / "staging").glob("*.csv")))
        self.step(
            "MES corrected by HTTP push: 1 reversal (O-rings scanned twice), 1 scrap "
            f"({story.SCRAP.quantity} housings to {story.SCRAP_TO}); "
            f"{len(story.STAGING)} staging requests → WMS wrote {staged} CSV files (GBK)"
        )

    def _postings(self) -> None:
        erp = self.erp.system
        expected = self.messages(*MOVING) - len(story.OPENING)
        self.wait_for(
            f"{expected} postings to {erp}",
            lambda: self.deliveries(erp) >= expected,
        )
        retried = self._errored(erp, "TransientError")
        lost = self._errored(erp, "AmbiguousDeliveryError")
        saves = "batch saves" if self.erp.batches else "one call per document"
        self.step(
            f"hub posted picks, returns, receipts and the scrap move to the ERP ({saves}): "
            f"{self.deliveries(erp)} delivered; 1 call answered 503 → {retried} document(s) "
            f"retried; 1 answer lost after the commit → {lost} document(s) looked up and found, "
            "not posted again"
        )

    def _errored(self, target: str, error: str) -> int:
        d = DeliveryRow
        return self.count(
            select(func.count())
            .select_from(d)
            .where(d.target == target, d.status == "delivered", d.last_error.like(f"{error}%"))
        )

    def _replay(self) -> None:
        from conveyor.mapping import MappingEngine
        from conveyor.mapping.replay import replay_parked

        with self.ledger.engine.connect() as conn:
            reason = conn.execute(select(ParkedRecordRow.reason).limit(1)).scalar_one()
        self.step(f"parked: {reason[:150]}")
        materials = self.run_dir / "plant" / "master_data" / "materials.csv"
        new_rows = (TEMPLATE / "new_material.csv").read_text(encoding="utf-8").splitlines()[1:]
        with materials.open("a", encoding="utf-8") as handle:
            handle.write("".join(row + "\n" for row in new_rows))
        engine = MappingEngine.load(self.project)  # as `conveyor mappings check` would
        assert self.machine is not None
        assert self.machine.worker is not None
        worker_mapping = self.machine.worker.core.mapping
        if worker_mapping is not None:  # the worker would notice within 5 s; the demo is quicker
            worker_mapping.reload_if_changed()
        counts = replay_parked(self.project, self.ledger, engine=engine)
        erp = self.erp.system
        expected = self.messages(*MOVING) - len(story.OPENING)
        self.wait_for("the replayed record's posting", lambda: self.deliveries(erp) >= expected)
        self.step(
            f"integrator added master-data row {story.NEW_MATERIAL} (MES part P-4002) → "
            f"replayed {counts['replayed']} → accepted and posted ({self.deliveries(erp)} postings "
            "delivered to the ERP)"
        )

    def _alerts(self) -> int:
        alerts = self.wait_for(
            "the safety-stock alert", lambda: self.messages("stock_alert"), timeout=WAIT_S
        )
        with self.ledger.engine.connect() as conn:
            payloads = conn.execute(
                select(MessageRow.payload).where(MessageRow.type == "stock_alert")
            ).scalars()
            shown = []
            for text in payloads:
                payload = json.loads(text)
                shown.append(
                    f"{payload['alert']}: {payload['material']} in plant {payload['location']} "
                    f"{payload['quantity']} {payload['uom']} < {payload['required']}"
                )
        self.step(f"stock alerts: {alerts} ({'; '.join(shown)})")
        return int(alerts)

    def _count_rows(self) -> list[tuple[str, str, str, Decimal, str]]:
        """What the warehouse counts: the hub's positions with the story's differences."""
        wms_units = {"PCS": "EA", "KG": "KG"}
        counted: dict[tuple[str, str, str], tuple[Decimal, str]] = {
            (p.material, p.location, p.lot): (Decimal(str(p.quantity)), p.uom)
            for p in self.ledger.positions()
        }
        for difference in story.DIFFERENCES:
            where = (difference.material, difference.location, difference.lot)
            quantity, uom = counted.get(where, (Decimal(0), difference.uom))
            counted[where] = (quantity + difference.quantity, uom)
        rows = []
        for (material, location, lot), (quantity, uom) in sorted(counted.items()):
            rows.append(
                (
                    self.master.materials[material]["wms_sku"],
                    self.master.locations[location]["wms_location"],
                    lot,
                    quantity,
                    wms_units.get(uom, uom),
                )
            )
        return rows

    def _reconcile(self) -> RunOutcome:
        from conveyor.reconcile.service import RunOptions, run_reconciliation

        counted_at = datetime.now(PLANT_TZ).replace(microsecond=0)
        folder = self.run_dir / "wms" / "count"
        folder.mkdir(parents=True, exist_ok=True)
        count = folder / f"stock_{counted_at:%Y%m%d_%H%M%S}.csv"
        count.write_bytes(count_csv(self._count_rows(), counted_at))
        self.step(
            f"WMS dropped its stock count {count.name} (GBK, Chinese headers) with "
            f"{len(story.DIFFERENCES)} physical differences"
        )
        return run_reconciliation(
            self.project,
            self.ledger,
            RunOptions(
                systems=[self.erp.system, "wms", "hub"],
                out=self.run_dir / "report",
                snapshots={"wms": count},
                runner="conveyor demo",
                alerts=False,
            ),
        )

    def _summary(self, outcome: RunOutcome, alerts: int) -> Summary:
        result = outcome.result
        summary = result.summary
        why = {(d.material, d.location, d.lot): d.why for d in story.DIFFERENCES}
        lines = []
        for line in result.exceptions:
            if line.status == "match":
                continue
            lines.append(
                {
                    "material": line.material,
                    "location": line.location,
                    "lot": line.lot or "",
                    "uom": line.uom,
                    "quantities": {
                        k: None if v is None else str(v) for k, v in line.quantities.items()
                    },
                    "status": line.status,
                    "variance_value": None
                    if line.variance_value is None
                    else str(line.variance_value),
                    "explanation": why.get(
                        (line.material, line.location, line.lot or ""), "unexplained"
                    ),
                }
            )
        erp = self.erp.system
        checks = self.check_postings()
        return Summary(
            erp=self.erp.kind,
            orders=self.messages("production_order"),
            movements=self.messages(*MOVING),
            postings=self.deliveries(erp),
            parked=self.parked_records(),
            replayed=self.parked_records("replayed"),
            lost_answers_recovered=self._errored(erp, "AmbiguousDeliveryError"),
            retried=self._errored(erp, "TransientError"),
            alerts=alerts,
            accuracy_pct=summary.accuracy_pct,
            report_dir=str(outcome.out),
            lines=lines,
            checks=checks,
            seconds=round(time.monotonic() - self.started, 1),
        )

    def ledger_postings(self) -> list[Posting]:
        """Every delivered posting to the ERP as the ledger has it: the key and the number."""
        from conveyor.delivery.idempotent import business_key

        d, m = DeliveryRow, MessageRow
        with self.ledger.engine.connect() as conn:
            rows = conn.execute(
                select(m.source, m.key, d.external_ref, d.status)
                .join_from(d, m, m.id == d.message_pk)
                .where(d.target == self.erp.system)
            ).all()
        return [
            Posting(business_key({"source": r.source, "key": r.key}), r.external_ref or "")
            for r in rows
            if r.status == "delivered"
        ]

    def check_postings(self) -> dict[str, Any]:
        """The ERP's documents against the ledger: the same (key, number) pairs both ways, and no
        key posted twice."""
        ledger = self.ledger_postings()
        held = self.erp.postings([p.key for p in ledger])
        keys = [p.key for p in held]
        return {
            "erp_documents": len(held),
            "ledger_delivered": len(ledger),
            "same_documents": sorted((p.key, p.number) for p in held)
            == sorted((p.key, p.number) for p in ledger),
            "posted_twice": sorted({k for k in keys if keys.count(k) > 1}),
        }

    def stop(self) -> None:
        """Stop the hub and the ERP simulator; remove the run's RabbitMQ queues and exchanges
        (what they carried is in the ledger). A PostgreSQL database is kept for a look."""
        if self.machine is not None:
            machine, self.machine = self.machine, None
            machine.stop()
            if self.waiting is not None:
                self.waiting.join(timeout=60)
            machine.ledger.engine.dispose()
            broker = machine.project.broker_url
            if broker and machine.worker is not None:
                from conveyor.transport.rabbitmq import RabbitMQTransport

                transport = RabbitMQTransport(broker, policy=machine.project.retry)
                transport.delete(list(machine.worker.targets))
        self.erp.stop()
        if self._restore:  # what --keep-running set for the hub
            set_environment(self._restore)
            self._restore = {}


def run_demo(options: DemoOptions, say: Callable[[str], None] = print) -> Summary:
    """Run the demo once; its summary."""
    return Demo(options, say).run()
