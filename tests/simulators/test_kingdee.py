"""The Kingdee K/3 Cloud simulator over real loopback HTTP, with ``requests`` as the connector
will use it."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests

from connectors.kingdee_auth import login_sign, signed_headers
from simulators.kingdee import NEGATIVE_STOCK, SESSION_LOST, KingdeeSimulator, serve

ACCT = "65a1b2c3d4e5f6"
USER = "integ_user"
PASSWORD = "integ_pass"
APP_ID = "300001_AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcY"
APP_SECRET = "0123456789abcdef0123456789abcdef"
STUB = "/k3cloud/Kingdee.BOS.WebApi.ServicesStub."


def _url(base: str, service: str) -> str:
    return f"{base}{STUB}{service}.common.kdsvc"


class K3:
    """The smallest client: a requests session that logs in and posts named bodies."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.http = requests.Session()

    def post(self, service: str, body: Any, timeout: float = 10) -> Any:
        response = self.http.post(_url(self.base, service), json=body, timeout=timeout)
        response.raise_for_status()
        return response.json()

    def login(self) -> dict[str, Any]:
        answer: dict[str, Any] = self.post(
            "AuthService.ValidateUser", {"parameters": [ACCT, USER, PASSWORD, 2052]}
        )
        assert answer["LoginResultType"] == 1
        return answer

    def query(self, **data: Any) -> Any:
        return self.post("DynamicFormService.ExecuteBillQuery", {"data": data})

    def save(self, service: str, formid: str, data: dict[str, Any]) -> dict[str, Any]:
        answer: dict[str, Any] = self.post(
            f"DynamicFormService.{service}", {"formid": formid, "data": data}
        )
        return answer["Result"]


def pick_model(
    key: str,
    quantity: str = "5",
    material: str = "1.01.001",
    stock: str | None = "CK001",
    org: str | None = "100",
    lot: str = "L1",
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "FMaterialId": {"FNumber": material},
        "FUnitID": {"FNumber": "kg"},
        "FActualQty": quantity,
        "FLot": {"FNumber": lot},
        "FMoBillNo": "MO000001",
    }
    if stock is not None:
        entry["FStockId"] = {"FNumber": stock}
    model: dict[str, Any] = {
        "FBillType": {"FNumber": "SCLLD01_SYS"},
        "FDate": "2026-11-29 08:00:00",
        "FPrdOrgId": {"FNumber": "100"},
        "FDescription": key,
        "FEntity": [entry],
    }
    if org is not None:
        model["FStockOrgId"] = {"FNumber": org}
    return model


@pytest.fixture
def sim() -> Iterator[Any]:
    with serve(refuse_negative=True, session_ttl_s=60) as server:
        yield server


@pytest.fixture
def k3(sim: Any) -> K3:
    client = K3(sim.url)
    client.login()
    return client


def _set_stock(base: str, quantity: str, material: str = "1.01.001", lot: str = "L1") -> None:
    row = {"org": "100", "warehouse": "CK001", "material": material, "lot": lot}
    response = requests.post(base + "/_sim/stock", json=[{**row, "quantity": quantity}], timeout=5)
    assert response.status_code == 200


def _stock(base: str, material: str = "1.01.001", warehouse: str = "CK001") -> Decimal:
    rows = requests.get(base + "/_sim/stock", timeout=5).json()
    return sum(
        (
            Decimal(r["quantity"])
            for r in rows
            if r["material"] == material and r["warehouse"] == warehouse
        ),
        Decimal(0),
    )


# -- login -----------------------------------------------------------------------------------


def test_validate_user_positional_and_named_set_the_session_cookie(sim: Any) -> None:
    client = K3(sim.url)
    answer = client.login()
    assert answer["KDSVCSessionId"]
    assert client.http.cookies.get("kdservice-sessionid") == answer["KDSVCSessionId"]
    named = K3(sim.url).post(
        "AuthService.ValidateUser",
        {"acctID": ACCT, "username": USER, "password": PASSWORD, "lcid": 2052},
    )
    assert named["LoginResultType"] == 1
    assert named["IsSuccessByAPI"] is True


def test_login_by_app_secret(sim: Any) -> None:
    client = K3(sim.url)
    answer = client.post(
        "AuthService.LoginByAppSecret", {"parameters": [ACCT, USER, APP_ID, APP_SECRET, 2052]}
    )
    assert answer["LoginResultType"] == 1
    assert isinstance(client.query(FormId="PRD_MO", FieldKeys="FBillNo"), list)


def test_login_by_sign_checks_the_sign(sim: Any) -> None:
    timestamp = str(int(time.time()))
    sign = login_sign(ACCT, USER, APP_ID, APP_SECRET, timestamp)
    client = K3(sim.url)
    good = client.post(
        "AuthService.LoginBySign", {"parameters": [ACCT, USER, APP_ID, timestamp, sign, 2052]}
    )
    assert good["LoginResultType"] == 1
    bad = K3(sim.url).post(
        "AuthService.LoginBySign",
        {"parameters": [ACCT, USER, APP_ID, timestamp, "0" * 64, 2052]},
    )
    assert bad["LoginResultType"] != 1
    assert bad["KDSVCSessionId"] is None
    assert "签名" in bad["Message"]


def test_wrong_password_answers_the_failure_shape_and_no_session(sim: Any) -> None:
    client = K3(sim.url)
    answer = client.post("AuthService.ValidateUser", {"parameters": [ACCT, USER, "nope", 2052]})
    assert answer["LoginResultType"] == 0
    assert answer["Message"] == "用户名或密码错误！"
    assert answer["IsSuccessByAPI"] is False
    assert "kdservice-sessionid" not in client.http.cookies


def test_expired_session_answers_msgcode_1(sim: Any, k3: K3) -> None:
    assert k3.query(FormId="PRD_MO", FieldKeys="FBillNo") == []
    sim.simulator.advance(61)  # beyond session_ttl_s=60
    rows = k3.query(FormId="PRD_MO", FieldKeys="FBillNo")
    status = rows[0][0]["Result"]["ResponseStatus"]
    assert status["MsgCode"] == 1
    assert status["ErrorCode"] == 500
    assert status["Errors"][0]["Message"] == SESSION_LOST
    saved = k3.save("Save", "PRD_PickMtrl", {"Model": pick_model("k-expired")})
    assert saved["ResponseStatus"]["MsgCode"] == 1
    assert saved["ResponseStatus"]["Errors"][0]["Message"] == "会话信息已丢失，请重新登录"
    k3.login()  # log in again and repeat once
    assert k3.query(FormId="PRD_MO", FieldKeys="FBillNo") == []


def test_missing_session_answers_msgcode_1(sim: Any) -> None:
    answer = K3(sim.url).save("Save", "PRD_PickMtrl", {"Model": pick_model("k")})
    assert answer["ResponseStatus"]["MsgCode"] == 1
    assert answer["ResponseStatus"]["IsSuccess"] is False


def test_signed_requests_need_no_login_and_a_wrong_signature_is_refused(sim: Any) -> None:
    path = STUB + "DynamicFormService.ExecuteBillQuery.common.kdsvc"
    now = str(int(time.time()))
    headers = signed_headers(path, APP_ID, APP_SECRET, ACCT, USER, 2052, 0, now, now)
    body = {"data": {"FormId": "PRD_MO", "FieldKeys": "FBillNo"}}
    good = requests.post(sim.url + path, json=body, headers=headers, timeout=5)
    assert good.json() == []
    forged = dict(headers, **{"X-Kd-Signature": headers["X-Api-Signature"]})
    bad = requests.post(sim.url + path, json=body, headers=forged, timeout=5).json()
    assert bad[0][0]["Result"]["ResponseStatus"]["MsgCode"] == 1
    other_path = signed_headers(
        STUB + "DynamicFormService.Save.common.kdsvc",
        APP_ID,
        APP_SECRET,
        ACCT,
        USER,
        2052,
        0,
        now,
        now,
    )
    replayed = requests.post(sim.url + path, json=body, headers=other_path, timeout=5).json()
    assert "X-Api-Signature" in replayed[0][0]["Result"]["ResponseStatus"]["Errors"][0]["Message"]


# -- queries ---------------------------------------------------------------------------------


def test_execute_bill_query_pages_2500_orders_without_loss_or_repeat() -> None:
    with serve(seed_orders=2500, seed=7) as server:
        client = K3(server.url)
        client.login()
        seen: list[str] = []
        pages = 0
        start_row = 0
        while True:
            rows = client.query(
                FormId="PRD_MO",
                FieldKeys="FBillNo,FTreeEntity_FEntryId,FMaterialId.FNumber,FQty,FStatus",
                FilterString="FDocumentStatus = 'C' and FStatus in ('3', '4')",
                OrderString="FBillNo ASC",
                StartRow=start_row,
                Limit=1000,
            )
            assert all(isinstance(row, list) and len(row) == 5 for row in rows)
            pages += 1
            seen.extend(row[0] for row in rows)
            if len(rows) < 1000:
                break
            start_row += len(rows)
        assert pages == 3
        assert len(seen) == 2500
        assert len(set(seen)) == 2500
        assert seen == sorted(seen)
        capped = client.query(FormId="PRD_MO", FieldKeys="FBillNo", Limit=5000)
        assert len(capped) == 2000


def test_seeded_orders_are_deterministic_and_have_components() -> None:
    first = KingdeeSimulator(seed_orders=20, seed=3)
    second = KingdeeSimulator(seed_orders=20, seed=3)
    keys = "FBillNo,FMaterialId.FNumber,FQty"
    query = {"FormId": "PRD_MO", "FieldKeys": keys}
    assert first._execute_bill_query("", query) == second._execute_bill_query("", query)
    components = first._bill_query(
        "",
        {
            "FormId": "PRD_PPBOM",
            "FieldKeys": "FMOBillNO,FMaterialID2.FNumber,FMustQty",
            "FilterString": "FMOBillNO = 'MO000001'",
        },
    )
    assert len(components) >= 2
    assert all(row["FMaterialID2.FNumber"].startswith(("1.", "3.")) for row in components)


def test_query_errors_come_back_inside_the_array(k3: K3) -> None:
    bad_filter = k3.query(FormId="PRD_MO", FieldKeys="FBillNo", FilterString="FBillNo like 'MO%'")
    status = bad_filter[0][0]["Result"]["ResponseStatus"]
    assert status["MsgCode"] == 4
    assert status["IsSuccess"] is False
    unknown_field = k3.query(FormId="PRD_MO", FieldKeys="FBillNo,FNoSuchField")
    assert unknown_field[0][0]["Result"]["ResponseStatus"]["MsgCode"] == 9
    unknown_form = k3.query(FormId="PRD_NOPE", FieldKeys="FBillNo")
    assert unknown_form[0][0]["Result"]["ResponseStatus"]["MsgCode"] == 4
    unbalanced = k3.query(FormId="PRD_MO", FieldKeys="FBillNo", FilterString="(FQty > 1")
    assert unbalanced[0][0]["Result"]["ResponseStatus"]["MsgCode"] == 4


def test_changed_order_is_seen_by_the_next_poll_on_modify_date(sim: Any, k3: K3) -> None:
    orders = [
        {
            "FBillNo": f"MO9{n}",
            "FPrdOrgId": {"FNumber": "100"},
            "FTreeEntity": [{"FMaterialId": {"FNumber": "5.01.001"}, "FQty": 10}],
        }
        for n in range(3)
    ]
    released = requests.post(sim.url + "/_sim/orders", json=orders, timeout=5).json()
    assert [r["FBillNo"] for r in released] == ["MO90", "MO91", "MO92"]
    cursor = max(r["FModifyDate"] for r in released)
    changed = requests.post(
        sim.url + "/_sim/orders",
        json=[{"FBillNo": "MO91", "FTreeEntity": [{"FSeq": 1, "FQty": 12}]}],
        timeout=5,
    ).json()
    assert changed[0]["FModifyDate"] > cursor
    rows = k3.query(
        FormId="PRD_MO",
        FieldKeys="FBillNo,FQty,FTreeEntity_FEntryId,FModifyDate",
        FilterString=f"FModifyDate > '{cursor}'",
    )
    assert [(row[0], row[1]) for row in rows] == [("MO91", 12)]


def test_bill_query_answers_objects_keyed_by_field(sim: Any, k3: K3) -> None:
    requests.post(
        sim.url + "/_sim/orders",
        json=[
            {
                "FBillNo": "MO1",
                "FPrdOrgId": {"FNumber": "100"},
                "FTreeEntity": [{"FMaterialId": {"FNumber": "5.01.002"}, "FQty": "7.5"}],
            }
        ],
        timeout=5,
    )
    rows = k3.post(
        "DynamicFormService.BillQuery",
        {"data": {"FormId": "PRD_MO", "FieldKeys": "FBillNo,FMaterialId.FNumber,FQty"}},
    )
    assert rows == [{"FBillNo": "MO1", "FMaterialId.FNumber": "5.01.002", "FQty": 7.5}]


# -- saving ----------------------------------------------------------------------------------


def test_batch_save_answers_per_bill_and_saves_the_good_ones(sim: Any, k3: K3) -> None:
    models = [pick_model(f"key-{n}") for n in range(10)]
    models[2] = pick_model("key-2", stock=None)
    models[5] = pick_model("key-5", material="9.99.999")
    models[7] = pick_model("key-7", org=None)
    result = k3.save("BatchSave", "PRD_PickMtrl", {"Model": models})
    status = result["ResponseStatus"]
    assert status["IsSuccess"] is False
    assert status["MsgCode"] == 11
    assert sorted({e["DIndex"] for e in status["Errors"]}) == [2, 5, 7]
    missing_stock = [e for e in status["Errors"] if e["DIndex"] == 2]
    assert missing_stock == [
        {
            "FieldName": "FStockId",
            "Message": "单据体实体【明细】第【1】行分录，【仓库】字段必录",
            "DIndex": 2,
        }
    ]
    assert any("9.99.999" in e["Message"] for e in status["Errors"] if e["DIndex"] == 5)
    assert any(e["FieldName"] == "FStockOrgId" for e in status["Errors"] if e["DIndex"] == 7)
    saved = status["SuccessEntitys"]
    assert [s["DIndex"] for s in saved] == [0, 1, 3, 4, 6, 8, 9]
    assert all(s["Number"].startswith("SCLLD") and len(s["Number"]) == 11 for s in saved)
    assert len({s["Number"] for s in saved}) == 7
    documents = requests.get(sim.url + "/_sim/documents", timeout=5).json()["PRD_PickMtrl"]
    assert sorted(d["FDescription"] for d in documents) == sorted(
        f"key-{n}" for n in (0, 1, 3, 4, 6, 8, 9)
    )
    rows = k3.query(
        FormId="PRD_PickMtrl",
        FieldKeys="FBillNo,FDocumentStatus,FEntity_FEntryId,FActualQty",
        FilterString="FDescription = 'key-3'",
    )
    assert rows == [[saved[2]["Number"], "A", rows[0][2], 5]]


def test_negative_stock_is_refused_when_set(sim: Any, k3: K3) -> None:
    _set_stock(sim.url, "8")
    refused = k3.save(
        "Save",
        "PRD_PickMtrl",
        {"Model": pick_model("k-neg", quantity="10"), "IsAutoSubmitAndAudit": True},
    )
    messages = [e["Message"] for e in refused["ResponseStatus"]["Errors"]]
    assert NEGATIVE_STOCK in messages
    assert "出现负库存，库存更新不成功。" in messages
    assert refused["ResponseStatus"]["IsSuccess"] is False
    assert _stock(sim.url) == Decimal("8")
    assert requests.get(sim.url + "/_sim/documents", timeout=5).json()["PRD_PickMtrl"] == []
    taken = k3.save(
        "Save",
        "PRD_PickMtrl",
        {"Model": pick_model("k-ok", quantity="2.5"), "IsAutoSubmitAndAudit": True},
    )
    assert taken["ResponseStatus"]["IsSuccess"] is True
    assert _stock(sim.url) == Decimal("5.5")


def test_negative_stock_is_allowed_when_not_set() -> None:
    with serve() as server:
        client = K3(server.url)
        client.login()
        result = client.save(
            "Save", "PRD_PickMtrl", {"Model": pick_model("k"), "IsAutoSubmitAndAudit": "true"}
        )
        assert result["ResponseStatus"]["IsSuccess"] is True
        assert _stock(server.url) == Decimal(-5)


def test_save_submit_audit_moves_stock_and_unaudit_reverses(sim: Any, k3: K3) -> None:
    receipt = {
        "FBillType": {"FNumber": "SCRKD01_SYS"},
        "FStockOrgId": {"FNumber": "100"},
        "FDescription": "k-in",
        "FEntity": [
            {
                "FMaterialId": {"FNumber": "5.01.001"},
                "FStockId": {"FNumber": "CK020"},
                "FUnitID": {"FNumber": "Pcs"},
                "FRealQty": 40,
                "FMoBillNo": "MO000001",
            }
        ],
    }
    saved = k3.save("Save", "PRD_INSTOCK", {"Model": receipt, "NeedReturnFields": ["FBillNo"]})
    number = saved["Number"]
    assert number.startswith("SCRKD")
    assert saved["NeedReturnData"] == [{"FBillNo": number}]
    assert _stock(sim.url, "5.01.001", "CK020") == 0  # not yet audited
    audit_too_early = k3.save("Audit", "PRD_INSTOCK", {"Numbers": [number]})
    assert audit_too_early["ResponseStatus"]["IsSuccess"] is False
    assert k3.save("Submit", "PRD_INSTOCK", {"Numbers": [number]})["ResponseStatus"]["IsSuccess"]
    audited = k3.save("Audit", "PRD_INSTOCK", {"CreateOrgId": 0, "Ids": str(saved["Id"])})
    assert audited["ResponseStatus"]["SuccessEntitys"][0]["Number"] == number
    assert _stock(sim.url, "5.01.001", "CK020") == 40
    transfer = {
        "FBillTypeID": {"FNumber": "ZJDB01_SYS"},
        "FStockOrgId": {"FNumber": "100"},
        "FStockOutOrgId": {"FNumber": "100"},
        "FBillEntry": [
            {
                "FMaterialId": {"FNumber": "5.01.001"},
                "FUnitID": {"FNumber": "Pcs"},
                "FQty": 15,
                "FSrcStockId": {"FNumber": "CK020"},
                "FDestStockId": {"FNumber": "CK030"},
            }
        ],
    }
    moved = k3.save("Save", "STK_TransferDirect", {"Model": transfer, "IsAutoSubmitAndAudit": True})
    assert moved["Number"].startswith("ZJDB")
    assert _stock(sim.url, "5.01.001", "CK020") == 25
    assert _stock(sim.url, "5.01.001", "CK030") == 15
    inventory = k3.query(
        FormId="STK_Inventory",
        FieldKeys="FMaterialId.FNumber,FStockId.FNumber,FBaseQty",
        FilterString="FMaterialId.FNumber = '5.01.001' and FBaseQty > 0",
        OrderString="FStockId.FNumber",
    )
    assert inventory == [["5.01.001", "CK020", 25], ["5.01.001", "CK030", 15]]
    unaudited = k3.save("UnAudit", "PRD_INSTOCK", {"Numbers": [number]})
    assert unaudited["ResponseStatus"]["IsSuccess"] is False  # would take CK020 to -15
    viewed = k3.save("View", "PRD_INSTOCK", {"Number": number})
    assert viewed["Result"]["DocumentStatus"] == "C"
    deleted = k3.save("Delete", "PRD_INSTOCK", {"Numbers": [number, "NOPE"]})
    assert [e["DIndex"] for e in deleted["ResponseStatus"]["Errors"]] == [0, 1]


def test_positional_body_style_saves(k3: K3) -> None:
    import json

    answer = k3.post(
        "DynamicFormService.Save",
        {"parameters": ["PRD_PickMtrl", json.dumps({"Model": pick_model("k-pos")})]},
    )
    assert answer["Result"]["ResponseStatus"]["IsSuccess"] is True
    rows = k3.post(
        "DynamicFormService.ExecuteBillQuery",
        {"parameters": [json.dumps({"FormId": "PRD_PickMtrl", "FieldKeys": "FDescription"})]},
    )
    assert rows == [["k-pos"]]


# -- faults ----------------------------------------------------------------------------------


def test_drop_answer_commits_but_the_client_sees_a_closed_connection(sim: Any, k3: K3) -> None:
    armed = requests.post(
        sim.url + "/_sim/faults", json={"drop_next": 1, "match": "Save"}, timeout=5
    ).json()
    assert armed["drop_next"] == 1
    with pytest.raises(requests.ConnectionError):
        k3.save("Save", "PRD_PickMtrl", {"Model": pick_model("hub-key-42")})
    documents = requests.get(sim.url + "/_sim/documents", timeout=5).json()["PRD_PickMtrl"]
    assert [d["FDescription"] for d in documents] == ["hub-key-42"]
    # The connector's look-up by the hub's key finds what the lost answer would have said.
    found = k3.query(
        FormId="PRD_PickMtrl", FieldKeys="FBillNo", FilterString="FDescription = 'hub-key-42'"
    )
    assert found == [[documents[0]["FBillNo"]]]


def test_fail_next_answers_5xx_without_committing(sim: Any, k3: K3) -> None:
    requests.post(sim.url + "/_sim/faults", json={"fail_next": 2, "match": "Save"}, timeout=5)
    url = _url(sim.url, "DynamicFormService.Save")
    body = {"formid": "PRD_PickMtrl", "data": {"Model": pick_model("k-5xx")}}
    statuses = [k3.http.post(url, json=body, timeout=5).status_code for _ in range(3)]
    assert statuses == [503, 503, 200]
    documents = requests.get(sim.url + "/_sim/documents", timeout=5).json()["PRD_PickMtrl"]
    assert len(documents) == 1


def test_timeout_holds_the_answer_after_committing(sim: Any, k3: K3) -> None:
    requests.post(
        sim.url + "/_sim/faults",
        json={"timeout_next": 1, "timeout_s": 3, "match": "Save"},
        timeout=5,
    )
    with pytest.raises(requests.ReadTimeout):
        k3.post(
            "DynamicFormService.Save",
            {"formid": "PRD_PickMtrl", "data": {"Model": pick_model("k-slow")}},
            timeout=0.5,
        )
    documents = requests.get(sim.url + "/_sim/documents", timeout=5).json()["PRD_PickMtrl"]
    assert [d["FDescription"] for d in documents] == ["k-slow"]


def test_fail_rate_is_deterministic_with_a_seed(sim: Any, k3: K3) -> None:
    def run() -> list[int]:
        requests.post(
            sim.url + "/_sim/faults",
            json={"fail_rate": 0.5, "seed": 11, "match": "Query"},
            timeout=5,
        )
        url = _url(sim.url, "DynamicFormService.ExecuteBillQuery")
        body = {"data": {"FormId": "PRD_MO", "FieldKeys": "FBillNo"}}
        return [k3.http.post(url, json=body, timeout=5).status_code for _ in range(12)]

    first = run()
    assert first == run()
    assert 200 in first
    assert 503 in first


def test_latency_overlaps_across_concurrent_clients(sim: Any) -> None:
    requests.post(sim.url + "/_sim/faults", json={"latency_ms": 400}, timeout=5)
    answers: list[int] = []

    def login() -> None:
        answers.append(K3(sim.url).login()["LoginResultType"])

    threads = [threading.Thread(target=login) for _ in range(5)]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == [1] * 5
    assert time.monotonic() - began < 1.5  # five calls of 0.4 s each, served side by side


# -- state and command line ------------------------------------------------------------------


def test_state_file_keeps_documents_and_stock_across_restarts(tmp_path: Path) -> None:
    state = tmp_path / "kingdee.sqlite"
    with serve(state=str(state)) as server:
        client = K3(server.url)
        client.login()
        saved = client.save(
            "Save", "PRD_PickMtrl", {"Model": pick_model("k-keep"), "IsAutoSubmitAndAudit": True}
        )
        assert saved["ResponseStatus"]["IsSuccess"] is True
    with serve(state=str(state)) as server:
        client = K3(server.url)
        client.login()
        rows = client.query(FormId="PRD_PickMtrl", FieldKeys="FBillNo,FDescription")
        assert rows == [[saved["Number"], "k-keep"]]
        assert _stock(server.url) == Decimal(-5)
        again = client.save("Save", "PRD_PickMtrl", {"Model": pick_model("k-next")})
        assert again["Number"] != saved["Number"]


def test_command_line_prints_the_url_first_and_serves() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "simulators.kingdee", "--port", "0", "--seed-orders", "3"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        client = K3(url)
        client.login()
        assert len(client.query(FormId="PRD_MO", FieldKeys="FBillNo")) == 3
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert process.returncode == 0


def test_extra_materials_file_is_known_to_save(tmp_path: Path) -> None:
    extra = tmp_path / "materials.csv"
    extra.write_text("material,kingdee_number,base_uom\nRM-9999,9.99.999,KG\n", encoding="utf-8")
    with serve(materials=str(extra)) as server:
        client = K3(server.url)
        client.login()
        known = client.save("Save", "PRD_PickMtrl", {"Model": pick_model("k", material="9.99.999")})
        assert known["ResponseStatus"]["IsSuccess"] is True
        still = client.save("Save", "PRD_PickMtrl", {"Model": pick_model("k2")})
        assert still["ResponseStatus"]["IsSuccess"] is True  # master_data/ materials stay known


def test_unknown_fault_setting_is_refused(sim: Any) -> None:
    response = requests.post(sim.url + "/_sim/faults", json={"explode": 1}, timeout=5)
    assert response.status_code == 400
    assert "explode" in response.json()["error"]


def test_the_official_sdk_talks_to_the_simulator_with_signed_requests(sim: Any) -> None:
    """The vendor's own client (tests only) is accepted: its headers, body style and URL."""
    import json

    sdk_main = pytest.importorskip("k3cloud_webapi_sdk.main")
    sdk = sdk_main.K3CloudApiSdk(sim.url + "/k3cloud/", timeout=10)
    sdk.InitConfig(ACCT, USER, APP_ID, APP_SECRET, sim.url + "/k3cloud/", lcid=2052)
    saved = json.loads(sdk.Save("PRD_PickMtrl", {"Model": pick_model("k-sdk")}))
    assert saved["Result"]["ResponseStatus"]["IsSuccess"] is True
    rows = json.loads(
        sdk.ExecuteBillQuery(
            {
                "FormId": "PRD_PickMtrl",
                "FieldKeys": "FBillNo",
                "FilterString": "FDescription = 'k-sdk'",
            }
        )
    )
    assert rows == [[saved["Result"]["Number"]]]


def test_orders_file_releases_orders(tmp_path: Path) -> None:
    import json

    orders = [
        {
            "FBillNo": "MO-FILE-1",
            "FPrdOrgId": {"FNumber": "100"},
            "FTreeEntity": [{"FMaterialId": {"FNumber": "5.01.002"}, "FQty": 3}],
        }
    ]
    seed_file = tmp_path / "orders.json"
    seed_file.write_text(json.dumps(orders), encoding="utf-8")
    simulator = KingdeeSimulator(orders_file=seed_file, released_status="4")
    rows = simulator._execute_bill_query(
        "", {"FormId": "PRD_MO", "FieldKeys": "FBillNo,FStatus,FDocumentStatus,FQty"}
    )
    assert rows == [["MO-FILE-1", "4", "C", Decimal(3)]]


# -- material master (BD_MATERIAL) -----------------------------------------------------------

MATERIAL_KEYS = "FNumber,FName,FBaseUnitId.FNumber,FMaterialGroup.FNumber,FModifyDate"


def test_material_master_answers_the_seeded_materials_in_pages(sim: Any, k3: K3) -> None:
    first = k3.query(FormId="BD_MATERIAL", FieldKeys=MATERIAL_KEYS, OrderString="FNumber",
                     StartRow=0, Limit=5)  # fmt: skip
    rest = k3.query(FormId="BD_MATERIAL", FieldKeys=MATERIAL_KEYS, OrderString="FNumber",
                    StartRow=5, Limit=2000)  # fmt: skip
    assert [len(first), len(rest)] == [5, 7]  # the 12 materials of master_data with a number
    assert all(isinstance(row, list) and len(row) == 5 for row in first + rest)
    assert first[0][:4] == ["1.01.001", "聚丙烯颗粒 PP granulate", "kg", "raw"]
    numbers = [row[0] for row in first + rest]
    assert numbers == sorted(numbers)
    assert len(set(numbers)) == 12
    assert "2.01.001" in numbers
    assert "Pcs" in {row[2] for row in first + rest}


def test_material_master_filters_on_modify_date_and_sees_changes(sim: Any, k3: K3) -> None:
    materials = sim.simulator
    since = materials.modify_clock.now().isoformat(timespec="milliseconds")
    materials.upsert_material("1.01.002", name="ABS颗粒 阻燃 FR")
    materials.upsert_material("9.99.001", name="新物料 new", base_unit="Pcs", group="raw")
    assert materials.delete_material("3.01.002") is True
    assert materials.delete_material("no-such") is False
    changed = k3.query(FormId="BD_MATERIAL", FieldKeys="FNumber,FName",
                       FilterString=f"FModifyDate > '{since}'", OrderString="FNumber")  # fmt: skip
    assert changed == [["1.01.002", "ABS颗粒 阻燃 FR"], ["9.99.001", "新物料 new"]]
    everything = k3.query(FormId="BD_MATERIAL", FieldKeys="FNumber")
    assert len(everything) == 12
    assert ["3.01.002"] not in everything


def test_material_master_unknown_field_comes_back_inside_the_array(k3: K3) -> None:
    answer = k3.query(FormId="BD_MATERIAL", FieldKeys="FNumber,FNoSuchField")
    status = answer[0][0]["Result"]["ResponseStatus"]
    assert (status["IsSuccess"], status["MsgCode"]) == (False, 9)
