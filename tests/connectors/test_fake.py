"""The fake connector passes the conformance suite; its own faults and shared store."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping
from typing import Any, ClassVar

import pytest

from connectors.fake import FakeConnector
from conveyor.errors import AmbiguousDeliveryError
from conveyor.testing.conformance import Harness, conformance_tests


class FakeHarness(Harness):
    """The fake connector; its "simulator" is an in-process store of its own per test."""

    secrets: ClassVar[Mapping[str, str]] = {
        "USERNAME": "hub-user",
        "PASSWORD": "conformance-pass-91d2e6",
    }
    rejection_text = "refused"

    def start(self) -> None:
        self.settings: dict[str, Any] = {
            "store": f"conformance-{uuid.uuid4().hex}",
            "records": [{"type": "production_output", "n": n} for n in range(3)],
        }
        self.made: list[FakeConnector] = []

    def connector(self) -> FakeConnector:
        connector = FakeConnector(self.system, dict(self.settings))
        self.made.append(connector)
        return connector

    def misbehave(
        self,
        *,
        reject: Collection[str] = (),
        fail_first: int = 0,
        drop_answer: Collection[str] = (),
        echo_secrets: bool = False,
    ) -> None:
        self.settings.update(
            reject_keys=list(reject),
            fail_first=fail_first,
            drop_answer_keys=list(drop_answer),
            echo_secret=echo_secrets,
        )

    def posts(self, key: str) -> int:
        return self.connector().store.posts.get(key, 0)

    def open_connections(self) -> int:
        return sum(1 for connector in self.made if not connector.closed)


TestFakeConformance = conformance_tests(FakeHarness)


def test_connectors_with_one_store_see_one_target() -> None:
    first = FakeConnector("erp", {"store": "test-shared", "drop_answer_keys": ["k"]})
    second = FakeConnector("erp", {"store": "test-shared"})
    with pytest.raises(AmbiguousDeliveryError):  # kept, then the answer was lost
        first.send({"a": 1}, message_type="t", key="k")
    found = second.lookup(message_type="t", key="k")
    assert found is not None
    assert found.already_present
    assert FakeConnector("erp").lookup(message_type="t", key="k") is None  # no store: its own
