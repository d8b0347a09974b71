"""Group commit for ``POST /v1/messages``: requests that arrive while the ledger is busy with a
transaction are accepted together in the next one (one ``Ledger.accept_batch`` for all of
them), and each request gets back exactly its own results.

Many MES stations posting one message each would otherwise cost one database transaction per
request; with group commit the cost is one transaction per round, and a request waits at most
for the round in progress plus its own. Semantics stay those of posting one after the other in
arrival order: a key repeated by a later request of the same round is its ``duplicate`` (or
``conflict``), as it would be a moment later. If a combined round fails as a whole (a database
error), each request of it is tried again alone, so one request's failure is never another's.

Back pressure: what waits is bounded (``Admission``). When the ledger is slow (a lock held, a
slow disk) requests pile up behind the round in progress; once more than
``api.max_queued_messages`` messages wait, a new request is refused with ``Busy`` (the API
answers 503 with ``Retry-After``) instead of holding its body in memory without bound.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conveyor.ledger import AcceptResult, Ledger, Origin

log = logging.getLogger(__name__)


class Busy(Exception):
    """The ledger is behind: ``waiting`` items already wait (limit ``limit``); try again after
    ``retry_after_s`` seconds. The API answers it with 503 and ``Retry-After``."""

    def __init__(self, what: str, waiting: int, limit: int, retry_after_s: int) -> None:
        super().__init__(
            f"the ledger is busy: {waiting:,} {what} waiting (limit {limit:,}); "
            f"try again in {retry_after_s} s"
        )
        self.what = what
        self.waiting = waiting
        self.limit = limit
        self.retry_after_s = retry_after_s


class Admission:
    """A bound on how much waits for the ledger (messages, bodies): ``enter`` counts ``amount``
    in or raises ``Busy``, ``leave`` counts it out. One item is always let in when nothing
    waits, however large, so a request over the limit on its own still goes through."""

    def __init__(self, what: str, limit: int, retry_after_s: int = 2) -> None:
        self.what = what
        self.limit = limit
        self.retry_after_s = retry_after_s
        self.waiting = 0
        self._lock = threading.Lock()

    def check(self) -> None:
        """Raise ``Busy`` when the bound is already reached (before reading a body)."""
        with self._lock:
            if self.waiting >= self.limit:
                raise Busy(self.what, self.waiting, self.limit, self.retry_after_s)

    def enter(self, amount: int) -> None:
        """Count ``amount`` in, or raise ``Busy`` when that would pass the bound."""
        with self._lock:
            if self.waiting and self.waiting + amount > self.limit:
                raise Busy(self.what, self.waiting, self.limit, self.retry_after_s)
            self.waiting += amount

    def leave(self, amount: int) -> None:
        """Count ``amount`` out (its request was answered)."""
        with self._lock:
            self.waiting -= amount


@dataclass
class _Request:
    records: Sequence[Any]
    origins: Sequence[Origin | None]
    future: Future[list[AcceptResult]] = field(default_factory=Future)


class GroupCommit:
    """One thread that accepts what the requests hand it, a round at a time."""

    def __init__(
        self,
        ledger: Ledger,
        *,
        max_round: int = 5_000,
        max_queued: int = 10_000,
        retry_after_s: int = 2,
    ) -> None:
        self.ledger = ledger
        self.max_round = max_round
        self.admission = Admission("messages", max_queued, retry_after_s)
        """Messages submitted and not yet answered (queued, or in the round in progress)."""
        self._queue: list[_Request] = []
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopped = False

    def submit(
        self, records: Sequence[Any], origins: Sequence[Origin | None]
    ) -> Future[list[AcceptResult]]:
        """Queue ``records`` for the next round; the future holds their results, in order.
        Raises ``Busy`` when more than ``max_queued`` messages would wait."""
        request = _Request(records, origins)
        with self._cond:
            if self._stopped:
                raise RuntimeError("the API is shutting down")
            self.admission.enter(len(records))
            request.future.add_done_callback(lambda _: self.admission.leave(len(records)))
            self._queue.append(request)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="accept", daemon=True)
                self._thread.start()
            self._cond.notify()
        return request.future

    def stop(self) -> None:
        """Finish the queued rounds and end the thread."""
        with self._cond:
            self._stopped = True
            self._cond.notify()
            thread = self._thread
        if thread is not None:
            thread.join(timeout=60)

    def _take(self) -> list[_Request]:
        with self._cond:
            while not self._queue and not self._stopped:
                self._cond.wait()
            taken: list[_Request] = []
            size = 0
            while self._queue and (
                not taken or size + len(self._queue[0].records) <= self.max_round
            ):
                request = self._queue.pop(0)
                taken.append(request)
                size += len(request.records)
            return taken

    def _run(self) -> None:
        while True:
            taken = self._take()
            if not taken:
                return  # stopped and drained
            self._round(taken)

    def _round(self, taken: list[_Request]) -> None:
        if len(taken) == 1:
            self._alone(taken[0])
            return
        records = [r for request in taken for r in request.records]
        origins = [o for request in taken for o in request.origins]
        try:
            results = self.ledger.accept_batch(records, origins)
        except Exception as exc:  # one request may be the cause: each goes alone
            log.warning("a combined accept of %d requests failed (%s)", len(taken), exc)
            for request in taken:
                self._alone(request)
            return
        start = 0
        for request in taken:
            end = start + len(request.records)
            request.future.set_result(results[start:end])
            start = end

    def _alone(self, request: _Request) -> None:
        try:
            request.future.set_result(self.ledger.accept_batch(request.records, request.origins))
        except Exception as exc:
            request.future.set_exception(exc)
