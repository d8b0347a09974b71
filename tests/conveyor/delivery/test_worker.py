"""The delivery worker on every transport: exactly once, retries, parking, ordering, idempotency."""

from __future__ import annotations

import pytest

from tests.conveyor.delivery.conftest import Setup, output


def test_every_message_is_delivered_exactly_once_with_its_document_number(setup: Setup) -> None:
    setup.accept([output(i) for i in range(1, 41)])
    result = setup.run()
    counts = setup.target.counts()
    assert len(counts) == 40
    assert setup.target.duplicates() == {}
    assert result.counters["delivered"] == 40
    rows = setup.deliveries()
    assert {r.status for r in rows} == {"delivered"}
    assert all(r.external_ref and r.external_ref.startswith("DOC-") for r in rows)
    assert all(r.attempts == 1 for r in rows)
    document = setup.target.document("mes:GR-1/1")  # no outbound mapping: the canonical message
    assert document["payload"]["quantity"] == "1.5"
    assert document["key"] == "GR-1/1"


def test_a_target_failing_with_500_gets_the_message_after_retries(setup: Setup) -> None:
    setup.target.configure(fail_first=2)
    setup.accept([output(1), output(2)])
    result = setup.run()
    assert setup.target.counts() == {"mes:GR-1/1": 1, "mes:GR-2/1": 1}
    assert [r.attempts for r in setup.deliveries()] == [3, 3]
    assert result.counters["retried"] == 4
    assert {r.status for r in setup.deliveries()} == {"delivered"}


def test_a_business_error_parks_with_its_text_and_blocks_nothing_else(setup: Setup) -> None:
    setup.target.configure(reject={"mes:GR-2/*": 422})
    setup.accept([output(i) for i in range(1, 6)])
    setup.run()
    by_key = {r.id: r for r in setup.deliveries()}
    parked = [r for r in by_key.values() if r.status == "parked"]
    assert len(parked) == 1
    assert "HTTP 422" in (parked[0].last_error or "")
    assert "material is blocked" in (parked[0].last_error or "")
    assert parked[0].attempts == 1  # a business error is not retried
    assert sorted(setup.target.counts()) == ["mes:GR-1/1", "mes:GR-3/1", "mes:GR-4/1", "mes:GR-5/1"]


def test_retries_are_bounded_then_parked_with_the_last_error(setup: Setup) -> None:
    setup.target.configure(fail_first=100)
    setup.accept([output(1)])
    setup.run()
    (row,) = setup.deliveries()
    assert row.status == "parked"
    assert row.attempts == 4
    assert "gave up after 4 attempts" in (row.last_error or "")
    assert "HTTP 500" in (row.last_error or "")


def test_messages_of_one_order_arrive_in_acceptance_order(setup: Setup) -> None:
    # the first of the order fails twice: the later ones must wait for it, unrelated ones not
    setup.target.configure(fail_first=0)
    first = output(1, order="PO-7", key="A-1/1")
    later = [output(n, order="PO-7", key=f"A-{n}/1") for n in range(2, 8)]
    unrelated = [output(n, order=f"PO-X{n}", key=f"B-{n}/1") for n in range(1, 6)]
    setup.accept([first, *later[:3], *unrelated, *later[3:]])
    setup.target.configure(fail_first=2)
    setup.run()
    seen = setup.target.snapshot()["first_seen"]
    order_keys = [f"mes:A-{n}/1" for n in range(1, 8)]
    assert sorted(order_keys, key=lambda k: seen[k]) == order_keys
    assert setup.target.duplicates() == {}
    assert len(seen) == 12


def test_a_parked_message_holds_back_what_follows_it_until_replayed(setup: Setup) -> None:
    from conveyor.delivery.replay import replay_deliveries, select_parked

    setup.target.configure(reject={"mes:C-1/1": 422})
    original = output(1, order="PO-9", key="C-1/1")
    follow_up = output(2, order="PO-9", key="C-2/1")
    setup.accept([original, output(3), follow_up])
    setup.run()
    rows = {r.id: r for r in setup.deliveries()}
    first, unrelated, second = rows.values()
    assert first.status == "parked"
    assert unrelated.status == "delivered"  # not blocked
    assert second.status == "parked"
    assert second.blocked_by == first.id
    assert "held" in (second.last_error or "")
    assert "mes:C-2/1" not in setup.target.counts()

    setup.target.configure(reject={})  # the ERP's master data was fixed
    chosen = select_parked(setup.engine, ids=[first.id])
    assert chosen == [first.id, second.id]  # the held one comes along
    assert replay_deliveries(setup.engine, chosen).requeued == 2
    setup.run()
    seen = setup.target.snapshot()["first_seen"]
    assert seen["mes:C-1/1"] < seen["mes:C-2/1"]
    assert {r.status for r in setup.deliveries()} == {"delivered"}


def test_an_ambiguous_timeout_is_looked_up_not_posted_again(setup: Setup) -> None:
    setup.configure(erp={"timeout_s": 0.3})
    setup.target.configure(hang_keys="mes:GR-1/1", hang_s=0.8)
    setup.accept([output(1), output(2)])
    result = setup.run()
    assert setup.target.counts() == {"mes:GR-1/1": 1, "mes:GR-2/1": 1}
    row = setup.deliveries()[0]
    assert row.status == "delivered"
    assert row.attempts == 2
    assert row.external_ref == setup.target.lookup("mes:GR-1/1")
    assert result.counters["already_present"] == 1


def test_an_ambiguous_timeout_without_lookup_needs_a_check(setup: Setup) -> None:
    setup.configure(erp={"timeout_s": 0.3, "lookup_url": None})
    setup.target.configure(hang_keys="mes:GR-1/1", hang_s=0.8)
    setup.accept([output(1)])
    setup.run()
    (row,) = setup.deliveries()
    assert row.status == "needs_check"
    assert "cannot look documents up" in (row.last_error or "")
    assert setup.target.counts() == {"mes:GR-1/1": 1}


@pytest.mark.parametrize("header", ["Idempotency-Key"])
def test_targets_that_deduplicate_get_a_stable_idempotency_key(setup: Setup, header: str) -> None:
    from conveyor.delivery.idempotent import idempotency_key

    setup.configure(erp={"timeout_s": 0.3, "lookup_url": None, "idempotency_header": header})
    setup.target.configure(hang_keys="mes:GR-1/1", hang_s=0.8, idempotent=True)
    message = output(1)
    setup.accept([message])
    setup.run()
    (row,) = setup.deliveries()
    assert row.status == "delivered"  # re-sent with the same key: the target deduplicated
    assert setup.target.counts() == {"mes:GR-1/1": 1}
    assert setup.target.headers_seen["mes:GR-1/1"] == idempotency_key(message["message_id"], "erp")
