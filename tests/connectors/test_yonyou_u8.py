"""The U8 OpenAPI connector: token, trade ids, errcode classification and malformed answers with
``responses`` standing in for the gateway; vouchers, lookups, the result URL, stock and the
conformance suite over real loopback HTTP against the U8 simulator."""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
from sqlalchemy import Engine, select

from connectors.yonyou_u8 import TradeIds, YonyouU8Connector, voucher_code
from conveyor.config import Project, RetryPolicy
from conveyor.connector import SendResult
from conveyor.delivery.worker import Worker, WorkerOptions
from conveyor.errors import (
    AmbiguousDeliveryError,
    ConfigError,
    NeedsCheckError,
    RejectedError,
    TransientError,
)
from conveyor.ledger import Ledger
from conveyor.ledger.models import DeliveryRow
from conveyor.mapping import MappingEngine
from conveyor.messages import new_message
from conveyor.routing import Router
from conveyor.runtime import registry
from conveyor.testing.conformance import Harness, conformance_tests
from simulators.yonyou import serve

REPO = Path(__file__).resolve().parents[2]
BASE = "http://u8.example"
APP_KEY = "opa-conveyor"
APP_SECRET = "u8-secret"
ADD_URL = f"{BASE}/api/productin/add"


@pytest.fixture(autouse=True)
def _secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_U8_APP_KEY", APP_KEY)
    monkeypatch.setenv("CONVEYOR_U8_APP_SECRET", APP_SECRET)


def u8(url: str = BASE, **settings: Any) -> YonyouU8Connector:
    return YonyouU8Connector(
        "u8",
        {"url": url, "from_account": "conveyor", "to_account": "001", "timeout_s": 5, **settings},
    )


@pytest.fixture
def mocked() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def _gateway(mocked: responses.RequestsMock, *tokens: str) -> list[str]:
    """Token answers in order, and a trade id answer that hands out T1, T2, … ."""
    for token in tokens:
        mocked.get(f"{BASE}/system/token", json={"errcode": "0", "token": {"id": token}})
    issued: list[str] = []

    def tradeid(request: Any) -> tuple[int, dict[str, str], str]:
        issued.append(f"T{len(issued) + 1}")
        return 200, {}, json.dumps({"errcode": "0", "trade": {"id": issued[-1]}})

    mocked.add_callback(responses.GET, f"{BASE}/system/tradeid", callback=tradeid)
    return issued


def _voucher(code: str = "GR-1") -> dict[str, Any]:
    return {
        "productin": {
            "header": {"code": code, "warehousecode": "20", "receivecode": "11"},
            "body": [{"inventorycode": "0501001", "quantity": "3"}],
        }
    }


def _posted(mocked: responses.RequestsMock) -> list[dict[str, list[str]]]:
    return [
        parse_qs(urlsplit(call.request.url or "").query)
        for call in mocked.calls
        if "/api/productin/add" in (call.request.url or "")
    ]


# ---------------------------------------------------------------------- unit, mocked HTTP
def test_voucher_code_carries_the_key_or_a_stable_short_form() -> None:
    assert voucher_code("mes:GR-1/1") == "mes:GR-1/1"
    long_key = "mes:" + "X" * 60
    assert voucher_code(long_key) == voucher_code(long_key)
    assert len(voucher_code(long_key)) == 30
    assert voucher_code(long_key) != voucher_code(long_key + "Y")


def test_a_write_carries_token_accounts_tradeid_sync_and_the_key_in_the_code(
    mocked: responses.RequestsMock,
) -> None:
    _gateway(mocked, "tok")
    mocked.post(ADD_URL, json={"errcode": "0", "errmsg": "", "id": "1000000001", "code": "K"})
    result = u8().send(_voucher(), message_type="production_output", key="mes:GR-1/1")
    assert result.external_ref == "K"
    (query,) = _posted(mocked)
    assert {k: v[0] for k, v in query.items()} == {
        "from_account": "conveyor",
        "to_account": "001",
        "app_key": APP_KEY,
        "token": "tok",
        "tradeid": "T1",
        "sync": "1",
    }
    body = json.loads(mocked.calls[-1].request.body or b"")
    assert body["productin"]["header"]["code"] == "mes:GR-1/1"
    assert body["productin"]["body"] == [{"inventorycode": "0501001", "quantity": "3"}]


def test_the_same_document_retried_reuses_its_tradeid_and_others_get_fresh_ones(
    mocked: responses.RequestsMock,
) -> None:
    issued = _gateway(mocked, "tok")
    mocked.post(ADD_URL, body="<html><body>504 Gateway Time-out</body></html>", status=200)
    mocked.post(ADD_URL, json={"errcode": "0", "id": "1", "code": "C1"})
    mocked.post(ADD_URL, json={"errcode": "0", "id": "2", "code": "C2"})
    connector = u8()
    with pytest.raises(AmbiguousDeliveryError, match="not JSON"):
        connector.send(_voucher(), message_type="production_output", key="mes:A/1")
    connector.send(_voucher(), message_type="production_output", key="mes:A/1")
    connector.send(_voucher(), message_type="production_output", key="mes:B/1")
    assert [q["tradeid"][0] for q in _posted(mocked)] == ["T1", "T1", "T2"]
    assert issued == ["T1", "T2"]
    assert connector.tradeids.get("mes:A/1") is None  # settled: forgotten


def test_an_auth_error_gets_a_new_token_and_repeats_with_the_same_tradeid(
    mocked: responses.RequestsMock,
) -> None:
    _gateway(mocked, "old", "new")
    mocked.post(ADD_URL, json={"errcode": "20002", "errmsg": "token已过期，请重新获取token"})
    mocked.post(ADD_URL, json={"errcode": "0", "id": "5", "code": "C5"})
    assert u8().send(_voucher(), message_type="production_output", key="k").external_ref == "C5"
    assert [(q["token"][0], q["tradeid"][0]) for q in _posted(mocked)] == [
        ("old", "T1"),
        ("new", "T1"),
    ]


@pytest.mark.parametrize("token", [{}, {"id": ""}, {"id": None, "expiresIn": 7200}])
def test_a_token_answer_without_an_id_is_transient(
    mocked: responses.RequestsMock, token: dict[str, Any]
) -> None:
    """Found by fuzzing (tests/fuzz/test_erp_answers.py): ``errcode`` 0 with a token that has no
    id ended in a ``KeyError``, which the worker could not classify."""
    mocked.get(f"{BASE}/system/token", json={"errcode": "0", "token": token})
    with pytest.raises(TransientError, match="no token id"):
        u8().token()


def test_the_token_is_fetched_again_past_its_configured_age(
    mocked: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    _gateway(mocked, "first", "second")
    connector = u8(token_max_age_s=100)
    assert connector.token() == "first"
    assert connector.token() == "first"
    import connectors.yonyou_u8 as module

    later = module.time.monotonic() + 101
    monkeypatch.setattr(module.time, "monotonic", lambda: later)
    assert connector.token() == "second"


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (200, "<html><body>Proxy Error</body></html>"),
        (200, '{"errcode": "0", "errmsg": "", "id": "10'),
        (200, '{"result": "ok"}'),
        (200, '{"errcode": "0", "errmsg": ""}'),
        (504, "Gateway Time-out"),
    ],
    ids=["html-page", "truncated-json", "no-errcode", "no-voucher-number", "gateway-504"],
)
def test_malformed_answers_to_a_write_are_ambiguous(
    mocked: responses.RequestsMock, status: int, body: str
) -> None:
    _gateway(mocked, "tok")
    mocked.post(ADD_URL, status=status, body=body)
    with pytest.raises(AmbiguousDeliveryError):
        u8().send(_voucher(), message_type="production_output", key="k")


def test_an_errcode_is_a_business_refusal_and_frees_the_tradeid(
    mocked: responses.RequestsMock,
) -> None:
    _gateway(mocked, "tok")
    mocked.post(ADD_URL, json={"errcode": "40001", "errmsg": "表体第1行：存货编码[X]不存在"})
    connector = u8()
    with pytest.raises(RejectedError, match=r"U8 40001: 表体第1行：存货编码\[X\]不存在"):
        connector.send(_voucher(), message_type="production_output", key="k")
    assert connector.tradeids.get("k") is None


def test_a_used_tradeid_without_a_lookup_needs_a_person(mocked: responses.RequestsMock) -> None:
    _gateway(mocked, "tok")
    mocked.post(ADD_URL, json={"errcode": "30002", "errmsg": "tradeid(T1)已被使用"})
    with pytest.raises(NeedsCheckError, match="check U8"):
        u8(key_field="cmemo").send(_voucher(), message_type="production_output", key="k")


def test_a_lost_connection_is_ambiguous_and_its_text_shows_no_token_or_secret(
    mocked: responses.RequestsMock,
) -> None:
    _gateway(mocked, "token-0123456789abcdef")

    def cut(request: Any) -> tuple[int, dict[str, str], str]:
        raise requests.ConnectionError(f"Connection aborted while posting to {request.url}")

    mocked.add_callback(responses.POST, ADD_URL, callback=cut)
    with pytest.raises(AmbiguousDeliveryError) as caught:
        u8().send(_voucher(), message_type="production_output", key="k")
    assert "token-0123456789abcdef" not in str(caught.value)
    assert "tradeid=T1" in str(caught.value)


def test_settings_registration_and_capabilities(tmp_path: Path) -> None:
    assert registry.load("yonyou_u8") is YonyouU8Connector
    with pytest.raises(ConfigError, match="to_account"):
        YonyouU8Connector("u8", {"url": BASE, "from_account": "x"})
    with pytest.raises(ConfigError, match="secrets"):
        u8(app_secret="in-the-yaml")
    assert YonyouU8Connector.config_schema["properties"]["app_key"]["secret"] is True
    plain = u8()
    assert plain.supports("lookup")
    assert not plain.supports("idempotency_key")  # trade ids in memory only
    durable = u8(tradeid_file=str(tmp_path / "tradeids.db"))
    assert durable.supports("idempotency_key")
    assert not u8(key_field="cmemo").supports("lookup")


def test_tradeids_in_a_file_outlive_the_connector(tmp_path: Path) -> None:
    path = str(tmp_path / "t.db")
    first = TradeIds(path)
    first.put("mes:A/1", "T9")
    first.close()
    again = TradeIds(path)
    assert again.get("mes:A/1") == "T9"
    again.drop("mes:A/1")
    assert again.get("mes:A/1") is None


# ---------------------------------------------------------------------- real loopback HTTP
@pytest.fixture
def simulator() -> Iterator[Any]:
    with serve(mode="u8") as server:
        yield server


def _product_in(code: str = "") -> dict[str, Any]:
    return {
        "productin": {
            "header": {"code": code, "date": "2026-11-29", "warehousecode": "20"},
            "body": [{"inventorycode": "0501001", "quantity": "4", "serial": "L1"}],
        }
    }


def test_the_simulator_refuses_a_reused_tradeid(simulator: Any) -> None:
    connector = u8(simulator.url)
    trade_id = connector._new_tradeid()
    token = connector.token()
    url = f"{simulator.url}/api/productin/add?{connector._query(token, tradeid=trade_id, sync='1')}"
    first = requests.post(url, json=_product_in("A1"), timeout=5).json()
    second = requests.post(url, json=_product_in("A2"), timeout=5).json()
    assert first["errcode"] == "0"
    assert second["errcode"] == "30002"
    assert "已被使用" in second["errmsg"]


def test_a_lost_answer_retried_reuses_the_tradeid_and_posts_once(simulator: Any) -> None:
    """The retry of the same document carries the same trade id: U8 refuses it, and the
    connector finds the voucher the first attempt left instead of posting a second one."""
    simulator.simulator.faults.update({"drop_next": 1, "match": "productin/add"})
    connector = u8(simulator.url)
    with pytest.raises(AmbiguousDeliveryError):
        connector.send(_product_in(), message_type="production_output", key="mes:GR-5/1")
    kept = connector.tradeids.get("mes:GR-5/1")
    assert kept is not None
    again = connector.send(_product_in(), message_type="production_output", key="mes:GR-5/1")
    assert again.already_present
    documents = simulator.simulator.documents_view({"resource": "productin"})["productin"]
    assert len(documents) == 1
    assert documents[0]["tradeid"] == kept
    assert again.external_ref == documents[0]["header"]["code"] == "mes:GR-5/1"
    other = connector.send(_product_in(), message_type="production_output", key="mes:GR-6/1")
    documents = simulator.simulator.documents_view({"resource": "productin"})["productin"]
    assert other.external_ref == "mes:GR-6/1"
    assert len({d["tradeid"] for d in documents}) == 2


def test_without_sync_the_result_url_is_polled(simulator: Any) -> None:
    simulator.simulator.async_delay_s = 0.3
    simulator.simulator.ping_after_s = 0
    connector = u8(simulator.url, sync=False)
    result = connector.send(_product_in(), message_type="production_output", key="mes:AS/1")
    assert result.external_ref == "mes:AS/1"
    assert result.detail["id"]


def test_material_out_refused_for_short_stock_and_transfer_moves_stock(simulator: Any) -> None:
    simulator.simulator.refuse_negative = True
    connector = u8(simulator.url)
    issue = {
        "materialout": {
            "header": {"warehousecode": "01", "receivecode": "21"},
            "body": [{"inventorycode": "0101001", "quantity": "5", "serial": "B1"}],
        }
    }
    with pytest.raises(RejectedError, match="现存量不足"):
        connector.send(issue, message_type="material_consumption", key="mes:MO/1")
    simulator.simulator.set_stock(
        [{"org": "001", "warehouse": "01", "material": "0101001", "lot": "B1", "quantity": 8}]
    )
    connector.send(issue, message_type="material_consumption", key="mes:MO/1")
    move = {
        "transvouch": {
            "header": {"owhcode": "01", "iwhcode": "10"},
            "body": [{"inventorycode": "0101001", "quantity": "2", "serial": "B1"}],
        }
    }
    connector.send(move, message_type="stock_transfer", key="wms:T/1")
    rows = {(r.data["whcode"], r.data["qty"]) for r in u8(simulator.url).snapshot()}
    assert rows == {("01", 1), ("10", 2)}


def test_snapshot_pages_through_current_stock(simulator: Any) -> None:
    simulator.simulator.set_stock(
        [
            {"org": "001", "warehouse": "01", "material": "0101001", "lot": f"B{n}", "quantity": n}
            for n in range(1, 8)
        ]
    )
    connector = u8(simulator.url, rows_per_page=3)
    rows = [r.data for r in connector.snapshot()]
    assert sorted(r["batch"] for r in rows) == [f"B{n}" for n in range(1, 8)]
    assert sum(Decimal(str(r["qty"])) for r in rows) == 28
    assert "token" in connector.check()


def test_a_mapped_voucher_whose_answer_is_lost_is_delivered_once_through_the_worker(
    simulator: Any, sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """mappings/yonyou.yaml makes the voucher; the answer of the first posting is dropped after
    U8 committed it; the worker looks it up by its code and records it once, with its number."""
    monkeypatch.setenv("CONVEYOR_YONYOU_APP_KEY", APP_KEY)
    monkeypatch.setenv("CONVEYOR_YONYOU_APP_SECRET", APP_SECRET)
    simulator.simulator.faults.update({"drop_next": 1, "match": "materialout/add"})
    simulator.simulator.set_stock(
        [{"org": "001", "warehouse": "01", "material": "0101001", "lot": "B7", "quantity": 50}]
    )
    ledger = Ledger(
        sqlite_engine,
        Router.from_config(
            [{"type": "material_consumption", "source": "mes", "targets": ["yonyou"]}]
        ),
    )
    ledger.upgrade()
    message = new_message(
        "material_consumption",
        "mes",
        "ISS-9/1",
        {
            "order_id": "MO-1",
            "material": "RM-1001",
            "quantity": "12.5",
            "uom": "KG",
            "location": "1000/RM",
            "lot": "B7",
        },
    )
    assert ledger.accept_batch([message])[0].status == "accepted"
    connector = YonyouU8Connector(
        "yonyou", {"url": simulator.url, "from_account": "conveyor", "to_account": "001"}
    )
    worker = Worker(
        sqlite_engine,
        targets=["yonyou"],
        policy=RetryPolicy(max_attempts=4, base_delay_s=0.05, max_delay_s=0.2),
        options=WorkerOptions(concurrency=1, batch_size=10, heartbeat_s=0.3, stale_after_s=5),
        connectors={"yonyou": connector},
        mapping=MappingEngine.load(Project.load(REPO)),
    )
    assert worker.run(until_idle=True, timeout=60).idle
    with sqlite_engine.connect() as conn:
        (row,) = conn.execute(select(DeliveryRow.__table__)).all()
    (voucher,) = simulator.simulator.documents_view({"resource": "materialout"})["materialout"]
    assert (row.status, row.attempts) == ("delivered", 2)
    assert row.external_ref == voucher["header"]["code"] == "mes:ISS-9/1"
    assert voucher["body"][0]["quantity"] == "12.5"
    assert connector.tradeids.get("mes:ISS-9/1") is None  # settled by the lookup
    stock = {(r.data["whcode"], r.data["batch"]): r.data["qty"] for r in connector.snapshot()}
    assert stock == {("01", "B7"): Decimal("37.5")}
    connector.close()


# ---------------------------------------------------------------------- conformance
class _HarnessConnector(YonyouU8Connector):
    """The conformance suite sends canonical-like documents; this stands in for the outbound
    mapping (mappings/yonyou.yaml) and plants the faults the harness was asked for by key."""

    harness: U8Harness

    def send(
        self,
        document: Mapping[str, Any],
        *,
        message_type: str,
        key: str,
        idempotency_key: str | None = None,
    ) -> SendResult:
        harness = self.harness
        payload = document.get("payload", document)  # the worker sends canonical unmapped
        material = "NOPE-MISSING" if key in harness.rejected else "0501001"
        if key in harness.drop and key not in harness.dropped:
            harness.dropped.add(key)
            harness.sim.faults.update({"drop_next": 1, "match": "/add"})
        if harness.fail_first:
            harness.sim.faults.update({"fail_next": harness.fail_first, "match": "/add"})
            harness.fail_first = 0
        voucher = {
            "productin": {
                "header": {"warehousecode": "20", "receivecode": "11"},
                "body": [{"inventorycode": material, "quantity": str(payload["quantity"])}],
            }
        }
        return super().send(
            voucher, message_type=message_type, key=key, idempotency_key=idempotency_key
        )


class U8Harness(Harness):
    """The U8 connector against the U8 simulator over loopback HTTP."""

    system = "u8_cf"
    secrets: ClassVar[Mapping[str, str]] = {"APP_KEY": APP_KEY, "APP_SECRET": APP_SECRET}
    rejection_text = "不存在"

    def start(self) -> None:
        self.server = serve(mode="u8")
        self.sim = self.server.simulator
        self.rejected: set[str] = set()
        self.drop: set[str] = set()
        self.dropped: set[str] = set()
        self.fail_first = 0

    def stop(self) -> None:
        self.server.shutdown()

    def connector(self) -> YonyouU8Connector:
        connector = _HarnessConnector(
            self.system,
            {"url": self.server.url, "from_account": "conveyor", "to_account": "001"},
        )
        connector.harness = self
        return connector

    def misbehave(
        self,
        *,
        reject: Collection[str] = (),
        fail_first: int = 0,
        drop_answer: Collection[str] = (),
        echo_secrets: bool = False,
    ) -> None:
        self.rejected |= set(reject)
        self.drop |= set(drop_answer)
        self.fail_first = fail_first

    def posts(self, key: str) -> int:
        documents = self.sim.documents_view({"resource": "productin"})["productin"]
        return sum(1 for d in documents if d["header"].get("code") == voucher_code(key))


TestU8Conformance = conformance_tests(U8Harness)
