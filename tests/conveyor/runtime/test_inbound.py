"""The inbound driver on a real ledger (SQLite and PostgreSQL): polls from the stored cursor with
the cursor saved in each batch's transaction, and receives acknowledged only after commit."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from connectors.fake import FakeConnector
from conveyor.config import Project
from conveyor.connector import Connector, RawRecord, ReceivedUnit
from conveyor.ledger import Ledger
from conveyor.mapping import MappingEngine
from conveyor.mapping.readers import read_raw
from conveyor.runtime.inbound import poll_stream, poll_streams, receive_units
from tests.support.counting_source import CountingSource, order
from tests.support.refusing_db import REFUSAL, refusing_messages

from .conftest import REPO, write_jsonl

DATA = REPO / "tests" / "data" / "mapping"


def stored(ledger: Ledger, source: str | None = None) -> int:
    """Messages in the ledger (of ``source``), counted in a connection of its own."""
    query = "SELECT count(*) FROM messages" + (" WHERE source = :source" if source else "")
    with ledger.engine.connect() as conn:
        return int(conn.execute(text(query), {"source": source}).scalar_one())


def fake(tmp_path: Path, name: str, records: list[Any]) -> FakeConnector:
    path = write_jsonl(tmp_path / f"{name}.jsonl", records)
    return FakeConnector(name, {"records_file": str(path)})


# ---------------------------------------------------------------------- polling
def test_two_polls_the_second_accepts_nothing(
    tmp_path: Path, ledger: Ledger, mapping_engine: MappingEngine
) -> None:
    connector = fake(tmp_path, "line1", [order("line1", n) for n in range(1, 6)])
    first = poll_stream(ledger, mapping_engine, connector, "production_order", batch_size=2)
    assert (first.records, first.counts["accepted"], first.cursor) == (5, 5, "5")
    assert first.cursor_before is None
    assert ledger.checkpoint("line1", "production_order") == "5"

    second = poll_stream(ledger, mapping_engine, connector, "production_order")
    assert (second.records, second.counts["accepted"], second.cursor) == (0, 0, "5")
    assert stored(ledger) == 5

    # every other stream of the fake reads the same file, filtered to its type: nothing there
    others = poll_streams(ledger, mapping_engine, connector, ["production_output"])
    assert [(r.stream, r.records) for r in others] == [("production_output", 0)]


def test_unmappable_records_are_parked_and_do_not_hold_the_cursor(
    tmp_path: Path, ledger: Ledger, mapping_engine: MappingEngine
) -> None:
    invalid = order("line1", 4)
    invalid["payload"]["quantity"] = "-3"
    records = [
        order("line1", 1),
        {"order": "not canonical"},  # line1 has no mapping: only canonical messages pass
        order("mes", 3),  # a connector speaks for its own system only
        invalid,  # canonical in shape, refused by the ledger (and parked there)
        order("line1", 5),
    ]
    connector = fake(tmp_path, "line1", records)
    result = poll_stream(ledger, mapping_engine, connector, "production_order")
    assert result.counts == {"accepted": 2, "duplicate": 0, "rejected": 1, "parked": 2}
    assert result.cursor == "5"
    parked = {p.line: p for p in ledger.parked_records()}
    assert sorted(parked) == [2, 3, 4]
    assert "no inbound mapping for production_order" in parked[2].reason
    assert "not a canonical message" in parked[2].reason
    assert "source 'mes'" in parked[3].reason
    assert (parked[4].stage, parked[4].system) == ("validate", "line1")

    again = poll_stream(ledger, mapping_engine, connector, "production_order")
    assert again.records == 0
    assert len(ledger.parked_records()) == 3


def test_records_are_mapped_with_the_systems_inbound_mapping(
    tmp_path: Path, ledger: Ledger, mapping_engine: MappingEngine
) -> None:
    rows = [raw.data for raw in read_raw(DATA / "mes_consumption.csv")]
    connector = fake(tmp_path, "mes", rows)
    result = poll_stream(ledger, mapping_engine, connector, "material_consumption")
    assert result.counts == {"accepted": 4, "duplicate": 0, "rejected": 0, "parked": 1}
    assert result.cursor == "5"
    (parked,) = ledger.parked_records(stage="map")
    assert "P-9999" in parked.reason
    (message,) = ledger.trace("C-1002/1")["messages"]
    assert message["mapping_version"] == mapping_engine.version("mes")


def test_a_failed_batch_leaves_the_cursor_of_the_last_committed_one(
    ledger: Ledger, mapping_engine: MappingEngine
) -> None:
    connector = CountingSource("line1", {"count": 250})
    with (
        refusing_messages(ledger.engine, key="PO-000150"),
        pytest.raises(DBAPIError, match=REFUSAL),
    ):
        poll_stream(ledger, mapping_engine, connector, "orders", batch_size=100)
    # the first batch and its cursor committed together; the second neither
    assert ledger.checkpoint("line1", "orders") == "100"
    assert stored(ledger) == 100

    result = poll_stream(ledger, mapping_engine, connector, "orders", batch_size=100)
    assert (result.cursor_before, result.records, result.counts["accepted"]) == ("100", 150, 150)
    assert result.cursor == "250"
    assert stored(ledger) == 250


# ---------------------------------------------------------------------- receiving
@dataclass
class Seen:
    """What the driver told a unit's source."""

    acked: bool = False
    failed: str | None = None


class Drop(Connector):
    """A receiving connector holding the units a test gives it."""

    kind = "drop"
    capabilities = frozenset({"receive"})

    def __init__(self, name: str, units: list[ReceivedUnit]) -> None:
        super().__init__(name)
        self.units = units

    def receive(self) -> Iterator[ReceivedUnit]:
        yield from self.units


def unit(
    name: str,
    records: Any,
    seen: Seen,
    *,
    content_hash: str | None = None,
    on_ack: Callable[[], None] | None = None,
) -> ReceivedUnit:
    def ack() -> None:
        if on_ack is not None:
            on_ack()
        seen.acked = True

    def fail(reason: str) -> None:
        seen.failed = reason

    return ReceivedUnit(name, records, ack=ack, fail=fail, content_hash=content_hash)


def raws(system: str, numbers: range) -> list[RawRecord]:
    return [RawRecord(order(system, n), file="drop.jsonl", line=n) for n in numbers]


def test_a_unit_is_acknowledged_only_after_its_records_are_committed(
    ledger: Ledger, mapping_engine: MappingEngine
) -> None:
    seen = Seen()
    at_ack: list[int] = []
    drop = Drop(
        "line1",
        [
            unit(
                "drop.jsonl",
                raws("line1", range(1, 4)),
                seen,
                on_ack=lambda: at_ack.append(
                    stored(ledger)  # another connection sees only what is committed
                ),
            )
        ],
    )
    result = receive_units(ledger, mapping_engine, drop)
    assert seen.acked
    assert seen.failed is None
    assert at_ack == [3]
    assert (result.units, result.acknowledged, result.records) == (1, 1, 3)
    assert result.counts["accepted"] == 3


def test_a_unit_whose_accept_fails_is_not_acknowledged(
    ledger: Ledger, mapping_engine: MappingEngine
) -> None:
    seen = Seen()
    drop = Drop("line1", [unit("drop.jsonl", raws("line1", range(1, 4)), seen, content_hash="h1")])
    with refusing_messages(ledger.engine):
        result = receive_units(ledger, mapping_engine, drop)
    assert not seen.acked
    assert seen.failed is None
    assert [e["unit"] for e in result.errors] == ["drop.jsonl"]
    assert REFUSAL in result.errors[0]["reason"]
    assert result.acknowledged == 0
    assert stored(ledger) == 0
    assert not ledger.has_received("line1", "h1")

    result = receive_units(ledger, mapping_engine, drop)
    assert seen.acked
    assert result.counts["accepted"] == 3
    assert ledger.has_received("line1", "h1")


def test_a_unit_already_taken_in_is_acknowledged_unread(
    ledger: Ledger, mapping_engine: MappingEngine
) -> None:
    first = Seen()
    receive_units(
        ledger,
        mapping_engine,
        Drop("line1", [unit("a.jsonl", raws("line1", range(1, 3)), first, content_hash="h2")]),
    )
    assert first.acked

    def unreadable() -> Iterator[RawRecord]:
        raise AssertionError("a unit already taken in must not be read")
        yield  # pragma: no cover

    again = Seen()
    result = receive_units(
        ledger,
        mapping_engine,
        Drop("line1", [unit("a-again.jsonl", unreadable(), again, content_hash="h2")]),
    )
    assert again.acked
    assert (result.already_taken, result.acknowledged, result.records) == (1, 1, 0)
    assert result.counts == {}
    assert stored(ledger) == 2
    assert ledger.checkpoints("line1") == {}  # the mark is no cursor


def test_a_unit_that_cannot_be_read_is_parked_and_failed(
    ledger: Ledger, mapping_engine: MappingEngine
) -> None:
    def broken() -> Iterator[RawRecord]:
        yield RawRecord(order("line1", 1), file="bad.csv", line=1)
        raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")

    seen = Seen()
    result = receive_units(
        ledger,
        mapping_engine,
        Drop("line1", [unit("bad.csv", broken(), seen, content_hash="h3")]),
    )
    assert not seen.acked
    assert seen.failed is not None
    assert "bad.csv: cannot be read" in seen.failed
    assert result.failed == 1
    (parked,) = ledger.parked_records()
    assert parked.stage == "parse"
    assert parked.file == "bad.csv"
    assert "invalid start byte" in parked.reason
    assert not ledger.has_received("line1", "h3")  # a corrected file with that hash may come
    assert stored(ledger) == 1  # what was read before the failure is kept (dedupe covers a retry)


def test_receiving_the_fake_accepts_canonical_records_of_its_own_system(
    tmp_path: Path, project: Project, ledger: Ledger, mapping_engine: MappingEngine
) -> None:
    connector = fake(tmp_path, "line1", [order("line1", 1), order("line1", 2)])
    result = receive_units(ledger, mapping_engine, connector)
    assert (result.units, result.acknowledged, result.counts["accepted"]) == (1, 1, 2)
    again = receive_units(ledger, mapping_engine, connector)
    assert again.counts["duplicate"] == 2
