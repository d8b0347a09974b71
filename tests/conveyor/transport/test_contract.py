"""The transport contract: one suite, run on the embedded transport (SQLite and PostgreSQL) and on
RabbitMQ (the real broker on 127.0.0.1)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from conveyor.transport import Job, Transport
from tests.conveyor.transport.conftest import TARGET

Make = Callable[..., Transport]
Enqueue = Callable[[Transport, int], list[int]]


def collect(transport: Transport, n: int, timeout: float = 10.0) -> list[Job]:
    """Fetch until ``n`` jobs arrived or ``timeout`` passed."""
    jobs: list[Job] = []
    deadline = time.monotonic() + timeout
    while len(jobs) < n and time.monotonic() < deadline:
        jobs.extend(transport.fetch(n - len(jobs), timeout=0.2))
    return jobs


def test_every_job_is_fetched_once_and_ack_settles_it(
    make_transport: Make, enqueue: Enqueue
) -> None:
    transport = make_transport()
    ids = enqueue(transport, 5)
    jobs = collect(transport, 5)
    assert sorted(j.delivery_id for j in jobs) == ids
    assert {j.target for j in jobs} == {TARGET}
    transport.ack(jobs)
    assert transport.fetch(10, timeout=0.5) == []


def packs(transport: Transport) -> int:
    """How many jobs one broker message of ``transport`` may carry (1: a message per job)."""
    return int(getattr(transport, "pack", 1))


def test_acks_in_any_order_settle_every_job(make_transport: Make, enqueue: Enqueue) -> None:
    transport = make_transport("first")
    ids = enqueue(transport, 12)
    jobs = sorted(collect(transport, 12), key=lambda j: j.delivery_id)
    assert [j.delivery_id for j in jobs] == ids
    transport.ack(jobs[6:])  # the later half first, as a second worker thread might
    transport.ack(jobs[1:6])
    time.sleep(0.2)
    transport.close()  # the first job was never settled: it comes back
    again = make_transport("second")
    if packs(transport) >= 12:
        # the 12 travelled in one broker message, which stays unacked until all 12 are
        # settled: all come back, the 11 settled ones as second copies (the ledger drops them)
        returned = collect(again, 12, timeout=5.0)
        assert sorted(j.delivery_id for j in returned) == ids
    else:
        returned = collect(again, 1, timeout=5.0)
        assert [j.delivery_id for j in returned] == ids[:1]
    assert again.fetch(12, timeout=0.5) == []
    again.ack(returned)


def test_fetch_waits_no_longer_than_its_timeout(make_transport: Make) -> None:
    transport = make_transport()
    started = time.monotonic()
    assert transport.fetch(10, timeout=0.3) == []
    assert 0.25 <= time.monotonic() - started < 2.0


def test_retry_later_brings_a_job_back_after_its_delay(
    make_transport: Make, enqueue: Enqueue
) -> None:
    transport = make_transport()
    (delivery_id,) = enqueue(transport, 1)
    (job,) = collect(transport, 1)
    asked = time.monotonic()
    transport.retry_later([(job, 0.5)])
    assert transport.fetch(1, timeout=0.15) == []  # not before its delay
    (again,) = collect(transport, 1, timeout=5.0)
    waited = time.monotonic() - asked
    assert again.delivery_id == delivery_id
    assert 0.4 <= waited < 4.0
    transport.ack([again])


def test_release_gives_a_job_back_at_once(make_transport: Make, enqueue: Enqueue) -> None:
    transport = make_transport()
    (delivery_id,) = enqueue(transport, 1)
    (job,) = collect(transport, 1)
    transport.release([job])
    (again,) = collect(transport, 1, timeout=3.0)
    assert again.delivery_id == delivery_id
    transport.ack([again])


def test_competing_consumers_share_without_overlap(make_transport: Make, enqueue: Enqueue) -> None:
    first, second = make_transport("consumer-a"), make_transport("consumer-b", prefetch=5)
    ids = enqueue(first, 40)
    got: dict[str, list[Job]] = {"a": [], "b": []}

    def consume(name: str, transport: Transport) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(got["a"]) + len(got["b"]) < 40:
            jobs = transport.fetch(3, timeout=0.1)
            got[name].extend(jobs)
            time.sleep(0.01)  # hold them a moment (unacked) like a worker would

    threads = [
        threading.Thread(target=consume, args=("a", first)),
        threading.Thread(target=consume, args=("b", second)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    a = {j.delivery_id for j in got["a"]}
    b = {j.delivery_id for j in got["b"]}
    assert not a & b
    assert sorted(a | b) == ids
    first.ack(got["a"])
    second.ack(got["b"])


def test_unsettled_jobs_return_when_their_consumer_goes(
    make_transport: Make, enqueue: Enqueue
) -> None:
    leaving = make_transport("leaving")
    ids = enqueue(leaving, 3)
    held = collect(leaving, 3)
    assert len(held) == 3
    leaving.close()  # never acked
    staying = make_transport("staying")
    again = collect(staying, 3, timeout=10.0)
    assert sorted(j.delivery_id for j in again) == ids
    staying.ack(again)


def test_start_is_idempotent_and_depths_count_ready_jobs(
    make_transport: Make, enqueue: Enqueue
) -> None:
    one = make_transport(consume=False)
    ids = enqueue(one, 3)
    make_transport(consume=False)  # declaring the same topology again changes nothing
    expected = 1 if packs(one) >= 3 else 3  # a packing broker counts its messages
    deadline = time.monotonic() + 5
    depth = one.depths([TARGET])[TARGET]
    while depth.ready + depth.held < expected and time.monotonic() < deadline:
        time.sleep(0.1)
        depth = one.depths([TARGET])[TARGET]
    assert len(ids) == 3
    assert depth.ready + depth.held == expected
    assert depth.parked == 0
