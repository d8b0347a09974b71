"""Fuzzing what the ERPs answer: Kingdee (WebAPI JSON), YonBIP and U8 (JSON envelopes), SAP (SOAP
through zeep) and a REST target. Each connector talks to its own simulator in process (through
``responses``), and the simulator's real answer is mutated on the way back: a JSON answer with
values of other types and keys missing, bytes cut or replaced, another HTTP status, or any bytes.
Sending, batches, look-ups, polls and snapshots may only fail with the project's typed errors;
a batch answers every item, each ok or with a typed error."""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
import responses
from hypothesis import given
from hypothesis import strategies as st

from conveyor.connector import BatchItem, Connector
from conveyor.errors import ConveyorError
from conveyor.testing.conformance import Harness, _document
from simulators._erp import SimRequest, SimResponse
from simulators.http_target import HttpTarget
from tests.connectors.test_kingdee import KingdeeHarness
from tests.connectors.test_rest import RestHarness
from tests.connectors.test_sap import SapHarness
from tests.connectors.test_yonbip import YonBIPHarness
from tests.connectors.test_yonyou_u8 import U8Harness
from tests.fuzz.harness import FUZZ_SLOW, target
from tests.fuzz.strategies import json_values, mutated, raw_bytes, replace_leaves

HARNESSES: dict[str, type[Harness]] = {
    "kingdee": KingdeeHarness,
    "yonbip": YonBIPHarness,
    "yonyou_u8": U8Harness,
    "sap": SapHarness,
    "rest": RestHarness,
}
STATUSES = [200, 200, 201, 400, 401, 403, 404, 408, 409, 422, 429, 500, 502, 503, 504]


class Mutating:
    """A ``responses`` callback: the simulator answers the request in process, then a drawn
    mutation changes the answer (WSDL and schema fetches stay as they are)."""

    def __init__(self, harness: Harness, data: st.DataObject) -> None:
        server = getattr(harness, "server", None) or getattr(harness, "target", None)
        self.simulator = getattr(server, "simulator", server)
        self.data = data

    def __call__(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], bytes]:
        parts = urlsplit(request.url or "")
        body = request.body or b""
        sim_request = SimRequest(
            method=request.method or "GET",
            path=parts.path,
            query=dict(parse_qsl(parts.query)),
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body.encode() if isinstance(body, str) else bytes(body),
            base_url=f"{parts.scheme}://{parts.netloc}",
        )
        if isinstance(self.simulator, HttpTarget):  # the REST target's own, simpler interface
            path = parts.path + (f"?{parts.query}" if parts.query else "")
            code, value, extra = self.simulator.handle(
                sim_request.method, path, dict(request.headers), sim_request.body
            )
            answer = SimResponse(code, json.dumps(value).encode(), "application/json")
            answer.headers.extend(extra.items())
        else:
            answer = self.simulator.handle(sim_request)
        headers = {"Content-Type": answer.content_type, **dict(answer.headers)}
        if request.method == "GET" and ("wsdl" in parts.query.lower() or "wsdl" in parts.path):
            return answer.status, headers, answer.body
        status, data = self.mutate(answer.status, answer.body)
        headers.pop("Content-Length", None)
        return status, headers, data

    def mutate(self, status: int, body: bytes) -> tuple[int, bytes]:
        draw = self.data.draw
        kind = draw(st.integers(0, 10), label="mutation")
        if kind <= 3:
            return status, body  # most answers stay true, so later steps are reached
        if kind == 10:  # nested past the parser's stack: the answer of a broken or hostile ERP
            return status, draw(st.sampled_from([b"[" * 100_000, b'{"a":' * 100_000]))
        if kind == 4:
            return draw(st.sampled_from(STATUSES), label="status"), body
        if kind == 5:
            return status, draw(raw_bytes, label="bytes")
        if kind == 6:
            return status, json.dumps(draw(json_values, label="json"), default=str).encode()
        if kind == 7:
            try:
                parsed = json.loads(body)
            except ValueError:
                return status, draw(mutated(body), label="mutated")
            changed = replace_leaves(parsed, draw)
            return status, json.dumps(changed, default=str).encode()
        return status, draw(mutated(body), label="mutated")


@pytest.fixture(params=sorted(HARNESSES))
def harness_class(request: pytest.FixtureRequest) -> Iterator[tuple[str, type[Harness]]]:
    """One connector's name and harness class, its secrets planted."""
    from conveyor import redact
    from conveyor.runtime.secrets import env_name

    made = HARNESSES[request.param]
    patch = pytest.MonkeyPatch()
    for name, value in made.secrets.items():
        patch.setenv(env_name(made.system, name), value)
    try:
        yield request.param, made
    finally:
        patch.undo()
        redact.forget_all()


@contextmanager
def started(harness_class: type[Harness], folder: Path) -> Iterator[Harness]:
    """A fresh simulator for one case: the same requests get the same answers when hypothesis
    replays a case."""
    made = harness_class(folder)
    made.start()
    try:
        yield made
    finally:
        made.stop()


def _exercise(name: str, connector: Connector, message_type: str) -> None:
    """Every verb the connector declares, each one case of the target."""
    n = 1
    key = f"mes:FZ-{n}/1"
    with target(name):
        connector.send(_document(n), message_type=message_type, key=key)
    if connector.supports("send_batch"):
        items = [
            BatchItem(_document(n * 100 + i), message_type, f"mes:FZ-{n}-{i}/1") for i in range(3)
        ]
        with target(name):
            results = connector.send_batch(items)
            assert len(results) == len(items)
            for result in results:
                assert result.ok or isinstance(result.error, ConveyorError), result
    if connector.supports("lookup"):
        with target(name):
            connector.lookup(message_type=message_type, key=key)
    if connector.supports("poll"):
        for stream in connector.streams:
            with target(name):
                list(itertools.islice(connector.poll(stream.name, None), 50))
    if connector.supports("snapshot"):
        with target(name):
            list(itertools.islice(connector.snapshot(), 200))


@FUZZ_SLOW
@given(data=st.data())
def test_erp_answers(
    harness_class: tuple[str, type[Harness]],
    tmp_path_factory: pytest.TempPathFactory,
    data: st.DataObject,
) -> None:
    kind, made = harness_class
    name = f"{kind} answers"
    with (
        started(made, tmp_path_factory.mktemp("erp")) as harness,
        responses.RequestsMock(assert_all_requests_are_fired=False) as mock,
    ):
        callback = Mutating(harness, data)
        for method in ("GET", "POST", "PUT"):
            mock.add_callback(method, re.compile(r"https?://.*"), callback=callback)
        connector = harness.connector()
        try:
            _exercise(name, connector, harness.message_type)
        finally:
            connector.close()
