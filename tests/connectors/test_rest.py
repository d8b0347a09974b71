"""The REST connector: what it posts (one document, or a batch as one array), how it reads the
answers, lookups, auth and registration — with ``responses`` standing in for the target — and
the same over a real socket against the ``http-target`` simulator."""

from __future__ import annotations

import base64
import json
from collections.abc import Collection, Iterator, Mapping
from decimal import Decimal
from typing import ClassVar

import pytest
import responses

from connectors.http import RestConnector
from conveyor.connector import BatchItem
from conveyor.errors import (
    AmbiguousDeliveryError,
    ConfigError,
    RejectedError,
    TransientError,
    is_transient,
)
from conveyor.runtime import registry
from conveyor.testing.conformance import Harness, conformance_tests
from simulators.http_target import HttpTarget

BASE = "http://erp.example"


def rest(**settings: object) -> RestConnector:
    return RestConnector("erp", {"url": f"{BASE}/api/documents", **settings})


@pytest.fixture
def mocked() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock() as mock:
        yield mock


def test_send_posts_json_with_the_key_and_returns_the_document_number(
    mocked: responses.RequestsMock,
) -> None:
    mocked.post(f"{BASE}/api/documents", status=201, json={"data": {"number": "4900001234"}})
    result = rest(ref_field="data.number").send(
        {"material": "M1", "quantity": Decimal("2.500")},
        message_type="production_output",
        key="mes:GR-1/1",
    )
    assert (result.external_ref, result.already_present) == ("4900001234", False)
    call = mocked.calls[0].request
    assert json.loads(call.body or b"") == {"material": "M1", "quantity": "2.5"}
    assert call.headers["X-Conveyor-Key"] == "mes:GR-1/1"
    assert call.headers["Content-Type"] == "application/json"
    assert "Idempotency-Key" not in call.headers


def test_the_message_type_fills_the_url_and_put_is_honoured(
    mocked: responses.RequestsMock,
) -> None:
    mocked.put(f"{BASE}/api/stock_transfer?v=2", json={"id": "T1"})
    connector = RestConnector("erp", {"url": f"{BASE}/api/{{message_type}}?v=2", "method": "PUT"})
    assert connector.send({}, message_type="stock_transfer", key="k").external_ref == "T1"


def test_location_header_is_the_reference_when_the_body_has_none(
    mocked: responses.RequestsMock,
) -> None:
    mocked.post(f"{BASE}/api/documents", status=201, headers={"Location": "/documents/77"})
    assert rest().send({}, message_type="t", key="k").external_ref == "/documents/77"


@pytest.mark.parametrize(("status", "ambiguous"), [(429, False), (500, False), (502, True)])
def test_server_errors_are_transient_and_gateway_errors_ambiguous(
    mocked: responses.RequestsMock, status: int, ambiguous: bool
) -> None:
    mocked.post(f"{BASE}/api/documents", status=status, body="busy")
    with pytest.raises(TransientError, match=f"HTTP {status}: busy") as caught:
        rest().send({}, message_type="t", key="k")
    assert isinstance(caught.value, AmbiguousDeliveryError) is ambiguous


def test_a_business_error_is_rejected_with_the_response_text(
    mocked: responses.RequestsMock,
) -> None:
    mocked.post(f"{BASE}/api/documents", status=422, json={"message": "物料 M1 已冻结 (blocked)"})
    with pytest.raises(RejectedError, match="HTTP 422") as caught:
        rest().send({}, message_type="t", key="k")
    assert "blocked" in str(caught.value)
    assert not is_transient(caught.value)


def test_lookup_finds_or_not_and_declares_the_capability(mocked: responses.RequestsMock) -> None:
    plain = rest()
    assert not plain.supports("lookup")
    with pytest.raises(NotImplementedError):
        plain.lookup(message_type="t", key="k")
    looking = rest(lookup_url=f"{BASE}/api/documents?key={{key}}")
    assert looking.supports("lookup")
    url = f"{BASE}/api/documents"
    mocked.get(url, json={"id": "D1"}, match=[responses.matchers.query_param_matcher({"key": "a"})])
    mocked.get(url, status=404, match=[responses.matchers.query_param_matcher({"key": "b"})])
    mocked.get(url, status=503, match=[responses.matchers.query_param_matcher({"key": "c"})])
    found = looking.lookup(message_type="t", key="a")
    assert found is not None
    assert (found.external_ref, found.already_present) == ("D1", True)
    assert looking.lookup(message_type="t", key="b") is None
    with pytest.raises(TransientError, match="503"):
        looking.lookup(message_type="t", key="c")


def test_the_key_is_quoted_into_the_lookup_url(mocked: responses.RequestsMock) -> None:
    mocked.get(f"{BASE}/api/documents/mes%3AGR-1%2F1", json={"id": "D9"})
    found = rest(lookup_url=f"{BASE}/api/documents/{{key}}").lookup(
        message_type="t", key="mes:GR-1/1"
    )
    assert found is not None
    assert found.external_ref == "D9"


def test_idempotency_key_is_sent_only_to_targets_that_take_it(
    mocked: responses.RequestsMock,
) -> None:
    mocked.post(f"{BASE}/api/documents", json={"id": "D"})
    deduping = rest(idempotency_header="resubmitCheckKey")
    assert deduping.supports("idempotency_key")
    assert not rest().supports("idempotency_key")
    deduping.send({}, message_type="t", key="k", idempotency_key="abc")
    assert mocked.calls[0].request.headers["resubmitCheckKey"] == "abc"


def test_bearer_token_comes_from_the_environment(
    mocked: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigError, match="TOKEN"):
        rest(auth="bearer").send({}, message_type="t", key="k")
    assert len(mocked.calls) == 0  # nothing went out without the credentials
    mocked.post(f"{BASE}/api/documents", json={"id": "D"})
    monkeypatch.setenv("CONVEYOR_ERP_TOKEN", "s3cret")
    rest(auth="bearer", headers={"X-Site": "1000"}).send({}, message_type="t", key="k")
    sent = mocked.calls[0].request.headers
    assert (sent["Authorization"], sent["X-Site"]) == ("Bearer s3cret", "1000")


def test_basic_auth_comes_from_the_environment(
    mocked: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigError, match="USERNAME"):
        rest(auth="basic").send({}, message_type="t", key="k")
    mocked.post(f"{BASE}/api/documents", json={"id": "D"})
    monkeypatch.setenv("CONVEYOR_ERP_USERNAME", "hub")
    monkeypatch.setenv("CONVEYOR_ERP_PASSWORD", "pw")
    rest(auth="basic").send({}, message_type="t", key="k")
    expected = "Basic " + base64.b64encode(b"hub:pw").decode()
    assert mocked.calls[0].request.headers["Authorization"] == expected


def test_header_values_that_could_split_the_request_are_refused() -> None:
    with pytest.raises(ValueError, match="X-Conveyor-Key"):
        rest().send({}, message_type="t", key="k\r\nX-Evil: 1")
    with pytest.raises(ValueError, match="header name"):
        rest(headers={"Bad Name": "x"}).send({}, message_type="t", key="k")


def test_settings_are_validated_and_the_entry_point_is_registered() -> None:
    with pytest.raises(ConfigError, match="url"):
        RestConnector("erp", {})
    with pytest.raises(ConfigError):
        RestConnector("erp", {"url": "ftp://nope"})
    with pytest.raises(ConfigError, match="secrets"):
        RestConnector("erp", {"url": f"{BASE}/d", "token": "in-the-yaml"})
    assert registry.load("rest") is RestConnector


def items(*keys: str) -> list[BatchItem]:
    return [BatchItem({"n": k}, "production_output", k) for k in keys]


def test_a_batch_is_one_array_answered_per_document(mocked: responses.RequestsMock) -> None:
    mocked.post(
        f"{BASE}/api/batch/production_output",
        json=[
            {"key": "b", "status": 422, "error": "material blocked"},
            {"key": "a", "id": "D1"},
            {"key": "c", "status": 503, "error": "try later"},
        ],
    )
    connector = rest(batch_url=f"{BASE}/api/batch/{{message_type}}")
    assert connector.supports("send_batch")
    assert not rest().supports("send_batch")
    a, b, c, d = connector.send_batch(items("a", "b", "c", "d"))
    assert a.ok
    assert a.result is not None
    assert a.result.external_ref == "D1"
    assert isinstance(b.error, RejectedError)
    assert "material blocked" in str(b.error)
    assert isinstance(c.error, TransientError)
    assert not isinstance(c.error, AmbiguousDeliveryError)
    assert isinstance(d.error, AmbiguousDeliveryError)  # not answered for: look it up first
    body = json.loads(mocked.calls[0].request.body or b"")
    assert body[0] == {"key": "a", "document": {"n": "a"}}


def test_a_batch_whose_answer_is_not_a_list_is_ambiguous(mocked: responses.RequestsMock) -> None:
    mocked.post(f"{BASE}/batch", json={"ok": True})
    with pytest.raises(AmbiguousDeliveryError, match="not a list"):
        rest(batch_url=f"{BASE}/batch").send_batch(items("a"))


def test_over_a_real_socket_against_the_simulator() -> None:
    with HttpTarget() as target:
        target.configure(reject={"bad-*": 422}, hang_keys="slow", hang_s=0.6)
        connector = RestConnector(
            "erp",
            {
                "url": f"{target.url}/documents",
                "batch_url": f"{target.url}/documents",
                "lookup_url": f"{target.url}/documents?key={{key}}",
                "timeout_s": 0.3,
            },
        )
        assert connector.send({"a": 1}, message_type="t", key="k1").external_ref == "DOC-0000001"
        results = connector.send_batch(items("k2", "bad-1", "k3"))
        assert [r.ok for r in results] == [True, False, True]
        assert "material is blocked" in str(results[1].error)
        with pytest.raises(AmbiguousDeliveryError):  # committed, answered too late
            connector.send({}, message_type="t", key="slow")
        found = connector.lookup(message_type="t", key="slow")
        assert found is not None
        assert found.external_ref == target.lookup("slow")
        assert connector.lookup(message_type="t", key="bad-1") is None
        assert target.counts() == {"k1": 1, "k2": 1, "k3": 1, "slow": 1}
        connector.close()


class RestHarness(Harness):
    """The REST connector against the ``http-target`` simulator, with bearer auth."""

    secrets: ClassVar[Mapping[str, str]] = {"TOKEN": "conformance-token-7f3a9c51"}
    rejection_text = "material is blocked"

    def start(self) -> None:
        self.target = HttpTarget().start()

    def stop(self) -> None:
        self.target.stop()

    def connector(self) -> RestConnector:
        url = self.target.url
        return RestConnector(
            self.system,
            {
                "url": f"{url}/documents",
                "batch_url": f"{url}/documents",
                "lookup_url": f"{url}/documents?key={{key}}",
                "timeout_s": 2,
                "auth": "bearer",
            },
        )

    def misbehave(
        self,
        *,
        reject: Collection[str] = (),
        fail_first: int = 0,
        drop_answer: Collection[str] = (),
        echo_secrets: bool = False,
    ) -> None:
        self.target.configure(
            reject=dict.fromkeys(reject, 422),
            fail_first=fail_first,
            drop_keys=list(drop_answer),
            echo_headers=echo_secrets,
        )

    def posts(self, key: str) -> int:
        return self.target.counts().get(key, 0)

    def open_connections(self) -> int:
        return self.target.open_connections()


TestRestConformance = conformance_tests(RestHarness)
