"""Group commit: requests handed over together are accepted in one transaction and each gets
exactly its own results, in arrival order (a later repeat is the earlier one's duplicate)."""

from __future__ import annotations

from conveyor.api.batcher import GroupCommit
from conveyor.ledger import Ledger
from tests.conveyor.api.conftest import output


def test_requests_get_their_own_results_and_keep_arrival_order(api_ledger: Ledger) -> None:
    accepter = GroupCommit(api_ledger)
    first = accepter.submit([output("B-1"), output("B-2")], [None, None])
    second = accepter.submit([output("B-2"), {"type": "nonsense"}], [None, None])
    third = accepter.submit([output("B-3")], [None])
    try:
        assert [r.status for r in first.result(timeout=30)] == ["accepted", "accepted"]
        assert [r.status for r in second.result(timeout=30)] == ["duplicate", "rejected"]
        assert [r.key for r in third.result(timeout=30)] == ["B-3"]
    finally:
        accepter.stop()
    assert len(api_ledger.positions()) == 1
    assert len(api_ledger.parked_records()) == 1
