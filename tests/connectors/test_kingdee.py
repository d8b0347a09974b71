"""The Kingdee K/3 Cloud connector: login and re-login, signed calls, queries (errors wrapped in the
result array), BatchSave results by DIndex, Submit/Audit, malformed answers — with ``responses``
standing in for the server — and the conformance suite over real loopback HTTP against the
Kingdee simulator, in both authentication modes."""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator, Mapping
from typing import Any, ClassVar

import pytest
import responses

from connectors.kingdee import KingdeeConnector
from conveyor.connector import BatchItem
from conveyor.errors import AmbiguousDeliveryError, ConfigError, RejectedError, TransientError
from conveyor.runtime import registry
from conveyor.testing.conformance import Harness, conformance_tests
from simulators._erp import SimServer
from tests.support import kingdee as kd

BASE = "http://k3.example"
STUB = f"{BASE}/k3cloud/Kingdee.BOS.WebApi.ServicesStub"
LOGIN = f"{STUB}.AuthService.ValidateUser.common.kdsvc"
QUERY = f"{STUB}.DynamicFormService.ExecuteBillQuery.common.kdsvc"
SAVE = f"{STUB}.DynamicFormService.BatchSave.common.kdsvc"
AUDIT = f"{STUB}.DynamicFormService.Audit.common.kdsvc"
SUBMIT = f"{STUB}.DynamicFormService.Submit.common.kdsvc"
LOST = {
    "Result": {
        "ResponseStatus": {
            "IsSuccess": False,
            "ErrorCode": 500,
            "MsgCode": 1,
            "Errors": [{"FieldName": None, "Message": "会话信息已丢失，请重新登录", "DIndex": 0}],
        }
    }
}
PICK = {"FormId": "PRD_PickMtrl", "Model": {"FEntity": [{"FActualQty": "2.5"}]}}


def status(errors: list[Any] = (), successes: list[Any] = (), **more: Any) -> dict[str, Any]:  # type: ignore[assignment]
    return {
        "Result": {
            "ResponseStatus": {
                "IsSuccess": not errors,
                "MsgCode": 11 if errors else 0,
                "Errors": list(errors),
                "SuccessEntitys": list(successes),
                **more,
            }
        }
    }


def login_ok(session: str = "S1") -> dict[str, Any]:
    return {"LoginResultType": 1, "KDSVCSessionId": session, "Message": None}


@pytest.fixture
def mocked(monkeypatch: pytest.MonkeyPatch) -> Iterator[responses.RequestsMock]:
    kd.plant_secrets(monkeypatch)
    with responses.RequestsMock() as mock:
        yield mock


def connector(**more: Any) -> KingdeeConnector:
    return KingdeeConnector("kingdee", kd.settings(BASE, **more))


def items(*keys: str) -> list[BatchItem]:
    return [BatchItem(PICK, "material_consumption", key) for key in keys]


def test_registered_and_secrets_never_settings() -> None:
    assert registry.load("kingdee") is KingdeeConnector
    assert KingdeeConnector.secret_fields() == ["app_id", "app_secret", "password", "username"]
    with pytest.raises(ConfigError, match="secrets"):
        KingdeeConnector("kingdee", {**kd.settings(BASE), "password": "x"})
    with pytest.raises(ConfigError, match="auth"):
        KingdeeConnector("kingdee", kd.settings(BASE, auth="oauth"))


def test_login_then_batch_save_maps_results_by_dindex(mocked: responses.RequestsMock) -> None:
    mocked.post(LOGIN, json=login_ok())
    mocked.post(
        SAVE,
        json=status(
            errors=[{"FieldName": "FStockId", "Message": kd.MISSING_STOCK, "DIndex": 1}],
            successes=[
                {"Id": 7, "Number": "SCLLD000007", "DIndex": 2},
                {"Id": 6, "Number": "SCLLD000006", "DIndex": 0},
            ],
        ),
    )
    results = connector(batch_size=10).send_batch(items("k0", "k1", "k2"))
    assert [r.ok for r in results] == [True, False, True]
    assert [r.result.external_ref for r in results if r.result] == ["SCLLD000006", "SCLLD000007"]
    assert isinstance(results[1].error, RejectedError)
    assert kd.MISSING_STOCK in str(results[1].error)
    assert "FStockId" in str(results[1].error)
    login = json.loads(mocked.calls[0].request.body or b"")
    assert login == {"parameters": [kd.ACCT_ID, kd.USERNAME, kd.PASSWORD, 2052]}
    save = mocked.calls[1].request
    assert save.headers["Cookie"] == "kdservice-sessionid=S1"
    body = json.loads(save.body or b"")
    assert body["formid"] == "PRD_PickMtrl"
    assert [m["FDescription"] for m in body["data"]["Model"]] == ["k0", "k1", "k2"]
    assert body["data"]["Model"][0]["FEntity"][0]["FActualQty"] == "2.5"  # exact, as text


def test_a_lost_session_logs_in_again_and_repeats_a_write_only_after_a_lookup(
    mocked: responses.RequestsMock,
) -> None:
    mocked.post(LOGIN, json=login_ok("S1"))
    mocked.post(SAVE, json=LOST)
    mocked.post(LOGIN, json=login_ok("S2"))
    mocked.post(QUERY, json=[["k0", "SCLLD000001", "A"]])  # k0 is there already
    mocked.post(SAVE, json=status(successes=[{"Id": 9, "Number": "SCLLD000009", "DIndex": 0}]))
    results = connector().send_batch(items("k0", "k1"))
    assert [(r.result.external_ref, r.result.already_present) for r in results if r.result] == [
        ("SCLLD000001", True),
        ("SCLLD000009", False),
    ]
    lookup = json.loads(mocked.calls[3].request.body or b"")["data"]
    assert lookup["FilterString"] == "FDescription in ('k0', 'k1')"
    again = json.loads(mocked.calls[4].request.body or b"")
    assert [m["FDescription"] for m in again["data"]["Model"]] == ["k1"]
    assert mocked.calls[4].request.headers["Cookie"] == "kdservice-sessionid=S2"


def test_a_refused_login_is_a_config_error(mocked: responses.RequestsMock) -> None:
    mocked.post(LOGIN, json={"LoginResultType": 0, "Message": "用户名或密码错误！"})
    with pytest.raises(ConfigError, match="用户名或密码错误"):
        connector().send(PICK, message_type="material_consumption", key="k")


def test_signed_calls_carry_the_api_auth_headers_and_no_login(
    mocked: responses.RequestsMock,
) -> None:
    mocked.post(QUERY, json=[])
    assert connector(auth="signed").lookup(message_type="production_output", key="k") is None
    sent = mocked.calls[0].request.headers
    assert sent["X-Api-Auth-Version"] == "2.0"
    assert sent["X-Kd-Appkey"] == kd.APP_ID
    assert sent["x-api-timestamp"] == sent["x-api-nonce"]
    assert "Cookie" not in sent


def test_an_error_inside_the_query_array_is_never_a_row(mocked: responses.RequestsMock) -> None:
    mocked.post(LOGIN, json=login_ok())
    bad = status(errors=[{"Message": "元数据中标识为FOops的字段不存在", "DIndex": 0}], MsgCode=9)
    mocked.post(QUERY, json=[[bad]])
    with pytest.raises(ConfigError, match="FOops"):
        list(connector().poll("production_order", None))
    mocked.post(QUERY, json=[[status(errors=[{"Message": "数据库忙", "DIndex": 0}], MsgCode=0)]])
    with pytest.raises(TransientError, match="数据库忙"):
        connector().lookup(message_type="production_output", key="k")


@pytest.mark.parametrize(
    ("answer", "content_type"),
    [
        ("<html><body>502 Bad Gateway from nginx</body></html>", "text/html"),
        ('{"Result": {"ResponseStatus": {"IsSuccess": tr', "application/json"),
        (json.dumps({"Result": {"ResponseStatus": {"Errors": []}}}), "application/json"),
        (json.dumps(status(successes=[{"Id": 1, "DIndex": 0}])), "application/json"),
        (json.dumps({"Message": "Object reference not set"}), "application/json"),
        ("[" * 100_000, "application/json"),  # found by fuzzing: a RecursionError escaped
    ],
    ids=[
        "html-page",
        "truncated-json",
        "no-IsSuccess",
        "success-without-number",
        "no-envelope",
        "nested-past-the-stack",
    ],
)
def test_malformed_save_answers_are_ambiguous_never_delivered(
    mocked: responses.RequestsMock, answer: str, content_type: str
) -> None:
    mocked.post(LOGIN, json=login_ok())
    mocked.post(SAVE, body=answer, content_type=content_type)
    with pytest.raises(AmbiguousDeliveryError):
        connector().send(PICK, message_type="material_consumption", key="k")


def test_malformed_query_answers_are_transient(mocked: responses.RequestsMock) -> None:
    mocked.post(LOGIN, json=login_ok())
    mocked.post(QUERY, body="<html>proxy error</html>", content_type="text/html")
    mocked.post(QUERY, json=[["only-one-column"]])
    with pytest.raises(TransientError, match="not JSON"):
        connector().lookup(message_type="production_output", key="k")
    with pytest.raises(TransientError, match="rows"):
        connector().lookup(message_type="production_output", key="k")


def test_a_query_row_with_no_integer_where_one_belongs_is_transient(
    mocked: responses.RequestsMock,
) -> None:
    """Found by fuzzing (tests/fuzz/test_erp_answers.py): a PRD_MO row whose FID is an object
    ended the poll in a ``TypeError``."""
    from connectors.kingdee import MO_FIELDS

    row: list[Any] = ["x"] * len(MO_FIELDS)
    row[MO_FIELDS.index("FID")] = {"Id": 1}
    mocked.post(LOGIN, json=login_ok())
    mocked.post(QUERY, json=[row])
    with pytest.raises(TransientError, match="where an integer belongs"):
        list(connector().poll("production_order", None))


def test_submit_and_audit_after_save_and_a_refused_audit_parks_with_the_draft(
    mocked: responses.RequestsMock,
) -> None:
    mocked.post(LOGIN, json=login_ok())
    mocked.post(
        SAVE,
        json=status(
            successes=[
                {"Id": 1, "Number": "SCLLD01", "DIndex": 0},
                {"Id": 2, "Number": "SCLLD02", "DIndex": 1},
            ]
        ),
    )
    mocked.post(SUBMIT, json=status(successes=[{"Number": "SCLLD01"}, {"Number": "SCLLD02"}]))
    mocked.post(
        AUDIT, json=status(errors=[{"Message": "出现负库存，库存更新不成功。", "DIndex": 1}])
    )
    results = connector(submit=True, audit=True).send_batch(items("a", "b"))
    assert results[0].ok
    assert isinstance(results[1].error, RejectedError)
    assert "SCLLD02" in str(results[1].error)
    assert "负库存" in str(results[1].error)
    assert json.loads(mocked.calls[3].request.body or b"")["data"]["Numbers"] == [
        "SCLLD01",
        "SCLLD02",
    ]


def test_the_key_field_is_configurable_per_form(mocked: responses.RequestsMock) -> None:
    mocked.post(LOGIN, json=login_ok())
    mocked.post(QUERY, json=[["k", "ZJDB000001", "C"]])
    found = connector().lookup(message_type="stock_transfer", key="k")
    assert found is not None
    assert found.external_ref == "ZJDB000001"
    assert json.loads(mocked.calls[1].request.body or b"")["data"]["FilterString"] == (
        "FNote in ('k')"
    )
    mocked.post(QUERY, json=[])
    connector(key_field="F_HUB_KEY").lookup(message_type="production_output", key="it's")
    sent = json.loads(mocked.calls[-1].request.body or b"")["data"]
    assert sent["FilterString"] == "F_HUB_KEY in ('it''s')"


# ---------------------------------------------------------------- against the simulator


class KingdeeHarness(Harness):
    """The connector against the Kingdee simulator over loopback, session login."""

    system = "kingdee"
    secrets: ClassVar[Mapping[str, str]] = {"USERNAME": kd.USERNAME, "PASSWORD": kd.PASSWORD}
    rejection_text = "【仓库】字段必录"
    auth: ClassVar[dict[str, Any]] = {"auth": "session", "login": "password"}

    def start(self) -> None:
        self.server: SimServer = kd.serve(seed_orders=5)
        self.sim: kd.FaultySimulator = self.server.simulator  # type: ignore[assignment]

    def stop(self) -> None:
        self.server.shutdown()

    def connector(self) -> KingdeeConnector:
        return kd.PlainDocumentsKingdee(
            self.system, kd.settings(self.server.url, batch_size=50, **self.auth)
        )

    def misbehave(
        self,
        *,
        reject: Collection[str] = (),
        fail_first: int = 0,
        drop_answer: Collection[str] = (),
        echo_secrets: bool = False,
    ) -> None:
        self.sim.reject.update(reject)
        kd.drop_keys(self.sim, drop_answer)
        self.sim.faults.update({"fail_next": fail_first, "match": "DynamicFormService"})
        self.sim.echo_secrets = echo_secrets

    def posts(self, key: str) -> int:
        return self.sim.posts(key)


class SignedKingdeeHarness(KingdeeHarness):
    """The same with signed ("API auth 2.0") requests."""

    secrets: ClassVar[Mapping[str, str]] = {
        "USERNAME": kd.USERNAME,
        "APP_ID": kd.APP_ID,
        "APP_SECRET": kd.APP_SECRET,
    }
    auth: ClassVar[dict[str, Any]] = {"auth": "signed"}


TestKingdeeConformance = conformance_tests(KingdeeHarness)
TestSignedKingdeeConformance = conformance_tests(SignedKingdeeHarness)


@pytest.mark.parametrize("login", ["password", "app_secret", "sign"])
def test_every_login_works_against_the_simulator(
    monkeypatch: pytest.MonkeyPatch, login: str
) -> None:
    kd.plant_secrets(monkeypatch)
    with kd.serve() as server:
        connector = KingdeeConnector("kingdee", kd.settings(server.url, login=login))
        assert "logged in" in connector.check()
        assert list(connector.snapshot()) == []
        connector.close()


def test_a_draft_found_after_a_lost_answer_is_submitted_and_audited(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kd.plant_secrets(monkeypatch)
    with kd.serve() as server:
        sim = server.simulator
        assert isinstance(sim, kd.FaultySimulator)
        connector = kd.PlainDocumentsKingdee(
            "kingdee", kd.settings(server.url, submit=True, audit=True)
        )
        kd.drop_keys(sim, ["mes:D-1/1"])
        document = {"order_id": "MO000001", "quantity": "3"}
        with pytest.raises(AmbiguousDeliveryError):
            connector.send(document, message_type="production_output", key="mes:D-1/1")
        (draft,) = sim.documents_view({"form": "PRD_INSTOCK"})["PRD_INSTOCK"]
        assert draft["FDocumentStatus"] == "A"  # saved; Submit and Audit never happened
        found = connector.lookup(message_type="production_output", key="mes:D-1/1")
        assert found is not None
        assert found.external_ref == draft["FBillNo"]
        (audited,) = sim.documents_view({"form": "PRD_INSTOCK"})["PRD_INSTOCK"]
        assert audited["FDocumentStatus"] == "C"
        assert sim.posts("mes:D-1/1") == 1
        connector.close()


def test_paging_keeps_bills_whole_and_resumes_strictly_after_time_and_id(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kd.plant_secrets(monkeypatch)
    with kd.serve() as server:
        sim = server.simulator
        assert isinstance(sim, kd.FaultySimulator)
        entry = {"FMaterialId": {"FNumber": "5.01.001"}, "FQty": 5, "FUnitId": {"FNumber": "Pcs"}}
        sim.upsert_orders(
            [
                {
                    "FBillNo": f"MO9{n:03d}",
                    "FPrdOrgId": {"FNumber": "100"},
                    "FTreeEntity": [entry, {**entry, "FQty": 7}],
                }
                for n in range(12)
            ]
        )
        same_second = "2026-11-20T08:00:00"
        for doc in sim.orders_view():  # every bill changed at the same moment
            sim._put("PRD_MO", {**doc, "FModifyDate": same_second})
        connector = KingdeeConnector("kingdee", kd.settings(server.url, page_size=5))
        records = list(connector.poll("production_order", None))
        seen = [(r.data["FBillNo"], r.data["FTreeEntity"]["FSeq"]) for r in records]
        assert len(seen) == 24
        assert len(set(seen)) == 24
        # a cursor moves past a bill only with its last entry
        assert records[0].cursor == ""
        assert json.loads(records[1].cursor or "")["modified"] == same_second
        resumed = list(connector.poll("production_order", records[7].cursor))
        assert [(r.data["FBillNo"], r.data["FTreeEntity"]["FSeq"]) for r in resumed] == seen[8:]
        assert list(connector.poll("production_order", records[-1].cursor)) == []
        connector.close()


def test_required_secrets_follow_the_authentication_mode() -> None:
    from connectors.kingdee import KingdeeConnector

    assert KingdeeConnector.required_secrets({}) == ["password", "username"]
    signed = KingdeeConnector.required_secrets({"auth": "signed"})
    assert signed == ["app_id", "app_secret", "username"]
    by_secret = KingdeeConnector.required_secrets({"login": "app_secret"})
    assert "password" not in by_secret
