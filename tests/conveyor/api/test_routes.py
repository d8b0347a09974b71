"""The routes: messages in (single, array, mixed), ingest by format, stock, trace, parked,
replay, status, reconciliations and metrics — on SQLite and PostgreSQL."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator, Mapping
from typing import Any, BinaryIO

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from conveyor import formats
from conveyor.connector import RawRecord
from conveyor.ledger import Ledger
from conveyor.ledger.models import DeliveryRow, MessageRow
from tests.conveyor.api.conftest import auth, output


def test_one_message_is_accepted_then_a_duplicate_then_a_conflict(
    client: TestClient, tokens: dict[str, str]
) -> None:
    headers = auth(tokens["ingest"])
    message = output("GR-1/1")
    first = client.post("/v1/messages", json=message, headers=headers)
    assert first.status_code == 202
    assert first.json()["results"][0]["status"] == "accepted"
    assert first.json()["results"][0]["message_id"] == message["message_id"]
    again = client.post("/v1/messages", json=message, headers=headers)
    assert again.json()["results"][0]["status"] == "duplicate"
    other = client.post("/v1/messages", json=output("GR-1/1", quantity="49"), headers=headers)
    assert other.status_code == 202
    assert other.json()["results"][0]["status"] == "conflict"


def test_a_mixed_array_stores_the_valid_and_answers_422_with_the_bad_ones(
    client: TestClient, tokens: dict[str, str], api_ledger: Ledger
) -> None:
    batch = [output("GR-2/1"), output("GR-2/2", quantity="-5"), output("GR-2/3")]
    answer = client.post("/v1/messages", json=batch, headers=auth(tokens["ingest"]))
    assert answer.status_code == 422
    body = answer.json()
    assert [r["status"] for r in body["results"]] == ["accepted", "rejected", "accepted"]
    problem = body["results"][1]["errors"][0]
    assert problem["path"] == "$.payload.quantity"
    assert problem["rule"] == "pattern"
    assert problem["value"] == "-5"
    assert body["results"][1]["parked_id"] is not None
    with api_ledger.engine.connect() as conn:
        stored = conn.execute(select(func.count()).select_from(MessageRow.__table__)).scalar()
    assert stored == 2
    assert len(api_ledger.parked_records()) == 1


def test_quantities_stay_exact_decimals(client: TestClient, tokens: dict[str, str]) -> None:
    body = json.dumps(output("GR-3/1", quantity="0.1")).replace('"0.1"', "0.1")
    ingest = auth(tokens["ingest"])
    client.post("/v1/messages", content=body, headers=ingest)
    client.post("/v1/messages", json=output("GR-3/2", quantity="0.2"), headers=ingest)
    stock = client.get("/v1/stock", params={"material": "FG-5001"}, headers=auth(tokens["read"]))
    assert stock.json()["positions"][0]["quantity"] == "0.3"


def test_unreadable_and_too_deep_json_are_parked_with_their_rule(
    client: TestClient, tokens: dict[str, str], api_ledger: Ledger
) -> None:
    deep = "[" * 100 + "]" * 100
    answer = client.post("/v1/messages", content=deep, headers=auth(tokens["ingest"]))
    assert answer.status_code == 422
    assert answer.json()["results"][0]["errors"][0]["rule"] == "max_json_depth"
    broken = client.post("/v1/messages", content=b'{"type": ', headers=auth(tokens["ingest"]))
    assert broken.status_code == 422
    assert len(api_ledger.parked_records()) == 2
    empty = client.post("/v1/messages", content=b"  ", headers=auth(tokens["ingest"]))
    assert empty.status_code == 422


def test_stock_pages_filters_and_csv(client: TestClient, tokens: dict[str, str]) -> None:
    batch = [output(f"GR-4/{n}") for n in range(3)]
    for n, message in enumerate(batch):
        message["payload"]["material"] = f"FG-{n}"
    client.post("/v1/messages", json=batch, headers=auth(tokens["ingest"]))
    read = auth(tokens["read"])
    page = client.get("/v1/stock", params={"limit": 2}, headers=read).json()
    assert page["total"] == 3
    assert len(page["positions"]) == 2
    assert page["next_offset"] == 2
    rest = client.get("/v1/stock", params={"offset": 2, "limit": 2}, headers=read).json()
    assert [p["material"] for p in rest["positions"]] == ["FG-2"]
    assert rest["next_offset"] is None
    assert client.get("/v1/stock", params={"plant": "2000"}, headers=read).json()["total"] == 0
    text = client.get("/v1/stock", headers={**read, "Accept": "text/csv"})
    assert text.headers["content-type"].startswith("text/csv")
    lines = text.text.splitlines()
    assert lines[0] == "material,location,lot,quantity,uom,updated_at"
    assert lines[1].startswith("FG-0,1000/FG,FG261121-A,48,PCS,")


def test_trace_by_id_and_key_with_deliveries(client: TestClient, tokens: dict[str, str]) -> None:
    message = output("GR-5/1")
    client.post("/v1/messages", json=message, headers=auth(tokens["ingest"]))
    read = auth(tokens["read"])
    by_id = client.get(f"/v1/messages/{message['message_id']}", headers=read).json()
    by_key = client.get("/v1/messages/GR-5%2F1", headers=read).json()
    assert by_id["messages"] == by_key["messages"]
    traced = by_id["messages"][0]
    assert traced["status"] == "in_delivery"
    assert traced["deliveries"][0]["target"] == "erp"
    assert traced["stock_changes"][0]["quantity"] == "48"
    assert client.get("/v1/messages/nothing-here", headers=read).status_code == 404


def test_parked_deliveries_and_replay(
    client: TestClient, tokens: dict[str, str], api_ledger: Ledger
) -> None:
    client.post(
        "/v1/messages", json=[output("GR-6/1"), output("GR-6/2")], headers=auth(tokens["ingest"])
    )
    d = DeliveryRow.__table__
    with api_ledger.engine.begin() as conn:
        conn.execute(update(d).values(status="parked", last_error="erp said: period closed"))
    operate = auth(tokens["operate"])
    parked = client.get("/v1/parked", params={"reason": "PERIOD"}, headers=operate).json()
    assert len(parked["deliveries"]) == 2
    dry = client.post(
        "/v1/replay", json={"reason": "period closed", "dry_run": True}, headers=operate
    ).json()
    assert dry["selected"] == 2
    assert dry["requeued"] == 0
    assert len(client.get("/v1/parked", headers=operate).json()["deliveries"]) == 2
    done = client.post("/v1/replay", json={"ids": [dry["ids"][0]]}, headers=operate).json()
    assert done["requeued"] == 1
    assert len(client.get("/v1/parked", headers=operate).json()["deliveries"]) == 1
    nothing = client.post("/v1/replay", json={}, headers=operate)
    assert nothing.status_code == 422
    unknown = client.post("/v1/replay", json={"everything": True}, headers=operate)
    assert unknown.status_code == 422
    status = client.get("/v1/status", headers=operate).json()
    assert status["targets"]["erp"]["pending"] == 1
    assert status["targets"]["erp"]["parked"] == 1


@pytest.mark.parametrize("ids", [[2**63], [0], [-1], [10**30]])
def test_replay_of_an_id_no_delivery_can_have_is_422(
    client: TestClient, tokens: dict[str, str], ids: list[int]
) -> None:
    """Found by fuzzing (tests/fuzz/test_api_bodies.py): an id past BIGINT reached the database
    driver, which refused to send it (``OverflowError``), and the API answered 500."""
    answer = client.post("/v1/replay", json={"ids": ids}, headers=auth(tokens["operate"]))
    assert answer.status_code == 422
    assert "ids" in answer.text


def test_reconciliations_empty_and_unknown(client: TestClient, tokens: dict[str, str]) -> None:
    read = auth(tokens["read"])
    assert client.get("/v1/reconciliations", headers=read).json() == {"runs": []}
    assert client.get("/v1/reconciliations/nope", headers=read).status_code == 404


def test_metrics_count_what_was_offered(client: TestClient, tokens: dict[str, str]) -> None:
    batch = [output("GR-7/1"), output("GR-7/1"), output("GR-7/2", quantity="x")]
    batch[2]["source"] = "somebody-else"
    client.post("/v1/messages", json=batch, headers=auth(tokens["ingest"]))
    text = client.get("/metrics", headers=auth(tokens["read"])).text
    assert (
        'conveyor_messages_total{source="mes",status="accepted",type="production_output"} 1.0'
        in text
    )
    assert (
        'conveyor_messages_total{source="mes",status="duplicate",type="production_output"} 1.0'
        in text
    )
    assert (
        'conveyor_messages_total{source="other",status="rejected",type="production_output"} 1.0'
        in text
    )
    assert 'conveyor_deliveries{status="pending",target="erp"} 1.0' in text
    assert 'conveyor_queue_depth{target="erp"} 1.0' in text
    assert "conveyor_queue_oldest_pending_seconds" in text


def _lines_reader(
    stream: BinaryIO, *, name: str, settings: Mapping[str, Any]
) -> Iterator[RawRecord]:
    for number, line in enumerate(io.TextIOWrapper(stream, encoding="utf-8"), start=1):
        if line.strip():
            yield RawRecord(json.loads(line), file=name, line=number)


class _EntryPoint:
    def __init__(self, reader: Any) -> None:
        self.reader = reader

    def load(self) -> Any:
        return self.reader


def test_ingest_answers_415_for_a_format_not_installed(
    client: TestClient, tokens: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(formats, "available", lambda: {})
    answer = client.post(
        "/v1/ingest/mes/production_output",
        content=b"a,b\n1,2\n",
        headers={**auth(tokens["ingest"]), "Content-Type": "text/csv"},
    )
    assert answer.status_code == 415
    assert "'csv' is not installed" in answer.json()["detail"]
    odd = client.post(
        "/v1/ingest/mes/production_output",
        content=b"x",
        headers={**auth(tokens["ingest"]), "Content-Type": "image/png"},
    )
    assert odd.status_code == 415
    unknown = client.post(
        "/v1/ingest/nobody/production_output", content=b"x", headers=auth(tokens["ingest"])
    )
    assert unknown.status_code == 404


def test_ingest_takes_a_body_through_the_receive_path(
    client: TestClient, tokens: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(formats, "available", lambda: {"json": _EntryPoint(_lines_reader)})
    body = "\n".join(
        [json.dumps(output("GR-8/1")), json.dumps(output("GR-8/2", quantity="-1"))]
    ).encode()
    headers = {**auth(tokens["ingest"]), "Content-Type": "application/x-ndjson"}
    answer = client.post("/v1/ingest/mes/production_output", content=body, headers=headers)
    assert answer.status_code == 422
    data = answer.json()
    assert data["counts"]["accepted"] == 1
    assert data["counts"]["rejected"] == 1
    assert data["parked"][0]["line"] == 2
    assert "quantity" in data["parked"][0]["reason"]
    again = client.post("/v1/ingest/mes/production_output", content=body, headers=headers)
    assert again.json()["already_taken"] is True
    assert again.json()["records"] == 0
