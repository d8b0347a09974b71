"""Batch sends on every transport: targets whose connector declares ``send_batch`` get many
documents per call, each with its own outcome; a lost answer is looked up, never re-posted."""

from __future__ import annotations

import time

from tests.conveyor.delivery.conftest import Setup, output


def test_a_batch_of_100_with_3_refused_delivers_97_and_parks_3_alone(setup: Setup) -> None:
    setup.configure(batch_size=100)
    refused = {"mes:GR-7/1", "mes:GR-42/1", "mes:GR-99/1"}
    setup.target.configure(reject=dict.fromkeys(refused, 422))
    setup.accept([output(i) for i in range(100)])
    result = setup.run(batch_size=100, concurrency=1)
    rows = setup.deliveries()
    delivered = [r for r in rows if r.status == "delivered"]
    parked = [r for r in rows if r.status == "parked"]
    assert (len(delivered), len(parked)) == (97, 3)
    assert result.counters["delivered"] == 97
    counts = setup.target.counts()
    assert len(counts) == 97
    assert set(counts.values()) == {1}  # nothing posted twice
    refs = {setup.target.lookup(k) for k in counts}
    assert {r.external_ref for r in delivered} == refs  # each with its own document number
    for row in parked:
        assert "HTTP 422" in (row.last_error or "")
        assert "material is blocked" in (row.last_error or "")
        assert row.attempts == 1
    assert not refused & set(counts)
    assert setup.target.stats()["requests"] <= 10  # batched, not one call per document


def test_a_batch_whose_answer_is_lost_is_looked_up_and_delivered_once(setup: Setup) -> None:
    setup.configure(batch_size=100)
    setup.target.configure(drop_keys="mes:GR-5/1")  # commit the whole batch, drop the answer
    setup.accept([output(i) for i in range(100)])
    setup.run(batch_size=100, concurrency=1)
    rows = setup.deliveries()
    assert {r.status for r in rows} == {"delivered"}
    counts = setup.target.counts()
    assert len(counts) == 100
    assert set(counts.values()) == {1}  # looked up, never re-posted
    assert setup.target.dropped == {"mes:GR-5/1"}
    assert {r.external_ref for r in rows} == {setup.target.lookup(k) for k in counts}
    assert any(r.attempts == 2 for r in rows)  # the lost batch was attempted again, by lookup


def test_a_transient_item_is_retried_alone(setup: Setup) -> None:
    setup.configure(batch_size=10)
    setup.target.configure(fail_first=1, fail_status=500)
    setup.accept([output(i) for i in range(5)])
    setup.run(batch_size=10, concurrency=1)
    assert {r.status for r in setup.deliveries()} == {"delivered"}
    assert set(setup.target.counts().values()) == {1}
    assert [r.attempts for r in setup.deliveries()] == [2] * 5


def test_retry_after_is_honoured_by_the_backoff(setup: Setup) -> None:
    setup.target.configure(fail_first=1, fail_status=503, retry_after="1")
    setup.accept([output(1)])
    started = time.time()
    setup.run()
    (row,) = setup.deliveries()
    assert row.status == "delivered"
    assert row.attempts == 2
    first_seen = setup.target.snapshot()["first_seen"]["mes:GR-1/1"]
    assert first_seen - started >= 0.95  # the backoff alone would have waited 0.05-0.1 s
