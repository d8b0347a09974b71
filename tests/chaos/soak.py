"""The chaos soak: the hub as separate processes (``conveyor serve``, ``conveyor run`` ×2,
``conveyor watch``, ``conveyor consume``, ``conveyor poll`` on a schedule) on a private
PostgreSQL and a private RabbitMQ, with traffic through every inbound path and faults on a
schedule, then an exact account of what every simulator holds.

Inbound, by business key (``seed`` makes every run the same):

- API pushes (``POST /v1/messages``, batches of 100, a token): ``mes``'s production output, to
  ``erp`` (the http-target simulator) and ``wms`` (a file target);
- AMQP (the ``line`` queue, JSON arrays of 50): ``line``'s material consumption, to ``kingdee``;
- file drops (GBK CSV of 250 rows, one bad row each): ``wh``'s stock transfers, to ``sap``;
- ERP polls (Kingdee releases orders in waves): production orders, to ``erp``.

The controller acts at points of progress (share of deliveries done): restarts RabbitMQ
(``stop_app``/``start_app``), SIGKILLs a worker (another is started in its place), SIGKILLs the
API process, restarts PostgreSQL (``pg_ctl -m immediate``: a crash), and opens fault windows on
the targets: 5xx answers, answers held past the client's timeout, connections refused (the port
closed), answers dropped after the commit. A hub process that ends on its own is started again
and counted as ``crashes``.

The check at the end (``Soak.account``): per business key and target, the simulator's own record
(http-target postings by key, Kingdee bills by ``FDescription``, SAP material documents by
``XBLNR``, files in the WMS folder by their ``reference`` column) holds it exactly once, or the
ledger parked it with a reason; every generated inbound record is a message in the ledger or a
parked record; stock positions equal the sum of the accepted movements (SQL over the ledger) and
the sum computed from the accepted messages' payloads.
"""

from __future__ import annotations

import contextlib
import csv
import itertools
import json
import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.support.private_services import PrivatePostgres, PrivateRabbit

log = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parents[2]
ROWS_PER_FILE = 250
API_BATCH = 100
AMQP_BATCH = 50
TARGETS = ("erp", "wms", "kingdee", "sap")
FAULT_KINDS = ("5xx", "timeout", "refuse", "drop")
TIMEOUT_S = 10
"""The targets' client timeout (generous: the simulators share two cores with the whole hub); a
held answer waits longer than this."""


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port(variable: str) -> int:
    """The port named by ``variable``, else a free one."""
    return int(os.environ.get(variable) or free_port())


@dataclass
class Plan:
    """What one soak does."""

    messages: int = 20_000
    broker_restarts: int = 2
    worker_kills: int = 3
    api_kills: int = 1
    db_restarts: int = 1
    fault_windows: int = 2
    """Windows per fault kind (each on every target that has the fault)."""
    seed: int = 16
    timeout_s: float = 1800.0
    """Give up waiting for the hub to finish after this long."""

    @classmethod
    def for_messages(cls, messages: int) -> Plan:
        """CI's faults for 20,000 messages, and as many again for every further 20,000 (a
        database restart and an API kill per 40,000)."""
        rounds = max(1, messages // 20_000)
        return cls(
            messages=messages,
            broker_restarts=2 * rounds,
            worker_kills=3 * rounds,
            api_kills=max(1, rounds // 2),
            db_restarts=max(1, rounds // 2),
            fault_windows=2 * rounds,
            timeout_s=max(1800.0, messages / 10),
        )

    def split(self) -> dict[str, int]:
        """Messages per inbound path (orders 10 %, API 45 %, AMQP 30 %, files the rest)."""
        orders = max(10, self.messages // 10)
        api = self.messages * 45 // 100
        amqp = self.messages * 30 // 100
        return {
            "poll": orders,
            "api": api,
            "amqp": amqp,
            "files": self.messages - orders - api - amqp,
        }


@dataclass
class Figures:
    """What the soak counts (the printed line)."""

    messages: int = 0
    inbound_paths: int = 4
    broker_restarts: int = 0
    worker_kills: int = 0
    api_kills: int = 0
    db_restarts: int = 0
    crashes: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    deliveries: int = 0
    delivered: int = 0
    missing: int = 0
    duplicates: int = 0
    parked: int = 0
    parked_records: int = 0
    inbound_missing: int = 0
    stock_mismatches: int = 0
    seconds: float = 0.0
    examples: dict[str, list[str]] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        """Deliveries made per second of the run (faults included)."""
        return self.delivered / self.seconds if self.seconds else 0.0

    def line(self) -> str:
        """The one printed line of figures."""
        faults = ", ".join(f"{kind} {self.faults[kind]}" for kind in FAULT_KINDS)
        crashes = sum(self.crashes.values())
        return (
            f"chaos: messages {self.messages}, inbound paths {self.inbound_paths}, "
            f"deliveries {self.deliveries}, broker restarts {self.broker_restarts}, "
            f"worker kills {self.worker_kills}, api kills {self.api_kills}, "
            f"database restarts {self.db_restarts}, target fault windows ({faults}), "
            f"hub crashes restarted {crashes}, missing {self.missing}, "
            f"duplicates {self.duplicates}, parked {self.parked}, "
            f"parked records {self.parked_records}, inbound missing {self.inbound_missing}, "
            f"stock mismatches {self.stock_mismatches}, {self.seconds:.0f} s, "
            f"{self.rate:.0f} deliveries/s"
        )


# ---------------------------------------------------------------------------------------------
# The hub's processes


@dataclass
class HubProcess:
    """One hub command, started again whenever it ends (killed or crashed)."""

    name: str
    args: list[str]
    env: dict[str, str]
    logs: Path
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    killed: bool = False

    def start(self, service: bool = True) -> None:
        self.starts += 1
        self.killed = not service
        out = (self.logs / f"{self.name}.log").open("ab")
        out.write(f"\n--- start {self.starts} at {time.time():.1f}\n".encode())
        out.flush()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "conveyor", *self.args],
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        out.close()

    def kill(self) -> None:
        """SIGKILL (the process gets no chance to tidy up)."""
        if self.process is not None and self.process.poll() is None:
            self.killed = True
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not end."""
        if self.process is not None and self.process.poll() is None:
            self.killed = True
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)

    def ended_by_itself(self) -> bool:
        return self.process is not None and self.process.poll() is not None and not self.killed


class Soak:
    """Services, simulators, project, hub processes, traffic and the controller of one run."""

    def __init__(self, plan: Plan, say: Callable[[str], None] = print) -> None:
        self.plan = plan
        self.say = say
        self.figures = Figures(messages=plan.messages)
        self.root = Path(tempfile.mkdtemp(prefix="conveyor-chaos-"))
        os.chmod(self.root, 0o755)  # noqa: S103 — the postgres and rabbitmq users work in here
        self.split = plan.split()
        self.rng = random.Random(plan.seed)
        self.run_id = uuid.uuid4().hex[:6]
        self.stopping = threading.Event()
        self.errors: list[str] = []
        self.processes: dict[str, HubProcess] = {}
        self.lock = threading.Lock()
        self._stack = contextlib.ExitStack()
        self.generated: dict[str, list[str]] = {path: [] for path in self.split}
        self.bad_rows = 0
        self.sent = Counter[str]()

    # ---- setting up
    def __enter__(self) -> Soak:
        try:
            self._setup()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        for process in self.processes.values():
            with contextlib.suppress(Exception):
                process.kill()
        self._stack.close()
        if not os.environ.get("CONVEYOR_CHAOS_KEEP"):
            shutil.rmtree(self.root, ignore_errors=True)

    def _setup(self) -> None:
        from simulators.http_target import Behaviour, HttpTarget
        from simulators.sap import serve as serve_sap
        from tests.support import kingdee as kd

        started = time.monotonic()
        # Ports: CONVEYOR_CHAOS_PG_PORT / _MQ_PORT, else free ones (others on this machine may
        # run a private cluster of their own on the customary 55432 / 5673).
        self.pg = self._stack.enter_context(
            PrivatePostgres(self.root / "pg", port=_port("CONVEYOR_CHAOS_PG_PORT"))
        )
        self.mq = self._stack.enter_context(
            PrivateRabbit(
                self.root / "mq", port=_port("CONVEYOR_CHAOS_MQ_PORT"), dist_port=free_port()
            )
        )
        self.db_url = self.pg.create_database("chaos")
        self.erp = self._stack.enter_context(HttpTarget(behaviour=Behaviour(seed=self.plan.seed)))
        self.kingdee = kd.serve(faults={"seed": self.plan.seed})
        self._stack.callback(self.kingdee.shutdown)
        self.sap = serve_sap(faults={"seed": self.plan.seed})
        self._stack.callback(self.sap.shutdown)
        self.project = self._write_project()
        self.env = self._environment()
        self._conveyor("db", "upgrade")
        from conveyor.api.tokens import TokenStore

        self.token = TokenStore.of_project(self.project).add("mes", "ingest")
        self.api_port = free_port()
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        self._declare_line_queue()
        self.say(f"services and simulators up in {time.monotonic() - started:.1f} s ({self.root})")

    def _write_project(self) -> Path:
        from tests.support import kingdee as kd
        from tests.support.file_drop import WH_MAPPING

        root = self.root / "plant"
        root.mkdir()
        shutil.copytree(REPO / "mappings", root / "mappings")
        shutil.copytree(REPO / "master_data", root / "master_data")
        (root / "mappings" / "wh.yaml").write_text(
            WH_MAPPING.format(key="{column: 任务号}"), encoding="utf-8"
        )
        self.wms_out = self.root / "wms-out"
        self.wh_root = self.root / "wh"
        from simulators.sap import STYLES

        config: dict[str, Any] = {
            "systems": {
                "mes": {"connector": "fake", "role": "mes"},
                "line": {
                    "connector": "amqp",
                    "role": "mes",
                    "settings": {"queue": f"chaos.line.{self.run_id}", "prefetch": 200},
                },
                "wh": {
                    "connector": "files",
                    "role": "wms",
                    "settings": {
                        "root": str(self.wh_root),
                        "patterns": {"moves_*.csv": "stock_transfer"},
                        "stable_seconds": 0.5,
                        "encoding": "gbk",
                    },
                },
                "kingdee": {
                    "connector": "kingdee",
                    "role": "erp",
                    "batch_size": 50,
                    "settings": kd.settings(self.kingdee.url, timeout_s=TIMEOUT_S),
                },
                "sap": {
                    "connector": "sap",
                    "role": "erp",
                    "settings": {
                        "wsdl": self.sap.url + STYLES["rfc"]["wsdl"],
                        "timeout_s": TIMEOUT_S,
                        "wsdl_cache": str(self.root / "wsdl.db"),
                    },
                },
                "erp": {
                    "connector": "rest",
                    "role": "erp",
                    "batch_size": 100,
                    "settings": {
                        "url": f"{self.erp.url}/documents",
                        "batch_url": f"{self.erp.url}/documents",
                        "lookup_url": f"{self.erp.url}/documents?key={{key}}",
                        "timeout_s": TIMEOUT_S,
                    },
                },
                "wms": {
                    "connector": "files",
                    "role": "wms",
                    "settings": {"outbox": str(self.wms_out)},
                },
            },
            "routes": [
                {"type": "production_order", "source": "kingdee", "targets": ["erp"]},
                {"type": "production_output", "source": "mes", "targets": ["erp", "wms"]},
                {"type": "material_consumption", "source": "line", "targets": ["kingdee"]},
                {"type": "stock_transfer", "source": "wh", "targets": ["sap"]},
            ],
            "retry": {"max_attempts": 60, "base_delay_s": 0.2, "max_delay_s": 3},
            "transport": {"heartbeat_s": 1, "stale_after_s": 6},
            "alerts": {"on_accept": False},
        }
        (root / "conveyor.yaml").write_text(
            yaml.safe_dump(config, allow_unicode=True), encoding="utf-8"
        )
        return root

    def _environment(self) -> dict[str, str]:
        from conveyor.runtime.secrets import env_name
        from tests.support import kingdee as kd

        env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
        env["CONVEYOR_DB_URL"] = self.db_url
        env["CONVEYOR_BROKER_URL"] = f"{self.mq.url}?prefix=chaos.{self.run_id}"
        env[env_name("line", "URL")] = self.mq.url
        for name, value in kd.secrets().items():
            env[env_name("kingdee", name)] = value
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        return env

    def _conveyor(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "conveyor", "--project", str(self.project), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if done.returncode != 0:
            raise RuntimeError(f"conveyor {' '.join(args)}: {done.stdout}{done.stderr}")
        return done.stdout

    def _declare_line_queue(self) -> None:
        import pika

        connection = pika.BlockingConnection(pika.URLParameters(self.mq.url))
        channel = connection.channel()
        channel.queue_declare(
            f"chaos.line.{self.run_id}", durable=True, arguments={"x-queue-type": "quorum"}
        )
        connection.close()

    # ---- the hub
    def _hub(self, name: str, *args: str, service: bool = True) -> HubProcess:
        """Start ``conveyor ARGS``; a service is kept running (``supervise``), a one-off
        command (a scheduled poll) is not."""
        logs = self.root / "logs"
        logs.mkdir(exist_ok=True)
        process = HubProcess(name, ["--project", str(self.project), *args], self.env, logs)
        process.start(service)  # a one-off that ends is never taken for a crash
        self.processes[name] = process
        return process

    def start_hub(self) -> None:
        self._hub("api", "serve", "--port", str(self.api_port))
        self._hub("worker-1", "run", "--concurrency", "4")
        self._hub("worker-2", "run", "--concurrency", "4")
        self._hub("watch", "watch", "--system", "wh")
        self._hub("consume", "consume", "line", "--pause-s", "0.5")
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.api_url}/readyz", timeout=2).status_code == 200:
                    return
            time.sleep(0.3)
        raise RuntimeError(f"the API did not get ready: {self._tail('api')}")

    def _tail(self, name: str, lines: int = 30) -> str:
        path = self.root / "logs" / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def supervise(self) -> None:
        """Start again any hub process that ended by itself (counted as a crash)."""
        for name, process in list(self.processes.items()):
            if process.ended_by_itself():
                self.figures.crashes[name] += 1
                code = process.process.returncode if process.process else None
                self.say(f"  {name} ended by itself (exit {code}): restarted")
                process.start()

    # ---- traffic
    def _backlog_ok(self) -> None:
        """Keep at most a few thousand deliveries open, so traffic lasts the whole run."""
        while not self.stopping.is_set():
            done = self.progress_counts()
            if done is None or done[1] - done[0] < 4000:
                return
            time.sleep(0.5)

    def push_api(self) -> None:
        """Production output through ``POST /v1/messages``, batches repeated until 202."""
        from conveyor.messages import new_message

        count = self.split["api"]
        keys = [f"GR-{self.run_id}-{n}" for n in range(count)]
        self.generated["api"] = keys
        headers = {"Authorization": f"Bearer {self.token}"}
        with httpx.Client(timeout=30) as client:
            for start in range(0, count, API_BATCH):
                self._backlog_ok()
                batch = [
                    new_message(
                        "production_output",
                        "mes",
                        key,
                        {
                            "order_id": f"MO{self.rng.randrange(1, 999):06d}",
                            "material": "FG-5001",
                            "quantity": str(Decimal(self.rng.randrange(1, 40)) / 2),
                            "uom": "PCS",
                            "location": "1000/FG",
                        },
                    )
                    for key in keys[start : start + API_BATCH]
                ]
                body = json.dumps(batch, default=str)
                while not self.stopping.is_set():
                    try:
                        answer = client.post(
                            f"{self.api_url}/v1/messages",
                            content=body,
                            headers={**headers, "Content-Type": "application/json"},
                        )
                        if answer.status_code in (200, 201, 202):
                            break
                        if answer.status_code < 500 and answer.status_code != 429:
                            self.errors.append(f"API answered {answer.status_code}: {answer.text}")
                            return
                    except httpx.HTTPError:
                        pass
                    time.sleep(0.3)
                self.sent["api"] += len(batch)

    def publish_amqp(self) -> None:
        """Material consumption as JSON arrays on the ``line`` queue, with publisher confirms;
        a batch whose confirm was lost is published again (the hub takes it once)."""
        import pika
        import pika.exceptions

        from conveyor.messages import new_message

        count = self.split["amqp"]
        keys = [f"CONS-{self.run_id}-{n}" for n in range(count)]
        self.generated["amqp"] = keys
        queue = f"chaos.line.{self.run_id}"
        channel = None
        connection = None
        for start in range(0, count, AMQP_BATCH):
            self._backlog_ok()
            batch = [
                new_message(
                    "material_consumption",
                    "line",
                    key,
                    {
                        "order_id": f"MO{self.rng.randrange(1, 999):06d}",
                        "material": "RM-1001",
                        "location": "1000/RM",
                        "quantity": str(Decimal(self.rng.randrange(1, 100)) / 4),
                        "uom": "KG",
                    },
                )
                for key in keys[start : start + AMQP_BATCH]
            ]
            body = json.dumps(batch, default=str).encode()
            while not self.stopping.is_set():
                try:
                    if connection is None or connection.is_closed:
                        connection = pika.BlockingConnection(
                            pika.URLParameters(self.mq.url + "?socket_timeout=5&heartbeat=30")
                        )
                        channel = connection.channel()
                        channel.confirm_delivery()
                    assert channel is not None
                    channel.basic_publish(
                        "",
                        queue,
                        body,
                        pika.BasicProperties(content_type="application/json", delivery_mode=2),
                        mandatory=True,
                    )
                    break
                except (pika.exceptions.AMQPError, OSError):
                    with contextlib.suppress(Exception):
                        if connection is not None:
                            connection.close()
                    connection = None
                    time.sleep(0.5)
            self.sent["amqp"] += len(batch)
        with contextlib.suppress(Exception):
            if connection is not None:
                connection.close()

    def drop_files(self) -> None:
        """Stock transfers as GBK CSV files (one unknown SKU per file) into ``wh``'s inbox."""
        from tests.support.file_drop import move_rows, write_moves

        count = self.split["files"]
        inbox = self.wh_root / "inbox"
        inbox.mkdir(parents=True, exist_ok=True)
        staging = self.root / "wh-staging"
        staging.mkdir(exist_ok=True)
        made = 0
        for number in itertools.count(1):
            if made >= count:
                break
            self._backlog_ok()
            rows = move_rows(
                min(ROWS_PER_FILE, count - made) + 1, prefix=f"T{self.run_id}-{number}-"
            )
            bad = self.rng.randrange(len(rows))
            rows[bad][1] = "SKU-UNKNOWN"
            self.bad_rows += 1
            self.generated["files"] += [row[0] for i, row in enumerate(rows) if i != bad]
            made += len(rows) - 1
            name = f"moves_{self.run_id}_{number:04d}.csv"
            write_moves(staging / name, rows)
            os.replace(staging / name, inbox / name)
            self.sent["files"] += len(rows)
            time.sleep(0.2)

    def release_orders(self) -> None:
        """Production orders released in Kingdee in ten waves."""
        from simulators._erp import generate_orders

        simulator = self.kingdee.simulator
        count = self.split["poll"]
        orders = generate_orders(count, simulator.master, self.plan.seed)
        self.generated["poll"] = [f"MO{order.number}" for order in orders]
        waves = 10
        for wave in range(waves):
            self._backlog_ok()
            chunk = orders[wave * count // waves : (wave + 1) * count // waves]
            simulator.seed_orders(chunk)  # type: ignore[attr-defined]
            self.sent["poll"] += len(chunk)
            self.stopping.wait(2.0)

    def poll_loop(self) -> None:
        """``conveyor poll kingdee`` every few seconds, as Airflow would schedule it."""
        while not self.stopping.is_set():
            poller = self._hub("poll", "poll", "kingdee", service=False)
            assert poller.process is not None
            with contextlib.suppress(subprocess.TimeoutExpired):
                poller.process.wait(timeout=120)
            self.stopping.wait(5.0)

    # ---- progress
    def progress_counts(self) -> tuple[int, int] | None:
        """(deliveries delivered or parked, deliveries) in the ledger; None while it is down."""
        from sqlalchemy import text

        try:
            engine = self._engine()
            with engine.connect() as conn:
                row = conn.execute(
                    text(
                        "select count(*) filter (where status in ('delivered', 'parked')),"
                        " count(*) from deliveries"
                    )
                ).one()
            return int(row[0]), int(row[1])
        except Exception:
            return None

    def _engine(self) -> Any:
        if not hasattr(self, "_db"):
            from conveyor.ledger.db import make_engine

            self._db = make_engine(self.db_url, pool_size=2, connect_args={"connect_timeout": 3})
        return self._db

    def expected_deliveries(self) -> int:
        split = self.split
        return split["poll"] + 2 * split["api"] + split["amqp"] + split["files"]

    # ---- faults
    def _fault_window(self, kind: str, seconds: float = 4.0) -> None:
        kd = self.kingdee.simulator.faults
        sap = self.sap.simulator.faults
        if kind == "refuse":
            threads = [
                threading.Thread(target=server.refuse, args=(seconds,))
                for server in (self.erp, self.kingdee, self.sap)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            self.figures.faults[kind] += 3
            return
        if kind == "5xx":
            self.erp.configure(fail_rate=0.3)
            kd.update({"fail_rate": 0.3})
            sap.update({"fail_rate": 0.3})
        elif kind == "timeout":
            self.erp.configure(hang_keys="*", hang_s=TIMEOUT_S + 1.0)
            kd.update({"timeout_rate": 0.3, "timeout_s": TIMEOUT_S + 1.0})
            sap.update({"timeout_rate": 0.3, "timeout_s": TIMEOUT_S + 1.0})
        elif kind == "drop":
            self.erp.configure(drop_answer_rate=0.2)
            kd.update({"drop_answer_rate": 0.2})
            sap.update({"drop_answer_rate": 0.2})
        self.stopping.wait(seconds)
        self.erp.configure(fail_rate=0.0, hang_keys=None, drop_answer_rate=0.0)
        for faults in (kd, sap):
            faults.update({"fail_rate": 0.0, "timeout_rate": 0.0, "drop_answer_rate": 0.0})
        self.figures.faults[kind] += 3

    def _kill_worker(self) -> None:
        name = "worker-1" if self.figures.worker_kills % 2 == 0 else "worker-2"
        process = self.processes[name]
        process.kill()
        self.figures.worker_kills += 1
        time.sleep(1.0)
        process.start()

    def _kill_api(self) -> None:
        process = self.processes["api"]
        process.kill()
        self.figures.api_kills += 1
        time.sleep(1.0)
        process.start()

    def _restart_broker(self) -> None:
        self.mq.restart(down_s=3.0)
        self.figures.broker_restarts += 1

    def _restart_database(self) -> None:
        self.pg.restart(down_s=3.0)
        self.figures.db_restarts += 1

    def schedule(self) -> list[tuple[float, str, Callable[[], None]]]:
        """(share of deliveries done, what, action), in order."""
        plan = self.plan
        events: list[tuple[float, str, Callable[[], None]]] = []

        def spread(count: int, first: float, last: float) -> list[float]:
            if count <= 0:
                return []
            if count == 1:
                return [(first + last) / 2]
            return [first + (last - first) * i / (count - 1) for i in range(count)]

        for at in spread(plan.broker_restarts, 0.2, 0.65):
            events.append((at, "broker restart", self._restart_broker))
        for at in spread(plan.worker_kills, 0.1, 0.8):
            events.append((at, "worker kill", self._kill_worker))
        for at in spread(plan.api_kills, 0.3, 0.3):
            events.append((at, "api kill", self._kill_api))
        for at in spread(plan.db_restarts, 0.45, 0.45):
            events.append((at, "database restart", self._restart_database))
        for index, kind in enumerate(FAULT_KINDS):
            for at in spread(plan.fault_windows, 0.05 + 0.04 * index, 0.75 + 0.04 * index):
                events.append((at, f"{kind} window", partial(self._fault_window, kind)))
        return sorted(events, key=lambda e: e[0])

    # ---- running
    def run(self) -> Figures:
        """Traffic, faults, then wait for the hub to finish; the figures are filled in by
        ``account``."""
        started = time.monotonic()
        self.start_hub()
        feeders = [
            threading.Thread(target=self._guard(f), name=f.__name__, daemon=True)
            for f in (self.push_api, self.publish_amqp, self.drop_files, self.release_orders)
        ]
        poller = threading.Thread(target=self._guard(self.poll_loop), daemon=True)
        for thread in [*feeders, poller]:
            thread.start()
        events = self.schedule()
        total = self.expected_deliveries()
        deadline = started + self.plan.timeout_s
        last_said = 0.0
        while time.monotonic() < deadline and not self.errors:
            self.supervise()
            counts = self.progress_counts()
            done = counts[0] if counts else 0
            while events and done >= events[0][0] * total:
                _share, what, action = events.pop(0)
                self.say(f"  {time.monotonic() - started:6.1f} s  {done}/{total}: {what}")
                action()
            if time.monotonic() - last_said > 15:
                last_said = time.monotonic()
                self.say(
                    f"  {time.monotonic() - started:6.1f} s  {done}/{total} done,"
                    f" sent {dict(self.sent)}"
                )
            feeding = any(thread.is_alive() for thread in feeders)
            finished = counts is not None and counts[0] == counts[1] >= total
            if not feeding and not events and finished and self._inbound_drained():
                break
            time.sleep(0.5)
        self.figures.seconds = time.monotonic() - started
        self.stopping.set()
        poller.join(timeout=150)
        for process in self.processes.values():
            process.stop()
        if self.errors:
            raise RuntimeError("; ".join(self.errors))
        return self.figures

    def _guard(self, function: Callable[[], None]) -> Callable[[], None]:
        def guarded() -> None:
            try:
                function()
            except Exception as exc:  # a feeder's own failure ends the soak with its reason
                self.errors.append(f"{function.__name__}: {exc!r}")

        return guarded

    def _inbound_drained(self) -> bool:
        """Every file archived or in error, the line queue empty, every order polled."""
        inbox = self.wh_root / "inbox"
        processing = self.wh_root / "processing"
        if any(inbox.glob("*.csv")) or (processing.exists() and any(processing.iterdir())):
            return False
        from sqlalchemy import text

        with self._engine().connect() as conn:
            orders = conn.execute(
                text("select count(*) from messages where source = 'kingdee'")
            ).scalar_one()
            messages = conn.execute(text("select count(*) from messages")).scalar_one()
        return bool(orders >= self.split["poll"] and messages >= self.plan.messages)

    # ---- the account
    def account(self) -> Figures:
        """Compare the simulators' records with what was generated and what the ledger says."""
        from sqlalchemy import text

        from connectors.sap import reference

        figures = self.figures
        with self._engine().connect() as conn:
            messages = conn.execute(
                text("select id, type, source, key, payload from messages")
            ).all()
            deliveries = conn.execute(
                text(
                    "select m.source, m.key, d.target, d.status, d.last_error from deliveries d"
                    " join messages m on m.id = d.message_pk"
                )
            ).all()
            parked_records = conn.execute(
                text("select system, file, line, reason from parked_records")
            ).all()
            positions = {
                (r.material, r.location, r.lot): Decimal(str(r.quantity))
                for r in conn.execute(
                    text("select material, location, lot, quantity from stock_positions")
                )
            }
            moved = {
                (r.material, r.location, r.lot): Decimal(str(r.total))
                for r in conn.execute(
                    text(
                        "select material, location, lot, sum(quantity) as total"
                        " from stock_movements group by material, location, lot"
                    )
                )
            }
        # What each target holds, by the hub's key (source:key).
        held: dict[str, Counter[str]] = {target: Counter() for target in TARGETS}
        held["erp"].update(self.erp.counts())
        for _form, documents in (
            httpx.get(
                f"{self.kingdee.url}/_sim/documents", params={"form": "PRD_PickMtrl"}, timeout=30
            )
            .json()
            .items()
        ):
            for document in documents if isinstance(documents, list) else []:
                held["kingdee"][self._hub_key("line", str(document.get("FDescription")))] += 1
        by_reference = {reference(f"wh:{key}"): f"wh:{key}" for key in self.generated["files"]}
        for document in self.sap.simulator.committed():
            held["sap"][by_reference.get(document["XBLNR"], "?" + document["XBLNR"])] += 1
        for path in self.wms_out.glob("*.csv"):
            with open(path, encoding="utf-8", newline="") as fh:
                for row in csv.DictReader(fh):
                    held["wms"][f"mes:{row['reference']}"] += 1

        stored = {(m.source, m.key) for m in messages}
        status: Status = {(d.source, d.key, d.target): (d.status, d.last_error) for d in deliveries}
        expected: list[tuple[str, str]] = []  # (hub key, target)
        for key in self.generated["api"]:
            expected += [(f"mes:{key}", "erp"), (f"mes:{key}", "wms")]
        for key in self.generated["amqp"]:
            expected.append((f"line:{key}", "kingdee"))
        for key in self.generated["files"]:
            expected.append((f"wh:{key}", "sap"))
        orders = [m for m in messages if m.source == "kingdee"]
        for order in orders:
            expected.append((f"kingdee:{order.key}", "erp"))
        figures.deliveries = len(expected)
        problems = tally(figures, expected, held, status)
        # Inbound: every generated record is a message (or parked, for the bad rows).
        for way, source in (("api", "mes"), ("amqp", "line"), ("files", "wh")):
            for key in self.generated[way]:
                if (source, key) not in stored:
                    figures.inbound_missing += 1
                    problems["inbound_missing"].append(f"{source}:{key}")
        numbers = {str(json.loads(order.payload).get("order_id", "")) for order in orders}
        for number in self.generated["poll"]:
            if number not in numbers:
                figures.inbound_missing += 1
                problems["inbound_missing"].append(f"kingdee:{number}")
        bad = [r for r in parked_records if r.system == "wh"]
        figures.parked_records = len(parked_records)
        places = Counter((r.file, r.line) for r in bad)
        if len(bad) != self.bad_rows or any(n > 1 for n in places.values()):
            figures.inbound_missing += abs(self.bad_rows - len(places))
            problems["parked_records"].append(
                f"{len(bad)} parked records for {self.bad_rows} bad rows"
            )
        # Stock: positions = the movements' sum = the accepted messages' payloads folded.
        folded: dict[tuple[str, str, str], Decimal] = defaultdict(Decimal)
        for m in messages:
            p = json.loads(m.payload)
            lot = p.get("lot") or ""
            if m.type == "production_output":
                folded[(p["material"], p["location"], lot)] += Decimal(str(p["quantity"]))
            elif m.type == "material_consumption":
                folded[(p["material"], p["location"], lot)] -= Decimal(str(p["quantity"]))
            elif m.type == "stock_transfer":
                folded[(p["material"], p["from_location"], lot)] -= Decimal(str(p["quantity"]))
                folded[(p["material"], p["to_location"], lot)] += Decimal(str(p["quantity"]))
        for place in set(positions) | set(moved) | set(folded):
            values = {positions.get(place, Decimal(0)), moved.get(place, Decimal(0))}
            values.add(folded.get(place, Decimal(0)))
            if len(values) > 1:
                figures.stock_mismatches += 1
                problems["stock"].append(
                    f"{place}: position {positions.get(place)}, movements {moved.get(place)},"
                    f" messages {folded.get(place)}"
                )
        figures.examples = {kind: found[:5] for kind, found in problems.items()}
        return figures

    @staticmethod
    def _hub_key(source: str, text: str) -> str:
        """Kingdee holds the key as the mapping wrote it (``FDescription: {path: key}``)."""
        return text if ":" in text else f"{source}:{text}"


Status = dict[tuple[str, str, str], tuple[str | None, str | None]]
"""(source, key, target) → (delivery status, last error) in the ledger."""


def tally(
    figures: Figures,
    expected: list[tuple[str, str]],
    held: dict[str, Counter[str]],
    status: Status,
) -> dict[str, list[str]]:
    """Count each expected (hub key, target) as delivered (held once), duplicate (held more
    than once), parked (not held, parked with a reason) or missing (neither); anything a target
    holds that was not expected counts as a duplicate. Returns the problems found, by kind
    (``ledger_disagrees``: held once but the ledger does not say delivered)."""
    problems: dict[str, list[str]] = defaultdict(list)
    for hub_key, target in expected:
        count = held[target].get(hub_key, 0)
        source, key = hub_key.split(":", 1)
        state, reason = status.get((source, key, target), (None, None))
        if count == 1:
            figures.delivered += 1
            if state != "delivered":
                problems["ledger_disagrees"].append(f"{hub_key}→{target}: {state}")
        elif count > 1:
            figures.duplicates += 1
            problems["duplicates"].append(f"{hub_key}→{target} ×{count}")
        elif state == "parked" and reason:
            figures.parked += 1
            problems["parked"].append(f"{hub_key}→{target}: {reason[:120]}")
        else:
            figures.missing += 1
            problems["missing"].append(f"{hub_key}→{target}: {state}")
    wanted = set(expected)
    for target, counts in held.items():
        for hub_key in counts:
            if (hub_key, target) not in wanted:
                figures.duplicates += 1  # posted, but not for anything the hub was given
                problems["unexpected"].append(f"{hub_key}→{target}")
    return problems


@contextlib.contextmanager
def soak(plan: Plan, say: Callable[[str], None] = print) -> Iterator[Soak]:
    """A prepared soak (services, simulators, project), torn down afterwards."""
    with Soak(plan, say) as ready:
        yield ready
