"""What the ERP simulators share: a threaded HTTP server, fault injection, a state store (memory or
a small SQLite file), stock positions in Decimal, document numbering, master data and a generator
of released production orders.

A simulator subclasses :class:`ErpSimulator` and answers :class:`SimRequest` with
:class:`SimResponse`; :func:`start` puts it behind a ``ThreadingHTTPServer``. Faults are applied
by the server around the simulator (latency before, 5xx instead of, a held or dropped answer
after the commit; ``SimServer.refuse(seconds)``: the port closed for a while) so that every
simulator fails the same way. The ``/_sim/*`` endpoints (faults, documents, stock, orders) are
never subject to faults.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from conveyor.paths import REPO_DIR, project_dir

JSON = Any

# ---------------------------------------------------------------------------------------------
# Requests and answers


@dataclass
class SimRequest:
    """One HTTP request as a simulator sees it (header names lowercased)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes = b""
    base_url: str = ""

    def cookies(self) -> dict[str, str]:
        jar: dict[str, str] = {}
        for part in self.headers.get("cookie", "").split(";"):
            name, sep, value = part.strip().partition("=")
            if sep:
                jar[name.strip()] = value.strip()
        return jar

    def json(self) -> JSON:
        """The body as JSON, numbers with a fraction as Decimal (quantities stay exact)."""
        if not self.body.strip():
            return None
        return json.loads(self.body.decode("utf-8-sig"), parse_float=Decimal)


@dataclass
class SimResponse:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json; charset=utf-8"
    headers: list[tuple[str, str]] = field(default_factory=list)


def _json_default(value: object) -> object:
    if isinstance(value, Decimal):
        # The ERPs answer JSON numbers. float() keeps the text exact for quantities of up to 15
        # significant digits (repr gives the shortest round-trip text), and clients parse with
        # Decimal.
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def dumps(value: JSON) -> str:
    return json.dumps(value, ensure_ascii=False, default=_json_default)


def json_response(value: JSON, status: int = 200) -> SimResponse:
    return SimResponse(status=status, body=dumps(value).encode("utf-8"))


def to_decimal(value: object) -> Decimal | None:
    """A quantity from JSON (number or text), or None when it is not a number."""
    if value is None or isinstance(value, bool) or value == "":
        return None
    try:
        number = Decimal(str(value).strip().replace(",", ""))
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


# ---------------------------------------------------------------------------------------------
# Faults


@dataclass
class Faults:
    """Failures on demand. Rates draw from a generator seeded by ``seed`` (deterministic); the
    ``*_next`` counters fail exactly the next N matching calls, so tests can count. ``match``
    limits faults to request paths containing that text (e.g. ``BatchSave``).

    ``fail_keys`` and ``drop_keys`` aim at one document: the first call whose body carries one of
    these texts (the hub's key, or whatever the document carries in its place, such as SAP's
    reference) is answered 503 (``fail_keys``) or committed and left unanswered (``drop_keys``);
    each text is used once. ``hits`` records what was done, as ``(fault, text)`` pairs."""

    latency_ms: int = 0
    fail_rate: float = 0.0
    fail_status: int = 503
    drop_answer_rate: float = 0.0
    timeout_rate: float = 0.0
    timeout_s: float = 30.0
    fail_next: int = 0
    drop_next: int = 0
    timeout_next: int = 0
    match: str = ""
    seed: int | None = None
    fail_keys: list[str] = field(default_factory=list)
    drop_keys: list[str] = field(default_factory=list)
    hits: list[tuple[str, str]] = field(default_factory=list)
    _rng: random.Random = field(default_factory=random.Random, repr=False, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def update(self, changes: Mapping[str, Any]) -> None:
        known = {f.name for f in fields(self) if not f.name.startswith("_")}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(f"unknown fault setting(s): {', '.join(unknown)}")
        for name, value in changes.items():
            current = getattr(self, name)
            if name in ("seed", "match"):
                setattr(self, name, value)
            elif name in ("fail_keys", "drop_keys", "hits"):
                setattr(self, name, [str(v) for v in value] if name != "hits" else list(value))
            else:
                setattr(self, name, type(current)(value))
        if "seed" in changes:
            self._rng = random.Random(self.seed)

    def view(self) -> dict[str, Any]:
        return {
            f.name: list(getattr(self, f.name))
            if isinstance(getattr(self, f.name), list)
            else getattr(self, f.name)
            for f in fields(self)
            if not f.name.startswith("_")
        }

    def applies_to(self, path: str) -> bool:
        return not path.startswith("/_sim/") and (not self.match or self.match in path)

    def draw(self, counter: str, rate: float) -> bool:
        """True when this call takes the fault: from the counter first, else from the rate."""
        left: int = getattr(self, counter)
        if left > 0:
            setattr(self, counter, left - 1)
            return True
        return rate > 0 and self._rng.random() < rate

    def take_key(self, fault: str, body: bytes) -> bool:
        """True when ``body`` carries a text of ``fault`` (``fail_keys`` or ``drop_keys``): that
        text is used up and the hit recorded."""
        texts: list[str] = getattr(self, fault)
        if not texts or not body:
            return False
        text = body.decode("utf-8", "replace")
        with self._lock:
            for wanted in texts:
                if wanted in text:
                    texts.remove(wanted)
                    self.hits.append((fault, wanted))
                    return True
        return False


# ---------------------------------------------------------------------------------------------
# State


class StateStore:
    """Collections of JSON documents by key, in memory and, with a path, in a small SQLite file
    (so a restarted simulator still knows what was posted to it)."""

    def __init__(self, path: str | Path | None = None) -> None:
        self._lock = threading.RLock()
        self.lock = self._lock
        """Held by every read and write (re-entrant): hold it to make several one change."""
        self._data: dict[str, dict[str, JSON]] = {}
        self._db: sqlite3.Connection | None = None
        self._batching = 0
        if path is not None:
            self._db = sqlite3.connect(str(path), check_same_thread=False)
            self._db.execute(
                "create table if not exists state"
                " (collection text, key text, value text, primary key (collection, key))"
            )
            self._db.commit()
            for collection, key, value in self._db.execute(
                "select collection, key, value from state order by rowid"
            ):
                self._data.setdefault(collection, {})[key] = json.loads(value, parse_float=Decimal)

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Many puts, one SQLite commit (seeding thousands of orders)."""
        with self._lock:
            self._batching += 1
            try:
                yield
            finally:
                self._batching -= 1
                if self._db is not None and not self._batching:
                    self._db.commit()

    def _commit(self) -> None:
        if self._db is not None and not self._batching:
            self._db.commit()

    def get(self, collection: str, key: str) -> JSON:
        with self._lock:
            return self._data.get(collection, {}).get(key)

    def all(self, collection: str) -> dict[str, JSON]:
        with self._lock:
            return dict(self._data.get(collection, {}))

    def put(self, collection: str, key: str, value: JSON) -> None:
        with self._lock:
            self._data.setdefault(collection, {})[key] = value
            if self._db is not None:
                self._db.execute(
                    "insert or replace into state (collection, key, value) values (?, ?, ?)",
                    (collection, key, dumps(value)),
                )
                self._commit()

    def delete(self, collection: str, key: str) -> None:
        with self._lock:
            self._data.get(collection, {}).pop(key, None)
            if self._db is not None:
                self._db.execute(
                    "delete from state where collection = ? and key = ?", (collection, key)
                )
                self._commit()

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


class Numbering:
    """Document numbers per prefix (``SCLLD000123``) and ids, kept in the state store."""

    def __init__(self, store: StateStore, width: int = 6) -> None:
        self._store = store
        self._width = width

    def next_value(self, name: str, start: int = 1) -> int:
        # The store's own lock, never a second one: a thread inside ``store.batch()`` (seeding
        # orders) holds it while numbering, and a lock of our own taken first elsewhere (a save)
        # would wait for it in the opposite order — a deadlock.
        with self._store.lock:
            current = self._store.get("counters", name)
            value = start if current is None else int(current) + 1
            self._store.put("counters", name, value)
            return value

    def number(self, prefix: str) -> str:
        return f"{prefix}{self.next_value('no:' + prefix):0{self._width}d}"


StockKey = tuple[str, str, str, str]  # (organisation, warehouse, material, lot)


class NegativeStock(Exception):
    """A movement would take a position below zero (``refuse_negative``)."""

    def __init__(self, key: StockKey, available: Decimal, wanted: Decimal) -> None:
        super().__init__(f"{key}: {available} available, {wanted} wanted")
        self.key = key
        self.available = available
        self.wanted = wanted


class Stock:
    """On-hand quantities per organisation × warehouse × material × lot, in Decimal."""

    def __init__(self, store: StateStore) -> None:
        self._store = store
        self._lock = threading.RLock()

    @staticmethod
    def _key_text(key: StockKey) -> str:
        return "\x1f".join(key)

    def get(self, key: StockKey) -> Decimal:
        value = self._store.get("stock", self._key_text(key))
        return Decimal(0) if value is None else Decimal(str(value["qty"]))

    def rows(self) -> list[tuple[StockKey, Decimal]]:
        out: list[tuple[StockKey, Decimal]] = []
        for value in self._store.all("stock").values():
            key = (value["org"], value["warehouse"], value["material"], value["lot"])
            out.append((key, Decimal(str(value["qty"]))))
        return sorted(out)

    def set(self, key: StockKey, quantity: Decimal) -> None:
        with self._lock:
            self._store.put(
                "stock",
                self._key_text(key),
                {
                    "org": key[0],
                    "warehouse": key[1],
                    "material": key[2],
                    "lot": key[3],
                    "qty": str(quantity),
                },
            )

    def apply(self, moves: Sequence[tuple[StockKey, Decimal]], refuse_negative: bool) -> None:
        """Apply all moves or none: with ``refuse_negative``, a position that would end below
        zero raises :class:`NegativeStock` before anything changes."""
        with self._lock:
            totals: dict[StockKey, Decimal] = {}
            for key, delta in moves:
                totals[key] = totals.get(key, self.get(key)) + delta
            if refuse_negative:
                for key, delta in moves:
                    if delta < 0 and totals[key] < 0:
                        raise NegativeStock(key, self.get(key), -delta)
            for key, total in totals.items():
                self.set(key, total)

    def view(self) -> list[dict[str, Any]]:
        return [
            {"org": k[0], "warehouse": k[1], "material": k[2], "lot": k[3], "quantity": str(q)}
            for k, q in self.rows()
        ]


# ---------------------------------------------------------------------------------------------
# Master data


def master_data_dir(explicit: str | Path | None = None) -> Path:
    """``explicit``, else the project's ``master_data/``, else the source tree's."""
    if explicit is not None:
        return Path(explicit)
    candidate = project_dir() / "master_data"
    return candidate if (candidate / "materials.csv").is_file() else REPO_DIR / "master_data"


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return [dict(row) for row in csv.DictReader(handle)]


@dataclass
class MasterData:
    """The hub's crosswalk tables, read to know which numbers the simulated ERP knows."""

    materials: list[dict[str, str]]
    locations: list[dict[str, str]]
    unit_codes: list[dict[str, str]]

    @classmethod
    def load(
        cls, directory: str | Path | None = None, materials: str | Path | None = None
    ) -> MasterData:
        base = master_data_dir(directory)
        rows = read_csv(base / "materials.csv")
        if materials is not None:
            # An extra file adds to (or overrides) the materials of master_data/.
            extra = read_csv(Path(materials))
            known = {row.get("material"): row for row in rows}
            for row in extra:
                known[row.get("material") or row.get("kingdee_number") or str(len(known))] = row
            rows = list(known.values())
        units = base / "unit_codes.csv"
        return cls(
            materials=rows,
            locations=read_csv(base / "locations.csv"),
            unit_codes=read_csv(units) if units.is_file() else [],
        )

    def column(self, table: str, name: str) -> set[str]:
        rows: list[dict[str, str]] = getattr(self, table)
        return {row[name] for row in rows if row.get(name)}

    def material_by(self, column: str, value: str) -> dict[str, str] | None:
        for row in self.materials:
            if row.get(column) == value:
                return row
        return None

    def unit_code(self, system: str, uom: str) -> str:
        """The system's code for a base unit (the system's own row first, then ``*``)."""
        for wanted in (system, "*"):
            for row in self.unit_codes:
                if row.get("system") == wanted and row.get("uom") == uom:
                    return row["code"]
        return uom


@dataclass
class SeedComponent:
    material: dict[str, str]
    quantity: Decimal


@dataclass
class SeedOrder:
    """A released production order in neutral terms; each simulator dresses it in its shape."""

    index: int
    number: str
    product: dict[str, str]
    quantity: Decimal
    location: dict[str, str]
    start: datetime
    finish: datetime
    components: list[SeedComponent]


def generate_orders(count: int, master: MasterData, seed: int = 0) -> list[SeedOrder]:
    """``count`` released orders for the finished and semi-finished materials, with components
    drawn from the raw and packaging materials; the same seed gives the same orders."""
    rng = random.Random(seed)
    products = [m for m in master.materials if m.get("group") in ("finished", "semi")]
    parts = [m for m in master.materials if m.get("group") in ("raw", "packaging")]
    if not products:
        products = list(master.materials)
    if not parts:
        parts = list(master.materials)
    nettable = [loc for loc in master.locations if loc.get("nettable", "yes") == "yes"]
    locations = nettable or master.locations
    day0 = datetime(2026, 1, 5, 8, 0, 0)
    orders: list[SeedOrder] = []
    for index in range(1, count + 1):
        product = rng.choice(products)
        quantity = Decimal(rng.randrange(10, 500))
        start = day0 + timedelta(days=rng.randrange(0, 300), hours=rng.randrange(0, 10))
        chosen = rng.sample(parts, k=min(len(parts), rng.randrange(2, 5)))
        components = [
            SeedComponent(
                part, (quantity * Decimal(rng.randrange(1, 40)) / 10).quantize(Decimal(1))
            )
            for part in chosen
        ]
        orders.append(
            SeedOrder(
                index=index,
                number=f"{index:06d}",
                product=product,
                quantity=quantity,
                location=rng.choice(locations),
                start=start,
                finish=start + timedelta(days=rng.randrange(1, 6)),
                components=components,
            )
        )
    return orders


class ModifyClock:
    """Modification stamps that never repeat and never go back, so a poll by ``>= last seen``
    never misses a change made in the same millisecond."""

    def __init__(self) -> None:
        self._last = datetime.min
        self._lock = threading.Lock()
        self.offset = timedelta(0)

    def now(self) -> datetime:
        with self._lock:
            stamp = datetime.now() + self.offset
            stamp = stamp.replace(microsecond=stamp.microsecond // 1000 * 1000)
            if stamp <= self._last:
                stamp = self._last + timedelta(milliseconds=1)
            self._last = stamp
            return stamp


# ---------------------------------------------------------------------------------------------
# The simulator base and its server


class ErpSimulator:
    """State and request handling of one simulated ERP; subclasses answer the vendor's API in
    :meth:`handle_api` and show their state for ``/_sim/*``."""

    name = "erp"

    def __init__(
        self,
        *,
        state: str | Path | None = None,
        refuse_negative: bool = False,
        master_data: str | Path | None = None,
        materials: str | Path | None = None,
        faults: Faults | Mapping[str, Any] | None = None,
    ) -> None:
        self.store = StateStore(state)
        self.numbering = Numbering(self.store)
        self.stock = Stock(self.store)
        self.master = MasterData.load(master_data, materials)
        self.refuse_negative = refuse_negative
        self.faults = faults if isinstance(faults, Faults) else Faults(**dict(faults or {}))
        self.modify_clock = ModifyClock()
        # Business handling is serialised (like one database); latency is spent outside the lock.
        self.lock = threading.RLock()
        self._time_offset = 0.0

    # Time, so tests can age sessions and tokens without sleeping.
    def now(self) -> float:
        return time.time() + self._time_offset

    def advance(self, seconds: float) -> None:
        """Move the simulator's clock forward (sessions and tokens age; stamps move too)."""
        self._time_offset += seconds
        self.modify_clock.offset += timedelta(seconds=seconds)

    def handle(self, request: SimRequest) -> SimResponse:
        if request.path.startswith("/_sim/"):
            return self._handle_sim(request)
        with self.lock:
            return self.handle_api(request)

    def _handle_sim(self, request: SimRequest) -> SimResponse:
        what = request.path[len("/_sim/") :].strip("/")
        try:
            if what == "faults":
                if request.method == "POST":
                    self.faults.update(request.json() or {})
                return json_response(self.faults.view())
            if what == "documents" and request.method == "GET":
                with self.lock:
                    return json_response(self.documents_view(request.query))
            if what == "stock":
                with self.lock:
                    if request.method == "POST":
                        self.set_stock(request.json() or [])
                    return json_response(self.stock.view())
            if what == "orders" and request.method == "POST":
                body = request.json() or []
                with self.lock:
                    return json_response(
                        self.upsert_orders(body if isinstance(body, list) else [body])
                    )
            if what == "orders" and request.method == "GET":
                with self.lock:
                    return json_response(self.orders_view())
        except (ValueError, KeyError, TypeError) as exc:
            return json_response({"error": str(exc)}, status=400)
        return json_response({"error": f"no simulator endpoint {request.method} /_sim/{what}"}, 404)

    def set_stock(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Set on-hand quantities: rows of ``org``, ``warehouse``, ``material``, ``lot``,
        ``quantity`` in this ERP's own codes."""
        for row in rows:
            quantity = to_decimal(row.get("quantity", row.get("qty")))
            if quantity is None:
                raise ValueError(f"stock row without a numeric quantity: {row}")
            key = (
                str(row.get("org", "")),
                str(row["warehouse"]),
                str(row["material"]),
                str(row.get("lot", "") or ""),
            )
            self.stock.set(key, quantity)

    # Subclasses fill these in.
    def handle_api(self, request: SimRequest) -> SimResponse:
        raise NotImplementedError

    def documents_view(self, query: Mapping[str, str]) -> JSON:
        raise NotImplementedError

    def orders_view(self) -> JSON:
        raise NotImplementedError

    def upsert_orders(self, orders: list[Any]) -> JSON:
        raise NotImplementedError

    def close(self) -> None:
        self.store.close()


class SimServer(ThreadingHTTPServer):
    """A started simulator server: ``.url`` is its base URL; ``shutdown()`` stops it; usable as a
    context manager."""

    daemon_threads = True
    simulator: ErpSimulator

    def __init__(self, address: tuple[str, int], simulator: ErpSimulator) -> None:
        super().__init__(address, _Handler)
        self.simulator = simulator
        self.stopping = threading.Event()
        self.refusing = threading.Event()
        host, port = self.server_address[0], self.server_address[1]
        shown = f"[{host}]" if isinstance(host, str) and ":" in host else str(host)
        self.url = f"http://{shown}:{port}"
        self._thread: threading.Thread | None = None

    def start(self) -> SimServer:
        self._thread = threading.Thread(
            target=self.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"sim-{self.simulator.name}",
            daemon=True,
        )
        self._thread.start()
        return self

    def refuse(self, seconds: float) -> None:
        """Refuse connections for ``seconds`` (``simulators.refuse_for``), then serve again with
        the same state; blocks meanwhile."""
        from simulators import refuse_for

        refuse_for(self, seconds, self.refusing, self.start)

    def shutdown(self) -> None:
        self.stopping.set()  # wakes held ("timeout") answers
        super().shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.simulator.close()

    def __enter__(self) -> SimServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.shutdown()


class _Handler(BaseHTTPRequestHandler):
    server: SimServer
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; without this, Nagle and delayed ACKs add ~40 ms to
    # every keep-alive call.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: the simulators run inside test suites and the demo

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _serve(self) -> None:
        if self.server.refusing.is_set():  # the service is down: nothing read, nothing answered
            self.close_connection = True
            return
        split = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        host = self.headers.get("Host") or self.server.url.split("//", 1)[1]
        request = SimRequest(
            method=self.command,
            path=split.path,
            query=dict(parse_qsl(split.query, keep_blank_values=True)),
            headers={name.lower(): value for name, value in self.headers.items()},
            body=body,
            base_url=f"http://{host}",
        )
        simulator = self.server.simulator
        faults = simulator.faults
        faulty = faults.applies_to(request.path)
        if faulty and faults.latency_ms > 0:
            time.sleep(faults.latency_ms / 1000)
        if faulty and (
            faults.take_key("fail_keys", body) or faults.draw("fail_next", faults.fail_rate)
        ):
            self._answer(
                SimResponse(
                    status=faults.fail_status,
                    body=b"<html><body><h1>Service Unavailable</h1></body></html>",
                    content_type="text/html",
                )
            )
            return
        try:
            response = simulator.handle(request)
        except Exception as exc:  # a simulator bug answers like a crashed IIS, not a hang
            response = SimResponse(
                status=500, body=f"simulator error: {exc!r}".encode(), content_type="text/plain"
            )
        if faulty and (
            faults.take_key("drop_keys", body) or faults.draw("drop_next", faults.drop_answer_rate)
        ):
            # Committed, but the client never hears of it: the ambiguous failure.
            self.close_connection = True
            return
        if faulty and faults.draw("timeout_next", faults.timeout_rate):
            self.server.stopping.wait(faults.timeout_s)
        self._answer(response)

    def _answer(self, response: SimResponse) -> None:
        try:
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(response.body)))
            for name, value in response.headers:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(response.body)
        except OSError:
            self.close_connection = True  # the client gave up (e.g. after a held answer)


def start(simulator: ErpSimulator, host: str = "127.0.0.1", port: int = 0) -> SimServer:
    """Serve ``simulator`` on ``host:port`` (0 = any free port) in a background thread."""
    return SimServer((host, port), simulator).start()


# ---------------------------------------------------------------------------------------------
# Command line


def common_arguments(parser: argparse.ArgumentParser) -> None:
    """Options every simulator takes (``conveyor simulate KIND`` passes the same)."""
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--latency-ms", type=int, default=0)
    parser.add_argument("--fail-rate", type=float, default=0.0, help="share of calls answered 503")
    parser.add_argument(
        "--drop-answer-rate", type=float, default=0.0, help="share of calls committed, unanswered"
    )
    parser.add_argument("--timeout-rate", type=float, default=0.0)
    parser.add_argument("--timeout-s", type=float, default=30.0)
    parser.add_argument("--fault-seed", type=int, default=None, help="makes the rates repeatable")
    parser.add_argument("--refuse-negative", action="store_true")
    parser.add_argument("--seed-orders", type=int, default=0, help="generate N released orders")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated orders")
    parser.add_argument("--orders-file", default=None, help="JSON list of orders to load")
    parser.add_argument("--state", default=None, help="SQLite file that keeps the state")
    parser.add_argument("--master-data", default=None, help="master_data directory")
    parser.add_argument("--materials", default=None, help="extra materials CSV")


def common_options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "state": args.state,
        "refuse_negative": args.refuse_negative,
        "seed_orders": args.seed_orders,
        "seed": args.seed,
        "orders_file": args.orders_file,
        "master_data": args.master_data,
        "materials": args.materials,
        "faults": {
            "latency_ms": args.latency_ms,
            "fail_rate": args.fail_rate,
            "drop_answer_rate": args.drop_answer_rate,
            "timeout_rate": args.timeout_rate,
            "timeout_s": args.timeout_s,
            "seed": args.fault_seed,
        },
    }


def run_until_stopped(server: SimServer, out: Callable[[str], None] | None = None) -> int:
    """Print the base URL first (a launcher reads it), then serve until SIGINT/SIGTERM."""
    (out or (lambda text: print(text, flush=True)))(server.url)
    stop = threading.Event()

    def _stop(signum: int, frame: object) -> None:
        stop.set()

    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.shutdown()
    return 0


def load_json_file(path: str | Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"), parse_float=Decimal)
