"""What the ERP simulators share (``simulators._erp``): numbering while a batch of the state store
is open on another thread (seeding orders while postings are saved) never deadlocks."""

from __future__ import annotations

import threading
import time

from simulators._erp import Numbering, StateStore


def test_numbering_inside_a_store_batch_and_outside_it_at_once_does_not_deadlock() -> None:
    store = StateStore()
    numbering = Numbering(store)
    inside = threading.Event()
    values: list[int] = []

    def seeding() -> None:  # as seed_orders: a batch, numbers taken inside it
        with store.batch():
            inside.set()
            time.sleep(0.3)  # meanwhile the other thread asks for a number
            values.append(numbering.next_value("fid", 100001))

    def saving() -> None:  # as a save: a number, outside any batch
        assert inside.wait(5)
        values.append(numbering.next_value("fid", 100001))

    threads = [threading.Thread(target=f, daemon=True) for f in (seeding, saving)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert not any(thread.is_alive() for thread in threads), "deadlocked"
    assert sorted(values) == [100001, 100002]
