"""Fuzzing the API's POST bodies through the FastAPI app (``TestClient``, which raises any
exception the app does not answer): ``/v1/messages`` (canonical JSON), ``/v1/ingest/{system}/
{type}`` (the system's own CSV, JSON, B2MML or IDoc-XML, by Content-Type) and ``/v1/replay``.
Every answer is one the API documents; none is a 500."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import example, given
from hypothesis import strategies as st

from conveyor.api import ApiSettings, create_app
from conveyor.api.tokens import TokenStore
from conveyor.config import Project
from conveyor.ledger import Ledger
from conveyor.ledger.db import make_engine
from conveyor.messages import MESSAGE_TYPES
from tests.connectors.test_idoc import TWO_ORDERS
from tests.fuzz.harness import FUZZ_SLOW, target
from tests.fuzz.strategies import json_values, mutated, raw_bytes, replace_leaves

REPO = Path(__file__).resolve().parents[2]
MESSAGES = (REPO / "samples" / "messages.jsonl").read_text(encoding="utf-8").splitlines()
CSV = (REPO / "samples" / "mes_consumption.csv").read_bytes()
B2MML = (REPO / "tests" / "data" / "b2mml" / "production_performance_v0600.xml").read_bytes()
DOCUMENTED = {200, 202, 400, 404, 413, 415, 422, 503}
"""The answers of the POST routes (``docs/api.md``); 503 is back pressure or a ledger error."""
CONTENT_TYPES = [
    "application/json",
    "application/x-ndjson",
    "text/csv",
    "text/csv; charset=gbk",
    "application/xml",
    "application/b2mml+xml",
    "application/idoc+xml",
    "text/plain",
    "",
    "application/json; charset=utf-16",
]


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, dict[str, str]]]:
    """The shipped project (mappings, master data) behind the app, on a SQLite ledger, with a
    token of each scope."""
    root = tmp_path_factory.mktemp("plant")
    shutil.copy(REPO / "conveyor.yaml", root / "conveyor.yaml")
    shutil.copytree(REPO / "mappings", root / "mappings")
    shutil.copytree(REPO / "master_data", root / "master_data")
    project = Project.load(root)
    engine = make_engine(f"sqlite:///{root / 'ledger.db'}")
    ledger = Ledger(engine, project.router)
    ledger.upgrade()
    store = TokenStore.of_project(root)
    headers = {
        scope: {"Authorization": f"Bearer {store.add(f'fuzz-{scope}', scope)}"}
        for scope in ("ingest", "operate")
    }
    app = create_app(project, ledger=ledger, settings=ApiSettings(max_body_bytes=256 * 1024))
    with TestClient(app) as client:
        yield client, {k: v["Authorization"] for k, v in headers.items()}
    engine.dispose()


def test_the_samples_are_accepted(api: tuple[TestClient, dict[str, str]]) -> None:
    """Unmutated input gets through, so the fuzz cases start from bodies the API takes."""
    client, tokens = api
    answer = client.post(
        "/v1/messages", content=MESSAGES[0].encode(), headers={"Authorization": tokens["ingest"]}
    )
    assert answer.status_code == 202, answer.text
    posted: dict[str, Any] = client.post(
        "/v1/ingest/mes/material_consumption",
        content=CSV,
        headers={"Authorization": tokens["ingest"], "Content-Type": "text/csv"},
    ).json()
    assert posted["records"] >= 1


@st.composite
def message_bodies(draw: st.DrawFn) -> bytes:
    """One message, an array, or JSON lines of the samples, changed in places or mutated; or any
    JSON value; or any bytes."""
    kind = draw(st.integers(0, 4))
    if kind == 0:
        return draw(raw_bytes)
    if kind == 1:
        return json.dumps(draw(json_values), default=str).encode()
    chosen = [
        json.loads(m) for m in draw(st.lists(st.sampled_from(MESSAGES), min_size=1, max_size=3))
    ]
    changed = [replace_leaves(m, draw) for m in chosen]
    text = json.dumps(changed[0] if len(changed) == 1 else changed, default=str)
    return draw(mutated(text)) if kind == 2 else text.encode()


@st.composite
def ingest_bodies(draw: st.DrawFn) -> tuple[str, bytes]:
    """A Content-Type and a body of the MES: its CSV, JSON, a B2MML or IDoc document, mutated,
    or any bytes (with any of the content types)."""
    content_type = draw(st.sampled_from(CONTENT_TYPES))
    sample = draw(st.sampled_from([CSV, B2MML, TWO_ORDERS, MESSAGES[0].encode()]))
    body = draw(st.one_of(mutated(sample), st.just(sample), raw_bytes))
    return content_type, body


def _post(client: TestClient, path: str, body: bytes, token: str, content_type: str) -> int:
    headers = {"Authorization": token}
    if content_type:
        headers["Content-Type"] = content_type
    with target(f"api {path.split('/')[2]}"):
        answer = client.post(path, content=body, headers=headers)
        assert answer.status_code in DOCUMENTED, (answer.status_code, answer.text[:500])
        answer.json()  # every answer of these routes is JSON, errors included
        return answer.status_code
    return 0


@FUZZ_SLOW
@given(message_bodies())
@example(b'{"type": "stock_adjustment", "payload": {"quantity": 1e999999}}')
@example(b"[" + b",".join([MESSAGES[0].encode()] * 3) + b"]")
def test_post_messages(api: tuple[TestClient, dict[str, str]], body: bytes) -> None:
    client, tokens = api
    _post(client, "/v1/messages", body, tokens["ingest"], "application/json")


@FUZZ_SLOW
@given(ingest_bodies(), st.sampled_from(sorted(MESSAGE_TYPES)))
@example(("text/csv", CSV), "material_consumption")
@example(
    ("application/xml", b"<!DOCTYPE x [<!ENTITY e SYSTEM 'file:///etc/passwd'>]><x>&e;</x>"),
    "production_output",
)
def test_post_ingest(
    api: tuple[TestClient, dict[str, str]], posted: tuple[str, bytes], message_type: str
) -> None:
    client, tokens = api
    content_type, body = posted
    _post(client, f"/v1/ingest/mes/{message_type}", body, tokens["ingest"], content_type)


replay_requests = st.fixed_dictionaries(
    {},
    optional={
        "ids": st.one_of(st.lists(st.integers(-(2**70), 2**70), max_size=3), json_values),
        "target": st.one_of(st.text(max_size=10), json_values),
        "reason": st.one_of(st.text(max_size=10), json_values),
        "all": st.one_of(st.booleans(), json_values),
        "dry_run": st.one_of(st.just(True), json_values),
        "limit": json_values,
    },
)


@FUZZ_SLOW
@given(st.one_of(replay_requests.map(lambda d: json.dumps(d, default=str).encode()), raw_bytes))
@example(b'{"ids": [99999999999999999999999], "dry_run": true}')
def test_post_replay(api: tuple[TestClient, dict[str, str]], body: bytes) -> None:
    client, tokens = api
    _post(client, "/v1/replay", body, tokens["operate"], "application/json")
