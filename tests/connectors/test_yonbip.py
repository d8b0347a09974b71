"""The YonBIP connector: token, envelope and error classification with ``responses`` standing in
for the gateway; production orders, saves with ``resubmitCheckKey``, stock and the conformance
suite over real loopback HTTP against the YonBIP simulator."""

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

from connectors.yonbip import YonBIPConnector, resubmit_check_key
from conveyor.config import Project, RetryPolicy
from conveyor.connector import SendResult
from conveyor.delivery.worker import Worker, WorkerOptions
from conveyor.errors import (
    AmbiguousDeliveryError,
    ConfigError,
    RejectedError,
    TransientError,
)
from conveyor.ledger import Ledger
from conveyor.ledger.models import DeliveryRow
from conveyor.mapping import MappingEngine
from conveyor.messages import new_message
from conveyor.routing import Router
from conveyor.runtime import registry
from conveyor.runtime.inbound import poll_stream
from conveyor.testing.conformance import Harness, conformance_tests
from simulators._erp import generate_orders
from simulators.yonyou import serve

REPO = Path(__file__).resolve().parents[2]
BASE = "http://bip.example"
TOKEN_URL = f"{BASE}/iuap-api-auth/open-auth/selfAppAuth/getAccessToken"
SAVE_URL = f"{BASE}/yonbip/scm/storeprorecord/single/save"
APP_KEY = "conveyor-app-key"
APP_SECRET = "conveyor-app-secret"


@pytest.fixture(autouse=True)
def _secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_BIP_APP_KEY", APP_KEY)
    monkeypatch.setenv("CONVEYOR_BIP_APP_SECRET", APP_SECRET)
    monkeypatch.setenv("CONVEYOR_YONBIP_APP_KEY", APP_KEY)
    monkeypatch.setenv("CONVEYOR_YONBIP_APP_SECRET", APP_SECRET)


def bip(url: str = BASE, name: str = "bip", **settings: Any) -> YonBIPConnector:
    return YonBIPConnector(name, {"url": url, "timeout_s": 5, **settings})


@pytest.fixture
def mocked() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock() as mock:
        yield mock


def _token(mocked: responses.RequestsMock, *tokens: str, expire: int = 7200) -> None:
    for token in tokens:
        mocked.get(
            TOKEN_URL,
            json={
                "code": "00000",
                "message": "成功！",
                "data": {"access_token": token, "expire": expire},
            },
        )


def _receipt() -> dict[str, Any]:
    return {
        "data": {
            "org": "1000",
            "vouchdate": "2026-11-29 08:00:00",
            "warehouse": "20",
            "storeProRecords": [{"product": "0501001", "qty": "3"}],
        }
    }


# ---------------------------------------------------------------------- unit, mocked HTTP
def test_resubmit_check_key_is_deterministic_short_and_per_key() -> None:
    first = resubmit_check_key("mes:GR-1/1")
    assert first == resubmit_check_key("mes:GR-1/1")
    assert len(first) == 32
    assert first != resubmit_check_key("mes:GR-1/2")
    assert len(resubmit_check_key("x" * 500)) == 32


def test_save_carries_the_token_and_resubmit_check_key_and_the_token_is_cached(
    mocked: responses.RequestsMock,
) -> None:
    _token(mocked, "tok-1")
    mocked.post(
        SAVE_URL, json={"code": "200", "message": "操作成功", "data": {"id": "7", "code": "CPRK1"}}
    )
    mocked.post(
        SAVE_URL, json={"code": "200", "message": "操作成功", "data": {"id": "8", "code": "CPRK2"}}
    )
    connector = bip()
    first = connector.send(_receipt(), message_type="production_output", key="mes:GR-1/1")
    second = connector.send(_receipt(), message_type="production_output", key="mes:GR-2/1")
    assert (first.external_ref, second.external_ref) == ("CPRK1", "CPRK2")
    token_calls = [c for c in mocked.calls if "getAccessToken" in (c.request.url or "")]
    assert len(token_calls) == 1
    params = parse_qs(urlsplit(token_calls[0].request.url or "").query)
    assert params["appKey"] == [APP_KEY]
    assert "signature" in params
    save = mocked.calls[1].request
    assert parse_qs(urlsplit(save.url or "").query)["access_token"] == ["tok-1"]
    body = json.loads(save.body or b"")
    assert body["data"]["resubmitCheckKey"] == resubmit_check_key("mes:GR-1/1")
    assert body["data"]["storeProRecords"] == [{"product": "0501001", "qty": "3"}]


def test_an_auth_error_fetches_a_new_token_and_repeats_once(
    mocked: responses.RequestsMock,
) -> None:
    _token(mocked, "old", "new")
    mocked.post(SAVE_URL, json={"code": "310036", "message": "非法token."})
    mocked.post(SAVE_URL, json={"code": "200", "message": "ok", "data": {"id": "9", "code": "C9"}})
    result = bip().send(_receipt(), message_type="production_output", key="k")
    assert result.external_ref == "C9"
    tokens = [
        parse_qs(urlsplit(c.request.url or "").query).get("access_token") for c in mocked.calls
    ]
    assert tokens == [None, ["old"], None, ["new"]]


def test_a_refused_signature_is_a_config_error(mocked: responses.RequestsMock) -> None:
    mocked.get(TOKEN_URL, json={"code": "10002", "message": "签名校验失败"})
    with pytest.raises(ConfigError, match="签名校验失败"):
        bip().send(_receipt(), message_type="production_output", key="k")


def test_missing_secrets_stop_before_anything_is_sent(
    mocked: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CONVEYOR_BIP_APP_SECRET")
    with pytest.raises(ConfigError, match="APP_SECRET"):
        bip().send(_receipt(), message_type="production_output", key="k")
    assert len(mocked.calls) == 0


@pytest.mark.parametrize(
    ("status", "body", "content_type"),
    [
        (200, "<html><body>502 Bad Gateway (nginx)</body></html>", "text/html"),
        (200, '{"code": "200", "message": "操作成功", "data": {"id": "1"', "application/json"),
        (200, '["not", "an", "envelope"]', "application/json"),
        (200, '{"code": "200", "message": "ok", "data": {}}', "application/json"),
        (502, "<html>Bad Gateway</html>", "text/html"),
    ],
    ids=["html-page", "truncated-json", "no-envelope", "no-document-number", "gateway-502"],
)
def test_malformed_answers_to_a_save_are_ambiguous_never_delivered(
    mocked: responses.RequestsMock, status: int, body: str, content_type: str
) -> None:
    _token(mocked, "tok")
    mocked.post(SAVE_URL, status=status, body=body, content_type=content_type)
    with pytest.raises(AmbiguousDeliveryError):
        bip().send(_receipt(), message_type="production_output", key="k")


def test_an_error_envelope_in_a_200_is_a_business_refusal(
    mocked: responses.RequestsMock,
) -> None:
    _token(mocked, "tok")
    mocked.post(SAVE_URL, json={"code": "999", "message": "表体第1行：物料[X]不存在"})
    with pytest.raises(RejectedError, match=r"YonBIP 999: 表体第1行：物料\[X\]不存在"):
        bip().send(_receipt(), message_type="production_output", key="k")


def test_a_repeat_refused_by_resubmit_check_key_is_the_document_already_there(
    mocked: responses.RequestsMock,
) -> None:
    _token(mocked, "tok")
    key = resubmit_check_key("mes:GR-1/1")
    mocked.post(
        SAVE_URL,
        json={
            "code": "999",
            "message": f"重复提交：resubmitCheckKey[{key}]已被使用，请勿重复提交",
            "data": {"id": "5", "code": "CPRK000005"},
        },
    )
    result = bip().send(_receipt(), message_type="production_output", key="mes:GR-1/1")
    assert (result.external_ref, result.already_present) == ("CPRK000005", True)


def test_reads_that_fail_are_transient_not_ambiguous(mocked: responses.RequestsMock) -> None:
    _token(mocked, "tok")
    mocked.post(f"{BASE}/yonbip/scm/stock/QueryCurrentStocksByCondition", body="<html>oops</html>")
    with pytest.raises(TransientError) as caught:
        list(bip().snapshot())
    assert not isinstance(caught.value, AmbiguousDeliveryError)


@pytest.mark.parametrize(
    "answer",
    [
        {"code": "200", "data": {"recordList": [{"id": 1}], "pageCount": [2]}},
        '{"code": "200", "data": ' * 50_000,
    ],
    ids=["page-count-a-list", "nested-past-the-stack"],
)
def test_malformed_order_lists_are_transient(
    mocked: responses.RequestsMock, answer: dict[str, Any] | str
) -> None:
    """Found by fuzzing (tests/fuzz/test_erp_answers.py): a list where the page count belongs
    ended the poll in a ``TypeError``, a deeply nested answer in a ``RecursionError``."""
    _token(mocked, "tok")
    url = f"{BASE}/yonbip/mfg/productionorder/list"
    if isinstance(answer, str):
        mocked.post(url, body=answer, content_type="application/json")
    else:
        mocked.post(url, json=answer)
    with pytest.raises(TransientError):
        list(bip().poll("production_order", None))


def test_settings_and_registration() -> None:
    assert registry.load("yonbip") is YonBIPConnector
    with pytest.raises(ConfigError, match="secrets"):
        YonBIPConnector("bip", {"url": BASE, "app_secret": "in-the-yaml"})
    schema = YonBIPConnector.config_schema["properties"]
    assert schema["app_key"]["secret"] is True
    assert schema["app_secret"]["secret"] is True
    with pytest.raises(ConfigError, match="save path"):
        bip().send({}, message_type="stock_adjustment", key="k")


def test_the_yonbip_mapping_makes_save_bodies_and_reads_orders() -> None:
    engine = MappingEngine.load(_project())
    message = new_message(
        "stock_transfer",
        "wms",
        "TR-1",
        {
            "material": "RM-2001",
            "quantity": "1000",
            "uom": "PCS",
            "from_location": "1000/RM",
            "to_location": "1000/WIP-ASSY",
            "lot": "L9",
        },
        occurred_at="2026-11-21T08:00:00+08:00",
    )
    data = engine.map_outbound("yonbip", message)["data"]
    assert (data["outwarehouse"], data["inwarehouse"], data["memo"]) == ("01", "11", "TR-1")
    assert data["vouchdate"] == "2026-11-21 08:00:00"
    assert data["details"] == [{"product": "0102001", "qty": "1000", "batchno": "L9"}]
    order = {
        "id": "1",
        "code": "SCDD9",
        "status": "1",
        "pubts": "2026-11-21 08:00:00",
        "orderProduct": [
            {
                "productCode": "0501002",
                "quantity": 60,
                "mainUnitCode": "PCS",
                "warehouseCode": "20",
                "startDate": "2026-11-22 08:00:00",
                "finishDate": "2026-11-23 08:00:00",
                "orderMaterial": [
                    {"lineNo": 10, "productCode": "0201001", "quantity": 60, "unitCode": "PCS"}
                ],
            }
        ],
    }
    payload = engine.map_inbound("yonbip", "production_order", order)["payload"]
    assert (payload["order_id"], payload["material"], payload["status"]) == (
        "SCDD9",
        "FG-5002",
        "released",
    )
    assert payload["components"] == [
        {"line": "10", "material": "SF-4001", "quantity": Decimal("60"), "uom": "PCS"}
    ]


# ---------------------------------------------------------------------- real loopback HTTP
@pytest.fixture
def simulator() -> Iterator[Any]:
    with serve(mode="yonbip") as server:
        yield server


def _project() -> Project:
    return Project.load(REPO)


def test_production_orders_over_several_pages_become_messages_with_components(
    simulator: Any, sqlite_engine: Engine
) -> None:
    simulator.simulator.seed_orders(generate_orders(23, simulator.simulator.master, 3))
    ledger = Ledger(sqlite_engine, Router.from_config([]))
    ledger.upgrade()
    engine = MappingEngine.load(_project())
    connector = bip(simulator.url, "yonbip", page_size=10)
    calls: list[str] = []
    original = connector.call

    def counting(method: str, path: str, body: Any = None, **kw: Any) -> Any:
        calls.append(path)
        return original(method, path, body, **kw)

    connector.call = counting  # type: ignore[method-assign]
    first = poll_stream(ledger, engine, connector, "production_order")
    assert (first.records, first.counts.get("accepted")) == (23, 23), first.counts
    assert sum(1 for path in calls if path.endswith("productionorder/list")) == 3
    with sqlite_engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT type, payload FROM messages").all()
    assert len(rows) == 23
    for message_type, payload in rows:
        assert message_type == "production_order"
        assert json.loads(payload)["status"] == "released"
        assert len(json.loads(payload)["components"]) >= 2
    second = poll_stream(ledger, engine, connector, "production_order")
    assert (second.records, second.counts.get("accepted", 0)) == (0, 0)
    # an order changed afterwards (pubts moves on) is the only thing the next poll finds
    changed = simulator.simulator.orders_view()[4]
    simulator.simulator.advance(2)  # pubts is shown to the second: change it in a later one
    simulator.simulator.upsert_orders([{"code": changed["code"], "memo": "changed"}])
    third = list(connector.poll("production_order", second.cursor))
    assert [r.data["code"] for r in third] == [changed["code"]]
    connector.close()


def test_orders_stamped_in_the_same_instant_are_neither_lost_nor_repeated(
    simulator: Any,
) -> None:
    sim = simulator.simulator
    sim.upsert_orders([{"code": f"SAME{n}", "orderProduct": []} for n in range(5)])
    stamps = {order["pubts"] for order in sim.orders_view()}
    connector = bip(simulator.url, page_size=2)
    first = list(connector.poll("production_order", None))
    cursor = first[2].cursor  # stop in the middle of orders that share a pubts
    rest = list(connector.poll("production_order", cursor))
    codes = [r.data["code"] for r in first[:3]] + [r.data["code"] for r in rest]
    assert sorted(codes) == sorted(f"SAME{n}" for n in range(5))
    assert len(stamps) <= 2  # the orders were stamped (almost) at once: the id breaks the tie
    connector.close()


def test_a_save_whose_answer_is_lost_is_delivered_once_through_the_worker(
    simulator: Any, sqlite_engine: Engine
) -> None:
    """Double-post protection proven by ``resubmitCheckKey``: the first save commits and its
    answer is dropped; the worker posts again with the same key, the simulator refuses the
    repeat, and the ledger records one delivery with the simulator's one document."""
    simulator.simulator.faults.update({"drop_next": 1, "match": "storeprorecord"})
    ledger = Ledger(
        sqlite_engine,
        Router.from_config([{"type": "production_output", "source": "mes", "targets": ["yonbip"]}]),
    )
    ledger.upgrade()
    message = new_message(
        "production_output",
        "mes",
        "GR-77/1",
        {
            "order_id": "SCDD000001",
            "material": "FG-5001",
            "quantity": "12",
            "uom": "PCS",
            "location": "1000/FG",
            "lot": "L1",
        },
    )
    assert ledger.accept_batch([message])[0].status == "accepted"
    connector = bip(simulator.url, "yonbip")
    worker = Worker(
        sqlite_engine,
        targets=["yonbip"],
        policy=RetryPolicy(max_attempts=4, base_delay_s=0.05, max_delay_s=0.2),
        options=WorkerOptions(concurrency=1, batch_size=10, heartbeat_s=0.3, stale_after_s=5),
        connectors={"yonbip": connector},
        mapping=MappingEngine.load(_project()),
    )
    run = worker.run(until_idle=True, timeout=60)
    assert run.idle
    with sqlite_engine.connect() as conn:
        (row,) = conn.execute(select(DeliveryRow.__table__)).all()
    documents = simulator.simulator.documents_view({})["productin"]
    assert len(documents) == 1, row
    assert documents[0]["resubmitCheckKey"] == resubmit_check_key("mes:GR-77/1")
    assert documents[0]["memo"] == "GR-77/1"
    assert (row.status, row.attempts) == ("delivered", 2)
    assert row.external_ref == documents[0]["code"]
    # the same document once more, straight: the simulator refuses it, the connector says so
    again = connector.send(
        {"data": documents[0]}, message_type="production_output", key="mes:GR-77/1"
    )
    assert (again.external_ref, again.already_present) == (documents[0]["code"], True)
    assert len(simulator.simulator.documents_view({})["productin"]) == 1
    connector.close()


def test_the_first_poll_starts_at_the_configured_stamp(simulator: Any) -> None:
    simulator.simulator.upsert_orders([{"code": "OLD1", "orderProduct": []}])
    simulator.simulator.advance(5)
    simulator.simulator.upsert_orders([{"code": "NEW1", "orderProduct": []}])
    (newest,) = [o for o in simulator.simulator.orders_view() if o["code"] == "NEW1"]
    connector = bip(simulator.url, start_pubts=newest["pubts"])
    assert [r.data["code"] for r in connector.poll("production_order", None)] == ["NEW1"]
    connector.close()


def test_snapshot_reads_current_stock(simulator: Any) -> None:
    simulator.simulator.set_stock(
        [{"org": "1000", "warehouse": "20", "material": "0501001", "lot": "L1", "quantity": "7.5"}]
    )
    rows = [r.data for r in bip(simulator.url, org="1000").snapshot()]
    assert [(r["warehouse"], r["product"], r["batchno"], str(r["currentqty"])) for r in rows] == [
        ("20", "0501001", "L1", "7.5")
    ]


def test_check_gets_a_token_from_the_simulator(simulator: Any) -> None:
    assert "access token" in bip(simulator.url).check()
    requests.get(simulator.url + "/_sim/faults", timeout=5)  # still serving


# ---------------------------------------------------------------------- conformance
class _HarnessConnector(YonBIPConnector):
    """The conformance suite sends canonical-like documents; this stands in for the outbound
    mapping (mappings/yonbip.yaml) and plants the faults the harness was asked for by key."""

    harness: YonBIPHarness

    def send(
        self,
        document: Mapping[str, Any],
        *,
        message_type: str,
        key: str,
        idempotency_key: str | None = None,
    ) -> SendResult:
        harness = self.harness
        product = "NOPE-MISSING" if key in harness.rejected else "0501001"
        payload = document.get("payload", document)  # the worker sends canonical unmapped
        if key in harness.drop and key not in harness.dropped:
            harness.dropped.add(key)
            harness.sim.faults.update({"drop_next": 1, "match": "save"})
        if harness.fail_first:
            harness.sim.faults.update({"fail_next": harness.fail_first, "match": "save"})
            harness.fail_first = 0
        body = {
            "data": {
                "org": "1000",
                "vouchdate": "2026-11-29 08:00:00",
                "warehouse": "20",
                "memo": key,
                "storeProRecords": [{"product": product, "qty": str(payload["quantity"])}],
            }
        }
        return super().send(
            body, message_type=message_type, key=key, idempotency_key=idempotency_key
        )


class YonBIPHarness(Harness):
    """The YonBIP connector against the YonBIP simulator over loopback HTTP."""

    system = "yonbip_cf"
    secrets: ClassVar[Mapping[str, str]] = {"APP_KEY": APP_KEY, "APP_SECRET": APP_SECRET}
    rejection_text = "不存在"

    def start(self) -> None:
        self.server = serve(mode="yonbip")
        self.sim = self.server.simulator
        self.rejected: set[str] = set()
        self.drop: set[str] = set()
        self.dropped: set[str] = set()
        self.fail_first = 0

    def stop(self) -> None:
        self.server.shutdown()

    def connector(self) -> YonBIPConnector:
        connector = _HarnessConnector(self.system, {"url": self.server.url, "timeout_s": 5})
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
        documents = self.sim.documents_view({})["productin"]
        return sum(1 for d in documents if d.get("resubmitCheckKey") == resubmit_check_key(key))


TestYonBIPConformance = conformance_tests(YonBIPHarness)


def test_a_reversed_consumption_goes_out_as_a_red_material_out() -> None:
    engine = MappingEngine.load(_project())
    payload = {
        "order_id": "SCDD9",
        "material": "RM-2002",
        "quantity": "10",
        "uom": "PCS",
        "location": "1000/WIP-ASSY",
        "lot": "L2611-12",
    }
    issue = new_message("material_consumption", "mes", "C-1", payload)
    reversal = new_message(
        "material_consumption", "mes", "C-1/REV", {**payload, "reversal_of": "C-1"}
    )
    assert engine.map_outbound("yonbip", issue)["data"]["materOuts"][0]["qty"] == "10"
    assert engine.map_outbound("yonbip", reversal)["data"]["materOuts"][0]["qty"] == "-10"
