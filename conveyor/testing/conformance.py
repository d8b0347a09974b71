"""The connector conformance suite: one set of tests every connector passes, against its simulator
(as the Singer SDK's standard tests; shaped like the transport contract suite).

A connector's test module describes how to run its connector against its simulator with a
``Harness`` and asks for the suite::

    from conveyor.testing.conformance import Harness, conformance_tests

    class RestHarness(Harness):
        ...

    TestRestConformance = conformance_tests(RestHarness)

The suite checks, skipping what the connector does not declare:

- declared capabilities match the methods, and ``supports()`` agrees;
- ``poll`` twice with the returned cursor yields nothing new;
- ``send`` then ``lookup`` finds the document; ``send_batch`` answers once per document;
- through the real delivery path (SQLite ledger + worker, one by one and in batches):
  a send whose answer is lost (the simulator commits and drops the answer) ends delivered
  exactly once; a business error parks with the target's text; a transient error is retried;
- planted secrets never appear in any error text (exception, stored reason);
- ``close()`` releases connections.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import pytest

from conveyor.connector import CAPABILITIES, BatchItem, Connector
from conveyor.errors import ConveyorError, RejectedError

KEY_PREFIX = "CF"


class Harness:
    """How the suite runs one connector against its simulator. Override what your connector
    needs; the defaults describe a system ``erp`` that takes ``production_output`` documents."""

    system: ClassVar[str] = "erp"
    """The system (and connection) name the connector is made with."""
    message_type: ClassVar[str] = "production_output"
    secrets: ClassVar[Mapping[str, str]] = {}
    """Secrets planted as ``CONVEYOR_<SYSTEM>_<FIELD>`` before the connector is made; the suite
    checks that none of them ever appears in an error text."""
    rejection_text: ClassVar[str] = "refused"
    """A piece of the simulator's text for a refused document (it must reach the parked reason)."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path

    def start(self) -> None:
        """Start the simulator."""

    def stop(self) -> None:
        """Stop the simulator."""

    def connector(self) -> Connector:
        """A new connector talking to the simulator (with the faults asked for so far)."""
        raise NotImplementedError

    def misbehave(
        self,
        *,
        reject: Collection[str] = (),
        fail_first: int = 0,
        drop_answer: Collection[str] = (),
        echo_secrets: bool = False,
    ) -> None:
        """Make the simulator refuse these keys (business error), fail the first ``fail_first``
        postings (transient), commit and then drop the answer for these keys (once each), and
        repeat the credentials it was given in its error texts."""
        raise NotImplementedError

    def posts(self, key: str) -> int:
        """How many times the simulator committed the document ``key``."""
        raise NotImplementedError

    def open_connections(self) -> int:
        """Connections from connectors to the simulator still open."""
        return 0


def _document(n: int) -> dict[str, Any]:
    return {"order_id": f"{KEY_PREFIX}-PO-{n}", "material": "M1", "quantity": "1.5", "uom": "KG"}


def _message(harness: Harness, n: int) -> dict[str, Any]:
    from conveyor.messages import new_message

    return new_message(
        harness.message_type,
        "mes",
        f"{KEY_PREFIX}-{n}/1",
        {**_document(n), "location": "1000/FG"},
    )


def _key(n: int) -> str:
    return f"mes:{KEY_PREFIX}-{n}/1"


class Delivered:
    """The outcome of running messages through the real delivery path."""

    def __init__(self, rows: list[Any], counters: dict[str, int]) -> None:
        self.rows = rows
        self.counters = counters

    def status(self, n: int) -> str:
        """The status of message ``n``'s delivery."""
        return str(self.row(n).status)

    def row(self, n: int) -> Any:
        """Message ``n``'s delivery row."""
        (row,) = [r for r in self.rows if r.key == f"{KEY_PREFIX}-{n}/1"]
        return row


def deliver(harness: Harness, numbers: list[int], *, batch: bool) -> Delivered:
    """Accept messages ``numbers`` into a fresh SQLite ledger and run a worker until idle, with
    the harness's connector as the only target (in batches when ``batch``)."""
    from sqlalchemy import select

    from conveyor.config import RetryPolicy
    from conveyor.delivery.worker import Worker, WorkerOptions
    from conveyor.ledger import Ledger
    from conveyor.ledger.db import make_engine
    from conveyor.ledger.models import DeliveryRow, MessageRow
    from conveyor.routing import Router

    path = harness.tmp_path / f"ledger-{time.monotonic_ns()}.db"
    engine = make_engine(f"sqlite:///{path}")
    router = Router.from_config(
        [{"type": harness.message_type, "source": "mes", "targets": [harness.system]}]
    )
    ledger = Ledger(engine, router)
    ledger.upgrade()
    results = ledger.accept_batch([_message(harness, n) for n in numbers])
    assert [r.status for r in results] == ["accepted"] * len(numbers), results
    connector = harness.connector()
    try:
        worker = Worker(
            engine,
            targets=[harness.system],
            policy=RetryPolicy(max_attempts=4, base_delay_s=0.05, max_delay_s=0.2),
            options=WorkerOptions(concurrency=1, batch_size=50, heartbeat_s=0.3, stale_after_s=5),
            connectors={harness.system: connector},
            batch_sizes={harness.system: 50 if batch else 1},
        )
        run = worker.run(until_idle=True, timeout=60)
        assert run.idle, run
        with engine.connect() as conn:
            rows = conn.execute(
                select(DeliveryRow.__table__, MessageRow.key).join(
                    MessageRow, MessageRow.id == DeliveryRow.message_pk
                )
            ).all()
        return Delivered(list(rows), run.counters)
    finally:
        connector.close()
        engine.dispose()


class ConnectorConformance:
    """The suite; ``conformance_tests(HarnessClass)`` makes the collected test class."""

    harness_class: ClassVar[type[Harness]] = Harness

    @pytest.fixture
    def harness(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
        """The connector's harness with its secrets planted and its simulator running."""
        from conveyor import redact
        from conveyor.runtime.secrets import env_name

        harness = self.harness_class(tmp_path)
        for name, value in harness.secrets.items():
            monkeypatch.setenv(env_name(harness.system, name), value)
        harness.start()
        try:
            yield harness
        finally:
            harness.stop()
            redact.forget_all()

    def _needs(self, connector: Connector, *capabilities: str) -> None:
        missing = [c for c in capabilities if not connector.supports(c)]
        if missing:
            pytest.skip(f"{connector.kind} does not declare {', '.join(missing)}")

    # ---- the contract itself
    def test_declared_capabilities_match_methods(self, harness: Harness) -> None:
        connector = harness.connector()
        cls = type(connector)
        for capability, method in CAPABILITIES.items():
            implemented = getattr(cls, method) is not getattr(Connector, method)
            if capability in cls.capabilities:
                assert implemented, f"{cls.__name__} declares {capability} without {method}()"
            assert connector.supports(capability) == (capability in connector.capabilities)
            if connector.supports(capability):
                assert capability in cls.capabilities  # an instance never claims more
        if connector.supports("poll"):
            assert connector.streams
        connector.close()

    def test_polling_twice_with_the_returned_cursor_yields_nothing_new(
        self, harness: Harness
    ) -> None:
        connector = harness.connector()
        self._needs(connector, "poll")
        for stream in connector.streams:
            first = list(connector.poll(stream.name, None))
            cursor = first[-1].cursor if first else None
            assert all(record.cursor is not None for record in first)
            assert list(connector.poll(stream.name, cursor)) == []
        connector.close()

    def test_send_then_lookup_finds_the_document(self, harness: Harness) -> None:
        connector = harness.connector()
        self._needs(connector, "send", "lookup")
        sent = connector.send(_document(1), message_type=harness.message_type, key=_key(1))
        found = connector.lookup(message_type=harness.message_type, key=_key(1))
        assert found is not None
        assert found.already_present
        assert found.external_ref == sent.external_ref
        assert connector.lookup(message_type=harness.message_type, key=_key(2)) is None
        assert harness.posts(_key(1)) == 1
        connector.close()

    def test_send_batch_answers_once_per_document_in_order(self, harness: Harness) -> None:
        self._batch_or_skip(harness, batch=True)
        harness.misbehave(reject=[_key(2)])
        connector = harness.connector()
        items = [BatchItem(_document(n), harness.message_type, _key(n)) for n in (1, 2, 3)]
        results = connector.send_batch(items)
        assert [r.key for r in results] == [_key(1), _key(2), _key(3)]
        assert [r.ok for r in results] == [True, False, True]
        assert isinstance(results[1].error, RejectedError)
        assert harness.posts(_key(1)) == harness.posts(_key(3)) == 1
        assert harness.posts(_key(2)) == 0
        connector.close()

    # ---- through the real delivery path
    @pytest.mark.parametrize("batch", [False, True], ids=["one-by-one", "batched"])
    def test_a_lost_answer_ends_delivered_exactly_once(self, harness: Harness, batch: bool) -> None:
        self._batch_or_skip(harness, batch)
        harness.misbehave(drop_answer=[_key(1)])
        outcome = deliver(harness, [1, 2, 3], batch=batch)
        assert {outcome.status(n) for n in (1, 2, 3)} == {"delivered"}
        assert [harness.posts(_key(n)) for n in (1, 2, 3)] == [1, 1, 1]
        assert outcome.row(1).attempts == 2  # looked up before anything was posted again

    @pytest.mark.parametrize("batch", [False, True], ids=["one-by-one", "batched"])
    def test_a_business_error_parks_with_the_targets_text(
        self, harness: Harness, batch: bool
    ) -> None:
        self._batch_or_skip(harness, batch)
        harness.misbehave(reject=[_key(2)])
        outcome = deliver(harness, [1, 2, 3], batch=batch)
        assert [outcome.status(n) for n in (1, 2, 3)] == ["delivered", "parked", "delivered"]
        assert harness.rejection_text in (outcome.row(2).last_error or "")
        assert outcome.row(2).attempts == 1
        assert harness.posts(_key(2)) == 0

    @pytest.mark.parametrize("batch", [False, True], ids=["one-by-one", "batched"])
    def test_a_transient_error_is_retried(self, harness: Harness, batch: bool) -> None:
        self._batch_or_skip(harness, batch)
        harness.misbehave(fail_first=1)
        outcome = deliver(harness, [1], batch=batch)
        assert outcome.status(1) == "delivered"
        assert outcome.row(1).attempts == 2
        assert harness.posts(_key(1)) == 1

    def test_secrets_never_appear_in_any_error_text(self, harness: Harness) -> None:
        if not harness.secrets:
            pytest.skip("the harness plants no secrets")
        harness.misbehave(reject=[_key(1)], echo_secrets=True)
        connector = harness.connector()
        self._needs(connector, "send")
        with pytest.raises(ConveyorError) as caught:
            connector.send(_document(1), message_type=harness.message_type, key=_key(1))
        connector.close()
        outcome = deliver(harness, [1], batch=False)
        texts = {"exception": str(caught.value), "parked reason": outcome.row(1).last_error or ""}
        assert harness.rejection_text in texts["parked reason"]
        for where, text in texts.items():
            for name, value in harness.secrets.items():
                assert value not in text, f"secret {name} in the {where}"

    def test_close_releases_connections(self, harness: Harness) -> None:
        connector = harness.connector()
        if connector.supports("send"):
            connector.send(_document(1), message_type=harness.message_type, key=_key(1))
        connector.close()
        deadline = time.monotonic() + 5
        while harness.open_connections() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert harness.open_connections() == 0

    def _batch_or_skip(self, harness: Harness, batch: bool) -> None:
        connector = harness.connector()
        try:
            self._needs(connector, "send_batch" if batch else "send")
        finally:
            connector.close()


def conformance_tests(harness_class: type[Harness]) -> type[ConnectorConformance]:
    """The conformance suite for the connector ``harness_class`` runs: assign the result to a
    ``Test…`` name in the connector's test module and pytest collects it."""
    return type(
        f"Conformance{harness_class.__name__}",
        (ConnectorConformance,),
        {"harness_class": harness_class, "__test__": True},
    )
