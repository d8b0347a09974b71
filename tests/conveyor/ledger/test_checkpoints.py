"""Checkpoints on SQLite and PostgreSQL: saved with the batch they cover (one transaction), listed,
cleared, and received units marked by content hash."""

from __future__ import annotations

import pytest

from conveyor.ledger import Checkpoint, Ledger
from conveyor.ledger.core import RECEIVED_PREFIX, received_mark
from tests.support.counting_source import order


def test_a_checkpoint_is_saved_with_its_batch(ledger: Ledger) -> None:
    results = ledger.accept_batch(
        [order("erp", 1), order("erp", 2)], checkpoint=Checkpoint("erp", "orders", "2")
    )
    assert [r.status for r in results] == ["accepted", "accepted"]
    assert ledger.checkpoint("erp", "orders") == "2"
    # an empty batch still moves the cursor (everything in it was parked, say)
    ledger.accept_batch([], checkpoint=Checkpoint("erp", "orders", "5"))
    assert ledger.checkpoint("erp", "orders") == "5"


def test_a_rolled_back_batch_takes_its_checkpoint_with_it(ledger: Ledger) -> None:
    class Crash(Exception):
        pass

    def crash_after_writing() -> None:
        with ledger.engine.begin() as conn:
            ledger.park(stage="map", reason="no such material", record={"x": 1}, conn=conn)
            ledger.accept_batch(
                [order("erp", 1)], checkpoint=Checkpoint("erp", "orders", "1"), conn=conn
            )
            raise Crash

    with pytest.raises(Crash):
        crash_after_writing()
    assert ledger.checkpoint("erp", "orders") is None
    assert ledger.trace("PO-000001")["messages"] == []
    assert ledger.parked_records() == []


def test_listing_and_clearing_leave_received_marks_alone(ledger: Ledger) -> None:
    ledger.save_checkpoint("erp", "orders", "10")
    ledger.save_checkpoint("erp", "stock", "2026-11-21")
    ledger.save_checkpoint("wms", "moves", "7")
    mark = received_mark("erp", "sha256:abc", "drop/a.csv")
    ledger.accept_batch([], checkpoint=mark)
    assert ledger.has_received("erp", "sha256:abc")
    assert not ledger.has_received("erp", "sha256:abd")
    assert not ledger.has_received("wms", "sha256:abc")
    assert ledger.checkpoints("erp") == {"orders": "10", "stock": "2026-11-21"}

    assert ledger.clear_checkpoint("erp", "orders") == 1
    assert ledger.checkpoints("erp") == {"stock": "2026-11-21"}
    assert ledger.clear_checkpoint("erp") == 1
    assert ledger.checkpoints("erp") == {}
    assert ledger.has_received("erp", "sha256:abc")
    assert ledger.checkpoint("wms", "moves") == "7"


def test_a_long_hash_still_fits_its_mark(ledger: Ledger) -> None:
    long_hash = "x" * 300
    mark = received_mark("erp", long_hash, "big.xml")
    assert mark.stream.startswith(RECEIVED_PREFIX)
    assert len(mark.stream) <= 100
    ledger.accept_batch([], checkpoint=mark)
    assert ledger.has_received("erp", long_hash)
