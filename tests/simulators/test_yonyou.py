"""The Yonyou simulators (U8 OpenAPI and YonBIP open API) over real loopback HTTP with
``requests``."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import pytest
import requests

from connectors.yonyou_auth import access_token_params
from simulators.yonyou import serve

APP_KEY = "conveyor-app-key"
APP_SECRET = "conveyor-app-secret"
TOKEN_PATH = "/iuap-api-auth/open-auth/selfAppAuth/getAccessToken"
TOKEN_PATH_V1 = "/iuap-api-auth/open-auth/selfAppAuth/base/v1/getAccessToken"
MATERIAL_OUT = "/yonbip/scm/materialout/single/save"


def _now_ms() -> int:
    return int(time.time() * 1000)


# -- YonBIP ----------------------------------------------------------------------------------


@pytest.fixture
def bip() -> Iterator[Any]:
    with serve(mode="yonbip", seed_orders=45, seed=5, refuse_negative=True) as server:
        yield server


def _token(base: str, path: str = TOKEN_PATH) -> str:
    answer = requests.get(
        base + path, params=access_token_params(APP_KEY, APP_SECRET, _now_ms()), timeout=5
    ).json()
    assert answer["code"] == "00000"
    token: str = answer["data"]["access_token"]
    return token


def _call(base: str, token: str, path: str, body: Any = None, method: str = "POST") -> Any:
    response = requests.request(
        method, base + path, params={"access_token": token}, json=body, timeout=5
    )
    assert response.status_code == 200
    return response.json()


def _material_out(key: str, quantity: str = "4", product: str = "0101001") -> dict[str, Any]:
    return {
        "data": {
            "resubmitCheckKey": key,
            "org": "1000",
            "vouchdate": "2026-11-29 08:00:00",
            "bustype": "A10001",
            "warehouse": "01",
            "_status": "Insert",
            "materOuts": [{"product": product, "qty": quantity, "batchno": "B1"}],
        }
    }


def _transfer(key: str, source: str, target: str, line: dict[str, Any]) -> dict[str, Any]:
    return {
        "data": {
            "resubmitCheckKey": key,
            "org": "1000",
            "vouchdate": "2026-11-29",
            "outwarehouse": source,
            "inwarehouse": target,
            "details": [line],
        }
    }


def _stock_rows(base: str, token: str, **condition: str) -> list[dict[str, Any]]:
    answer = _call(base, token, "/yonbip/scm/stock/QueryCurrentStocksByCondition", condition)
    assert answer["code"] == "200"
    rows: list[dict[str, Any]] = answer["data"]
    return rows


def test_access_token_on_both_paths_with_the_expiry(bip: Any) -> None:
    for path in (TOKEN_PATH, TOKEN_PATH_V1):
        answer = requests.get(
            bip.url + path, params=access_token_params(APP_KEY, APP_SECRET, _now_ms()), timeout=5
        ).json()
        assert answer["code"] == "00000"
        assert answer["message"] == "成功！"
        assert answer["data"]["expire"] == 7200
        assert answer["data"]["access_token"]
    with serve(mode="yonbip", token_ttl_s=600) as server:
        configured = requests.get(
            server.url + TOKEN_PATH,
            params=access_token_params(APP_KEY, APP_SECRET, _now_ms()),
            timeout=5,
        ).json()
        assert configured["data"]["expire"] == 600


def test_a_wrong_token_signature_is_refused(bip: Any) -> None:
    params = access_token_params(APP_KEY, APP_SECRET, _now_ms())
    wrong = access_token_params(APP_KEY, "not-the-secret", params["timestamp"])
    refused = requests.get(bip.url + TOKEN_PATH, params=wrong, timeout=5).json()
    assert refused["code"] != "00000"
    assert "data" not in refused or not refused.get("data")
    assert "签名" in refused["message"]
    # Encoded twice is wrong too: the server decodes the query string once.
    twice = f"appKey={APP_KEY}&timestamp={params['timestamp']}&signature=" + quote(
        quote(params["signature"], safe=""), safe=""
    )
    # (32 bytes of HMAC always give a base64 text ending in "=", which encoding changes.)
    doubled = requests.get(bip.url + TOKEN_PATH + "?" + twice, timeout=5).json()
    assert doubled["code"] != "00000"
    stale = access_token_params(APP_KEY, APP_SECRET, _now_ms() - 3_600_000)
    assert requests.get(bip.url + TOKEN_PATH, params=stale, timeout=5).json()["code"] != "00000"
    other_app = access_token_params("someone-else", APP_SECRET, _now_ms())
    assert requests.get(bip.url + TOKEN_PATH, params=other_app, timeout=5).json()["code"] != "00000"


def test_business_calls_need_a_live_token(bip: Any) -> None:
    missing = _call(bip.url, "nope", "/yonbip/mfg/productionorder/list", {"pageIndex": 1})
    assert missing["code"] == "310036"
    token = _token(bip.url)
    assert _call(bip.url, token, "/yonbip/mfg/productionorder/list", {})["code"] == "200"
    bip.simulator.advance(7201)
    expired = _call(bip.url, token, "/yonbip/mfg/productionorder/list", {})
    assert expired["code"] == "310036"
    assert expired["message"] == "非法token."


def test_production_order_list_pages_and_detail_has_components(bip: Any) -> None:
    token = _token(bip.url)
    codes: list[str] = []
    page_index = 1
    while True:
        answer = _call(
            bip.url,
            token,
            "/iuap-api-gateway/yonbip/mfg/productionorder/list",
            {"pageIndex": page_index, "pageSize": 20, "status": "1"},
        )
        data = answer["data"]
        assert data["recordCount"] == 45
        assert data["pageCount"] == 3
        assert data["pageIndex"] == page_index
        codes.extend(record["code"] for record in data["recordList"])
        if page_index >= data["pageCount"]:
            break
        page_index += 1
    assert len(codes) == 45
    assert len(set(codes)) == 45
    first = _call(bip.url, token, "/yonbip/mfg/productionorder/list", {"pageSize": 1})
    order_id = first["data"]["recordList"][0]["id"]
    detail = _call(
        bip.url,
        token,
        f"/yonbip/mfg/productionorder/detail?id={order_id}",
        method="GET",
    )
    assert detail["code"] == "200"
    components = detail["data"]["orderProduct"][0]["orderMaterial"]
    assert len(components) >= 2
    assert all(Decimal(str(part["quantity"])) > 0 for part in components)
    missing = _call(bip.url, token, "/yonbip/mfg/productionorder/detail?id=42", method="GET")
    assert missing["code"] == "1002"


def test_changed_order_is_found_by_pubts(bip: Any) -> None:
    token = _token(bip.url)
    everything = _call(bip.url, token, "/yonbip/mfg/productionorder/list", {"pageSize": 500})
    cursor = max(record["pubts"] for record in everything["data"]["recordList"])
    time.sleep(1.05)  # pubts has a resolution of one second, as on the server
    changed = requests.post(
        bip.url + "/_sim/orders",
        json=[{"code": "SCDD000007", "orderProduct": [{"lineNo": 10, "quantity": 999}]}],
        timeout=5,
    ).json()
    assert changed[0]["pubts"] > cursor
    newer = _call(
        bip.url,
        token,
        "/yonbip/mfg/productionorder/list",
        {"simpleVOs": [{"field": "pubts", "op": "gt", "value1": cursor}]},
    )
    records = newer["data"]["recordList"]
    assert [(r["code"], r["OrderProduct_quantity"]) for r in records] == [("SCDD000007", 999)]
    bad = _call(
        bip.url,
        token,
        "/yonbip/mfg/productionorder/list",
        {"simpleVOs": [{"field": "pubts", "op": "like", "value1": "x"}]},
    )
    assert bad["code"] == "999"


def test_resubmit_check_key_makes_a_save_happen_once(bip: Any) -> None:
    requests.post(
        bip.url + "/_sim/stock",
        json=[
            {"org": "1000", "warehouse": "01", "material": "0101001", "lot": "B1", "quantity": 10}
        ],
        timeout=5,
    )
    token = _token(bip.url)
    first = _call(bip.url, token, MATERIAL_OUT, _material_out("hub-key-1"))
    assert first["code"] == "200"
    assert first["data"]["code"].startswith("CLCK")
    again = _call(bip.url, token, MATERIAL_OUT, _material_out("hub-key-1"))
    assert again["code"] == "999"
    assert "hub-key-1" in again["message"]
    assert "重复" in again["message"]
    rows = _stock_rows(bip.url, token, warehouse="01", product="0101001")
    assert [(row["batchno"], row["currentqty"]) for row in rows] == [("B1", 6)]
    too_long = _call(bip.url, token, MATERIAL_OUT, _material_out("k" * 33))
    assert too_long["code"] == "999"
    assert "32" in too_long["message"]
    documents = requests.get(bip.url + "/_sim/documents", timeout=5).json()["materialout"]
    assert [d["resubmitCheckKey"] for d in documents] == ["hub-key-1"]


def test_negative_stock_refused_and_product_in_and_transfer_move_stock(bip: Any) -> None:
    token = _token(bip.url)
    short = _call(bip.url, token, MATERIAL_OUT, _material_out("k-short", quantity="1"))
    assert short["code"] == "999"
    assert "现存量不足" in short["message"]
    receipt = {
        "data": {
            "resubmitCheckKey": "k-in",
            "org": "1000",
            "vouchdate": "2026-11-29",
            "warehouse": "20",
            "storeProRecords": [{"product": "0501001", "qty": 30}],
        }
    }
    saved = _call(bip.url, token, "/yonbip/scm/storeprorecord/single/save", receipt)
    assert saved["code"] == "200"
    transfer = _transfer("k-move", "20", "30", {"product": "0501001", "qty": "12.5"})
    assert _call(bip.url, token, "/yonbip/scm/storetransfer/save", transfer)["code"] == "200"
    rows = _stock_rows(bip.url, token, product="0501001")
    assert {row["warehouse"]: row["currentqty"] for row in rows} == {"20": 17.5, "30": 12.5}


def test_a_red_material_out_returns_stock_and_zero_or_red_transfers_are_refused(bip: Any) -> None:
    token = _token(bip.url)
    bip.simulator.set_stock(
        [{"org": "1000", "warehouse": "01", "material": "0101001", "lot": "B1", "quantity": 10}]
    )
    assert (
        _call(bip.url, token, MATERIAL_OUT, _material_out("k-out", quantity="4"))["code"] == "200"
    )
    red = _call(bip.url, token, MATERIAL_OUT, _material_out("k-red", quantity="-1.5"))
    assert red["code"] == "200"  # 红字: back to stock
    rows = _stock_rows(bip.url, token, product="0101001")
    assert [row["currentqty"] for row in rows] == [7.5]
    zero = _call(bip.url, token, MATERIAL_OUT, _material_out("k-zero", quantity="0"))
    assert zero["code"] == "999"
    assert "必须大于0" in zero["message"]
    transfer = _transfer(
        "k-red-move", "01", "10", {"product": "0101001", "qty": "-1", "batchno": "B1"}
    )
    assert _call(bip.url, token, "/yonbip/scm/storetransfer/save", transfer)["code"] == "999"


def test_save_paths_are_configurable() -> None:
    paths = {"productin": "/yonbip/scm/storeprorecord/save"}
    with serve(mode="yonbip", save_paths=paths) as server:
        token = _token(server.url)
        body = {
            "data": {
                "org": "1000",
                "vouchdate": "2026-11-29",
                "warehouse": "20",
                "storeProRecords": [{"product": "0501001", "qty": 1}],
            }
        }
        assert _call(server.url, token, "/yonbip/scm/storeprorecord/save", body)["code"] == "200"
        old = _call(server.url, token, "/yonbip/scm/storeprorecord/single/save", body)
        assert old["code"] != "200"


def test_dropped_answer_then_resubmit_is_refused_as_a_duplicate(bip: Any) -> None:
    token = _token(bip.url)
    requests.post(bip.url + "/_sim/faults", json={"drop_next": 1, "match": "save"}, timeout=5)
    receipt = {
        "data": {
            "resubmitCheckKey": "hub-key-9",
            "org": "1000",
            "vouchdate": "2026-11-29",
            "warehouse": "20",
            "storeProRecords": [{"product": "0501002", "qty": 3}],
        }
    }
    with pytest.raises(requests.ConnectionError):
        _call(bip.url, token, "/yonbip/scm/storeprorecord/single/save", receipt)
    documents = requests.get(bip.url + "/_sim/documents", timeout=5).json()["productin"]
    assert [d["resubmitCheckKey"] for d in documents] == ["hub-key-9"]
    repeat = _call(bip.url, token, "/yonbip/scm/storeprorecord/single/save", receipt)
    assert repeat["code"] == "999"
    assert len(requests.get(bip.url + "/_sim/documents", timeout=5).json()["productin"]) == 1


# -- U8 OpenAPI ------------------------------------------------------------------------------

U8_AUTH = {"from_account": "conveyor", "app_key": "opa-conveyor"}


@pytest.fixture
def u8() -> Iterator[Any]:
    with serve(mode="u8", refuse_negative=True, async_delay_s=5) as server:
        yield server


def _u8_token(base: str) -> str:
    answer = requests.get(
        base + "/system/token", params={**U8_AUTH, "app_secret": "u8-secret"}, timeout=5
    ).json()
    assert answer["errcode"] == "0"
    token: str = answer["token"]["id"]
    return token


def _u8_params(base: str, token: str, write: bool = True) -> dict[str, str]:
    params = {**U8_AUTH, "to_account": "001", "token": token}
    if write:
        trade = requests.get(base + "/system/tradeid", params=params, timeout=5).json()
        assert trade["errcode"] == "0"
        params["tradeid"] = trade["trade"]["id"]
    return params


def _voucher(resource: str, code: str, quantity: str, **header: str) -> dict[str, Any]:
    line = {"inventorycode": "0501001", "quantity": quantity, "serial": "B7"}
    return {resource: {"header": {"code": code, "date": "2026-11-29", **header}, "body": [line]}}


def test_u8_token_with_wrong_secret_is_refused(u8: Any) -> None:
    wrong = requests.get(
        u8.url + "/system/token", params={**U8_AUTH, "app_secret": "guess"}, timeout=5
    ).json()
    assert wrong["errcode"] != "0"
    assert wrong["errmsg"]
    assert "token" not in wrong


def test_u8_reused_tradeid_is_refused(u8: Any) -> None:
    token = _u8_token(u8.url)
    params = {**_u8_params(u8.url, token), "sync": "1"}
    body = _voucher("productin", "PI-1", "5", warehousecode="20")
    first = requests.post(u8.url + "/api/productin/add", params=params, json=body, timeout=5)
    assert first.json()["errcode"] == "0"
    assert first.json()["id"]
    body_two = _voucher("productin", "PI-2", "5", warehousecode="20")
    reused = requests.post(
        u8.url + "/api/productin/add", params=params, json=body_two, timeout=5
    ).json()
    assert reused["errcode"] != "0"
    assert params["tradeid"] in reused["errmsg"]
    assert "已被使用" in reused["errmsg"]
    no_trade = {k: v for k, v in params.items() if k != "tradeid"}
    refused = requests.post(
        u8.url + "/api/productin/add", params=no_trade, json=body_two, timeout=5
    ).json()
    assert refused["errcode"] != "0"
    vouchers = requests.get(u8.url + "/_sim/documents", timeout=5).json()["productin"]
    assert [v["header"]["code"] for v in vouchers] == ["PI-1"]


def test_u8_async_answer_is_polled_at_the_result_url(u8: Any) -> None:
    token = _u8_token(u8.url)
    params = _u8_params(u8.url, token)
    body = _voucher("productin", "PI-A", "8", warehousecode="20")
    accepted = requests.post(u8.url + "/api/productin/add", params=params, json=body, timeout=5)
    pending = accepted.json()
    assert set(pending) >= {"tradeid", "ping_after", "url"}
    assert pending["tradeid"] == params["tradeid"]
    still = requests.get(pending["url"], timeout=5).json()
    assert "id" not in still
    u8.simulator.advance(6)
    done = requests.get(pending["url"], timeout=5).json()
    assert done["errcode"] == "0"
    assert done["code"] == "PI-A"


def test_u8_token_expires(u8: Any) -> None:
    token = _u8_token(u8.url)
    u8.simulator.advance(7201)
    answer = requests.get(
        u8.url + "/system/tradeid", params={**U8_AUTH, "token": token}, timeout=5
    ).json()
    assert answer["errcode"] == "20002"
    assert "过期" in answer["errmsg"]


def test_u8_stock_moves_negative_refused_and_current_stock_pages(u8: Any) -> None:
    token = _u8_token(u8.url)

    def post(resource: str, body: dict[str, Any]) -> dict[str, Any]:
        params = {**_u8_params(u8.url, token), "sync": "1"}
        answer: dict[str, Any] = requests.post(
            f"{u8.url}/api/{resource}/add", params=params, json=body, timeout=5
        ).json()
        return answer

    assert (
        post("productin", _voucher("productin", "I1", "10", warehousecode="20"))["errcode"] == "0"
    )
    short = post("materialout", _voucher("materialout", "O1", "11", warehousecode="20"))
    assert short["errcode"] != "0"
    assert "现存量不足" in short["errmsg"]
    moved = post("transvouch", _voucher("transvouch", "T1", "4", owhcode="20", iwhcode="30"))
    assert moved["errcode"] == "0"
    duplicate = post("productin", _voucher("productin", "I1", "1", warehousecode="20"))
    assert duplicate["errcode"] != "0"
    assert "重复" in duplicate["errmsg"]
    requests.post(
        u8.url + "/_sim/stock",
        json=[
            {"org": "001", "warehouse": "01", "material": "0101001", "lot": f"L{n:02d}", "qty": n}
            for n in range(1, 24)
        ],
        timeout=5,
    )
    seen: list[tuple[str, str, str]] = []
    page = 1
    while True:
        answer = requests.get(
            u8.url + "/api/currentstock/batch_get",
            params={
                **_u8_params(u8.url, token, write=False),
                "page_index": page,
                "rows_per_page": 10,
            },
            timeout=5,
        ).json()
        assert answer["errcode"] == "0"
        seen.extend((r["whcode"], r["invcode"], r["batch"]) for r in answer["currentstock"])
        if page >= answer["page_count"]:
            break
        page += 1
    assert page == 3
    assert len(seen) == 25
    assert len(set(seen)) == 25
    by_warehouse = requests.get(
        u8.url + "/api/currentstock/batch_get",
        params={**_u8_params(u8.url, token, write=False), "whcode": "30"},
        timeout=5,
    ).json()["currentstock"]
    assert by_warehouse == [
        {"whcode": "30", "invcode": "0501001", "batch": "B7", "qty": 4, "availqty": 4}
    ]


def test_command_line_serves_u8() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "simulators.yonyou", "--mode", "u8", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        assert _u8_token(url)
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert process.returncode == 0


def test_resubmit_keys_and_stock_survive_a_restart_with_a_state_file(tmp_path: Any) -> None:
    state = str(tmp_path / "yonbip.sqlite")
    body = {
        "data": {
            "resubmitCheckKey": "hub-key-restart",
            "org": "1000",
            "vouchdate": "2026-11-29",
            "warehouse": "20",
            "storeProRecords": [{"product": "0501001", "qty": "2.25"}],
        }
    }
    path = "/yonbip/scm/storeprorecord/single/save"
    with serve(mode="yonbip", state=state) as server:
        assert _call(server.url, _token(server.url), path, body)["code"] == "200"
    with serve(mode="yonbip", state=state) as server:
        token = _token(server.url)
        assert _call(server.url, token, path, body)["code"] == "999"
        rows = _stock_rows(server.url, token, product="0501001")
        assert [row["currentqty"] for row in rows] == [2.25]
