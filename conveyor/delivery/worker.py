"""The delivery worker: claim in the ledger, map outbound, ``connector.send``, record, ack.

For each batch of jobs from the transport, ``DeliveryCore.process``:

1. claims the deliveries in one ``UPDATE … RETURNING`` (``batch_sql``; on PostgreSQL it returns
   their messages too) — only those still pending, due retries, or in flight with a worker that
   died (taken over as *ambiguous*: looked up before re-posting), and only when no earlier delivery
   with the same ordering key is still open (``ordering``); attempts are counted here, in the
   ledger, before anything is sent, not from the broker;
2. for the rest says why: already settled (drop the copy), held by a live worker or waiting for an
   earlier delivery (come back later), or behind a parked one (parked too, ``blocked_by``);
3. maps each claimed message outbound (``MappingEngine`` when the target has an outbound mapping for
   the type, else the canonical message itself) and delivers it idempotently (``idempotent``):
   to a target whose connector declares ``send_batch``, up to the system's ``batch_size``
   documents in one call, each with its own outcome (a refused document parks alone; a batch
   whose answer was lost is ambiguous for every document in it, each looked up before it is
   posted again); to other targets one ``send`` per document;
4. records the outcomes with one statement per kind (``batch_sql``): ``delivered`` with the
   external document number and the notes of the target's answer, a lookup's too (``notes``:
   SAP's warnings, …), never set back to another status;
   ``retrying`` after a transient error, with exponential backoff and jitter (``retry``), never
   sooner than a ``Retry-After`` the target asked for, until
   ``RetryPolicy.max_attempts``; ``parked`` with the full reason after a terminal error or when the
   retries are spent; ``needs_check`` when nobody can tell whether the target has the document.

A target that does not answer at all (refused, or silent until the timeout) is left alone for a
growing backoff (``breaker``): its deliveries are given back untried meanwhile, so one target
down does not hold delivery threads — and the other targets' deliveries — behind its timeouts.

``Worker`` runs that with a pool of threads per process (competing consumers: run as many
processes as you like), the outbox relay for broker transports, and a heartbeat; with
``until_idle`` it stops once no delivery of its targets is pending, in flight or retrying.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Engine, Table, and_, case, func, or_, select, true, update

from conveyor import events
from conveyor.config import RetryPolicy
from conveyor.delivery.batch_sql import BatchStatements, Recorded
from conveyor.delivery.breaker import TargetBreaker
from conveyor.delivery.idempotent import business_key, deliver, idempotency_key, look_up_first
from conveyor.delivery.notes import delivery_notes, encode_notes
from conveyor.delivery.ordering import FINAL, blocker_of
from conveyor.errors import (
    AmbiguousDeliveryError,
    ConfigError,
    NeedsCheckError,
    TransientError,
    is_transient,
)
from conveyor.ledger.models import DeliveryRow, MessageRow, utcnow
from conveyor.redact import safe_text
from conveyor.retry import HOLD_DELAY_S, backoff_delay
from conveyor.transport.base import Job, Transport
from conveyor.transport.liveness import (
    DEFAULT_INTERVAL_S,
    DEFAULT_STALE_AFTER_S,
    Liveness,
    alive_clause,
    new_worker_id,
)

if TYPE_CHECKING:
    from conveyor.config import Project
    from conveyor.connector import BatchItem, Connector, SendResult

log = logging.getLogger(__name__)

deliveries_t = cast(Table, DeliveryRow.__table__)
messages_t = cast(Table, MessageRow.__table__)
OPEN = ("pending", "in_flight", "retrying")


@dataclass
class Counters:
    """What a worker did (thread-safe increments)."""

    delivered: int = 0
    already_present: int = 0
    retried: int = 0
    parked: int = 0
    needs_check: int = 0
    held: int = 0
    deferred: int = 0
    dropped: int = 0
    batches: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        """Add to the counters."""
        with self._lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)

    def as_dict(self) -> dict[str, int]:
        """JSON-friendly form."""
        with self._lock:
            return {k: v for k, v in vars(self).items() if not k.startswith("_")}


@dataclass
class _Outcome:
    delivery_id: int
    status: str  # delivered · retrying · parked · needs_check
    error: str | None = None
    external_ref: str | None = None
    notes: str | None = None
    """The target's notes as stored (JSON text, ``conveyor.delivery.notes``)."""
    delay_s: float | None = None
    needs_lookup: bool = False
    already_present: bool = False
    blocked_by: int | None = None
    not_attempted: bool = False
    """Claimed but not tried (an earlier delivery of its chain failed): the attempt is undone."""
    target_down: bool = False
    """A transient failure without any answer (refused, timed out): the target is left alone
    for a while (``breaker``)."""


def _delivered(delivery_id: int, result: SendResult) -> _Outcome:
    """A delivery the target has (posted now, or found by a lookup): its document number and
    the notes its answer carried."""
    return _Outcome(
        delivery_id,
        "delivered",
        external_ref=result.external_ref,
        notes=encode_notes(delivery_notes(result.detail)) if result.detail else None,
        already_present=result.already_present,
    )


def _error_text(exc: BaseException) -> str:
    """How an error is stored and printed: redacted (no secret leaves the process) and clipped."""
    return safe_text(f"{type(exc).__name__}: {exc}")


def _load_mapping(project: Project | None) -> Any:
    """The outbound mapping engine, or None when the project has none (canonical is sent)."""
    if project is None:
        return None
    try:
        from conveyor.mapping import MappingEngine
    except ImportError:
        return None
    return MappingEngine.load(project)


class DeliveryCore:
    """Processes jobs against the ledger and the targets' connectors. Thread-safe."""

    def __init__(
        self,
        engine: Engine,
        *,
        worker_id: str,
        policy: RetryPolicy,
        connector_for: Callable[[str], Connector],
        mapping: Any = None,
        stale_after_s: float = DEFAULT_STALE_AFTER_S,
        in_flight_wait_s: float = 1.0,
        batch_size_for: Callable[[str], int] | None = None,
    ) -> None:
        self.engine = engine
        self.worker_id = worker_id
        self.policy = policy
        self.connector_for = connector_for
        self.batch_size_for = batch_size_for or (lambda _target: 1)
        """Documents per ``send_batch`` call to a target (1: one ``send`` per document)."""
        self.mapping = mapping
        self.stale_after_s = stale_after_s
        self.in_flight_wait_s = in_flight_wait_s
        self.counters = Counters()
        self.stopping = threading.Event()
        """Set when the worker stops: a batch in progress gives its untried rest back."""
        self._active: set[int] = set()
        self._active_lock = threading.Lock()
        self._mapping_checked = time.monotonic()
        self.sql = BatchStatements(engine, worker_id=worker_id, stale_after_s=stale_after_s)
        self.breaker = TargetBreaker(policy)
        """Targets that did not answer at all, left alone until their backoff has passed."""

    # ------------------------------------------------------------------ the batch
    def process(self, jobs: Sequence[Job]) -> list[tuple[Job, float | None]]:
        """Work a batch of jobs; per job ``None`` (settled: ack) or a delay (bring back later)."""
        results: list[tuple[Job, float | None]] = []
        self.counters.add(batches=1)
        dead = [j for j in jobs if j.dead_lettered]
        if dead:
            self._record_dead_lettered(dead)
            results.extend((j, None) for j in dead)
        fresh: dict[int, Job] = {}
        with self._active_lock:
            for job in jobs:
                if job.dead_lettered:
                    continue
                if job.delivery_id in self._active or job.delivery_id in fresh:
                    results.append((job, self.in_flight_wait_s))  # a second copy: later
                    self.counters.add(deferred=1)
                else:
                    fresh[job.delivery_id] = job
            self._active.update(fresh)
        try:
            if fresh:
                results.extend(self._process(fresh))
        finally:
            with self._active_lock:
                self._active.difference_update(fresh)
        return results

    def _process(self, jobs: dict[int, Job]) -> list[tuple[Job, float | None]]:
        self._maybe_reload_mapping()
        claimed, messages = self.sql.claim(list(jobs), utcnow())
        results: list[tuple[Job, float | None]] = []
        unclaimed = [i for i in jobs if i not in claimed]
        if unclaimed:
            for delivery_id, delay in self._explain(unclaimed).items():
                results.append((jobs[delivery_id], delay))
        if not claimed:
            return results
        outcomes: list[_Outcome] = []
        failed: dict[tuple[str, str], _Outcome] = {}  # the first failure of each chain
        by_target: dict[str, list[dict[str, Any]]] = {}
        for row in sorted(claimed.values(), key=lambda r: r["id"]):
            by_target.setdefault(row["target"], []).append(row)
        for target, rows in by_target.items():
            size = self._batch_size(target)
            if size > 1:
                outcomes.extend(self._in_batches(target, rows, messages, failed, size))
                continue
            for row in rows:
                chain = (row["target"], row["ordering_key"])
                earlier = failed.get(chain)
                if self.stopping.is_set():  # shutting down: give the rest back untried
                    outcomes.append(self._untried(row, 0.0))
                    continue
                wait = self.breaker.wait_s(target)
                if wait is not None:  # down: no thread waits out its timeouts meanwhile
                    outcomes.append(self._untried(row, max(HOLD_DELAY_S, wait)))
                    continue
                if earlier is not None:
                    outcomes.append(self._behind(row, earlier))
                    continue
                outcome = self._attempt(row, messages.get(row["message_pk"]))
                outcomes.append(outcome)
                if outcome.status != "delivered":
                    failed[chain] = outcome
                self._heard(target, outcome)
        self._record(outcomes)
        for outcome in outcomes:
            job = jobs[outcome.delivery_id]
            later = outcome.status in ("retrying", "pending")
            results.append((job, outcome.delay_s if later else None))
        return results

    # ------------------------------------------------------------------ claim
    def _explain(self, ids: list[int]) -> dict[int, float | None]:
        """Why these were not claimed, and what to do with their jobs."""
        d = deliveries_t
        now = utcnow()
        out: dict[int, float | None] = {}
        held_ids: list[int] = []
        with self.engine.begin() as conn:
            rows = conn.execute(
                select(
                    d.c.id,
                    d.c.status,
                    d.c.target,
                    d.c.ordering_key,
                    d.c.next_attempt_at,
                    alive_clause(d.c.claimed_by, self.stale_after_s).label("held_alive"),
                ).where(d.c.id.in_(ids))
            ).all()
            found = {r.id for r in rows}
            for missing in set(ids) - found:
                log.warning("delivery %s is not in the ledger; dropping its message", missing)
                out[missing] = None
            for r in rows:
                if r.status in FINAL:
                    out[r.id] = None  # a second copy of a settled delivery
                    self.counters.add(dropped=1)
                    continue
                if r.status == "in_flight" and r.held_alive:
                    out[r.id] = self.in_flight_wait_s
                    self.counters.add(deferred=1)
                    continue
                if r.status == "retrying" and r.next_attempt_at and r.next_attempt_at > now:
                    out[r.id] = max(0.0, (r.next_attempt_at - now).total_seconds())
                    self.counters.add(deferred=1)
                    continue
                blocker = blocker_of(
                    conn, delivery_id=r.id, target=r.target, ordering_key=r.ordering_key
                )
                if blocker is None:
                    out[r.id] = HOLD_DELAY_S  # raced with a change: look again shortly
                    self.counters.add(deferred=1)
                elif blocker.stuck:
                    held = conn.execute(
                        update(d)
                        .where(d.c.id == r.id, d.c.status.in_(("pending", "retrying")))
                        .values(
                            status="parked",
                            blocked_by=blocker.id,
                            claimed_by=None,
                            next_attempt_at=None,
                            updated_at=now,
                            last_error=(
                                f"held: delivery {blocker.id} with the same ordering key "
                                f"({r.ordering_key}) is {blocker.status}; replay it first"
                            ),
                        )
                    ).rowcount
                    out[r.id] = None
                    self.counters.add(held=held)
                    if held:
                        held_ids.append(r.id)
                else:
                    due = blocker.next_attempt_at
                    wait = (due - now).total_seconds() if due and due > now else 0.0
                    out[r.id] = max(HOLD_DELAY_S, wait)
                    self.counters.add(deferred=1)
        events.deliveries_parked(self.engine, held_ids)
        return out

    def _record_dead_lettered(self, jobs: Sequence[Job]) -> None:
        """The broker gave up on these (delivery limit): park them unless already settled."""
        d = deliveries_t
        now = utcnow()
        newly_parked: list[int] = []
        with self.engine.begin() as conn:
            for job in jobs:
                parked = conn.execute(
                    update(d)
                    .where(
                        d.c.id == job.delivery_id,
                        or_(
                            d.c.status.in_(("pending", "retrying")),
                            and_(
                                d.c.status == "in_flight",
                                ~alive_clause(d.c.claimed_by, self.stale_after_s),
                            ),
                        ),
                    )
                    .values(
                        status="parked",
                        claimed_by=None,
                        updated_at=now,
                        last_error=safe_text(job.dead_lettered),
                        needs_lookup=case(
                            (d.c.status == "in_flight", true()), else_=d.c.needs_lookup
                        ),
                    )
                ).rowcount
                self.counters.add(parked=parked)
                if parked:
                    newly_parked.append(job.delivery_id)
        events.deliveries_parked(self.engine, newly_parked)

    # ------------------------------------------------------------------ one delivery
    def outbound(self, target: str, message: dict[str, Any]) -> dict[str, Any]:
        """The document for ``target``: its outbound mapping of the message when it has one for
        the type, else the canonical message as the ledger stored it (validated when it was
        accepted; quantities as exact decimal strings)."""
        if self.mapping is not None and self.mapping.has_direction(target, message["type"], "out"):
            document: dict[str, Any] = self.mapping.map_outbound(target, message)
            return document
        return message

    def _attempt(self, row: dict[str, Any], message: dict[str, Any] | None) -> _Outcome:
        delivery_id, target = row["id"], row["target"]
        needs_lookup = bool(row["needs_lookup"])
        if message is None:
            return _Outcome(delivery_id, "parked", error="the message is missing from the ledger")
        try:
            connector = self.connector_for(target)
            document = self.outbound(target, message)
            result = deliver(
                connector,
                document,
                message_type=message["type"],
                key=business_key(message),
                idem_key=partial(idempotency_key, message["message_id"], target),
                needs_lookup=needs_lookup,
            )
        except Exception as exc:
            return self._failed(row, exc)
        return _delivered(delivery_id, result)

    def _failed(self, row: dict[str, Any], exc: BaseException) -> _Outcome:
        """The outcome of an attempt that raised (or a batch item that failed) with ``exc``."""
        delivery_id, target, attempts = row["id"], row["target"], row["attempts"]
        if isinstance(exc, NeedsCheckError):
            return _Outcome(delivery_id, "needs_check", error=_error_text(exc), needs_lookup=True)
        ambiguous = bool(row["needs_lookup"]) or isinstance(exc, AmbiguousDeliveryError)
        if not is_transient(exc):
            if not isinstance(exc, ConfigError | AmbiguousDeliveryError):
                log.info("delivery %s to %s parked: %s", delivery_id, target, _error_text(exc))
            return _Outcome(delivery_id, "parked", error=_error_text(exc), needs_lookup=False)
        if attempts >= self.policy.max_attempts:
            return _Outcome(
                delivery_id,
                "needs_check" if ambiguous else "parked",
                error=f"gave up after {attempts} attempts: {_error_text(exc)}",
                needs_lookup=ambiguous,
            )
        delay = backoff_delay(attempts, self.policy)
        asked = exc.retry_after_s if isinstance(exc, TransientError) else None
        if asked is not None:  # the target said when: never sooner
            delay = max(delay, asked)
        return _Outcome(
            delivery_id,
            "retrying",
            error=_error_text(exc),
            delay_s=delay,
            needs_lookup=ambiguous,
            target_down=isinstance(exc, TransientError) and exc.no_answer,
        )

    # ------------------------------------------------------------------ batches
    def _batch_size(self, target: str) -> int:
        """Documents per call to ``target``: its ``batch_size`` when its connector can send
        batches, else 1 (one ``send`` per document)."""
        size = self.batch_size_for(target)
        if size <= 1:
            return 1
        try:
            connector = self.connector_for(target)
        except Exception:  # reported per delivery by the one-by-one path
            return 1
        return size if connector.supports("send_batch") else 1

    def _in_batches(
        self,
        target: str,
        rows: list[dict[str, Any]],
        messages: dict[int, dict[str, Any]],
        failed: dict[tuple[str, str], _Outcome],
        size: int,
    ) -> list[_Outcome]:
        """Deliver ``rows`` (id order) with ``send_batch``. A call carries at most one delivery
        of each ordering chain, so a later one is sent only after the earlier one went through
        (rounds); one that fails holds the rest of its chain, as on the one-by-one path. While the
        target is down (``breaker``) the rest is given back untried."""
        outcomes: list[_Outcome] = []
        waiting = rows
        while waiting:
            round_rows: list[dict[str, Any]] = []
            later: list[dict[str, Any]] = []
            chains: set[tuple[str, str]] = set()
            for row in waiting:
                chain = (row["target"], row["ordering_key"])
                if self.stopping.is_set():  # shutting down: give the rest back untried
                    outcomes.append(self._untried(row, 0.0))
                elif chain in failed:
                    outcomes.append(self._behind(row, failed[chain]))
                elif chain in chains:
                    later.append(row)
                else:
                    chains.add(chain)
                    round_rows.append(row)
            for start in range(0, len(round_rows), size):
                chunk = round_rows[start : start + size]
                wait = self.breaker.wait_s(target)
                if wait is not None:  # down: no thread waits out its timeouts meanwhile
                    outcomes.extend(self._untried(row, max(HOLD_DELAY_S, wait)) for row in chunk)
                    continue
                answered = self._attempt_batch(target, chunk, messages)
                for row, outcome in zip(chunk, answered, strict=True):
                    outcomes.append(outcome)
                    if outcome.status != "delivered":
                        failed[(row["target"], row["ordering_key"])] = outcome
                if answered:  # one call: one answer, or one silence, for the breaker
                    down = next((o for o in answered if o.target_down), answered[0])
                    self._heard(target, down)
            waiting = later
        return outcomes

    def _attempt_batch(
        self, target: str, rows: list[dict[str, Any]], messages: dict[int, dict[str, Any]]
    ) -> list[_Outcome]:
        """One ``send_batch`` per message type for ``rows``; an outcome per row, in order.

        A delivery that may already have reached the target (``needs_lookup``) is looked up
        first and only posted when the target has not got it. When the call as a whole fails,
        every document of it gets that error — after a lost answer each is ambiguous, so each is
        looked up before anything is posted again."""
        from conveyor.connector import BatchItem

        done: dict[int, _Outcome] = {}
        try:
            connector = self.connector_for(target)
        except Exception as exc:
            return [self._failed(row, exc) for row in rows]
        dedupes = connector.supports("idempotency_key")
        groups: dict[str, list[tuple[dict[str, Any], BatchItem]]] = {}
        for row in rows:
            message = messages.get(row["message_pk"])
            if message is None:
                done[row["id"]] = _Outcome(
                    row["id"], "parked", error="the message is missing from the ledger"
                )
                continue
            try:
                key = business_key(message)
                if row["needs_lookup"]:
                    found = look_up_first(connector, message_type=message["type"], key=key)
                    if found is not None:
                        done[row["id"]] = _delivered(row["id"], found)
                        continue
                item = BatchItem(
                    self.outbound(target, message),
                    message["type"],
                    key,
                    idempotency_key(message["message_id"], target) if dedupes else None,
                )
            except Exception as exc:
                done[row["id"]] = self._failed(row, exc)
                continue
            groups.setdefault(message["type"], []).append((row, item))
        for group in groups.values():
            try:
                results = connector.send_batch([item for _row, item in group])
                if len(results) != len(group):
                    raise AmbiguousDeliveryError(
                        f"{target} answered {len(results)} results for {len(group)} documents"
                    )
            except Exception as exc:
                for row, _item in group:
                    done[row["id"]] = self._failed(row, exc)
                continue
            for (row, _item), result in zip(group, results, strict=True):
                if result.ok and result.result is not None:
                    done[row["id"]] = _delivered(row["id"], result.result)
                else:
                    error = result.error or AmbiguousDeliveryError(
                        f"{target} gave no outcome for {result.key}"
                    )
                    done[row["id"]] = self._failed(row, error)
        return [done[row["id"]] for row in rows]

    def _heard(self, target: str, outcome: _Outcome) -> None:
        """Tell the breaker whether ``target`` answered this attempt at all."""
        if outcome.target_down:
            self.breaker.failed(target)
        elif not outcome.not_attempted:
            self.breaker.answered(target)

    def _behind(self, row: dict[str, Any], earlier: _Outcome) -> _Outcome:
        """A delivery claimed with an earlier one of its chain that did not go through: it is
        not attempted (the attempt is given back) and waits, or is held when that one parked."""
        if earlier.status in ("parked", "needs_check"):
            return _Outcome(
                row["id"],
                "parked",
                error=(
                    f"held: delivery {earlier.delivery_id} with the same ordering key "
                    f"({row['ordering_key']}) is {earlier.status}; replay it first"
                ),
                needs_lookup=bool(row["needs_lookup"]),
                blocked_by=earlier.delivery_id,
                not_attempted=True,
            )
        return self._untried(row, max(HOLD_DELAY_S, earlier.delay_s or 0.0))

    @staticmethod
    def _untried(row: dict[str, Any], delay_s: float) -> _Outcome:
        """Claimed but not attempted: back to where it was, the attempt undone."""
        return _Outcome(
            row["id"],
            "pending" if row["attempts"] <= 1 else "retrying",
            error=row["last_error"],
            delay_s=delay_s,
            needs_lookup=bool(row["needs_lookup"]),
            not_attempted=True,
        )

    # ------------------------------------------------------------------ record
    def _record(self, outcomes: Sequence[_Outcome]) -> None:
        now = utcnow()
        delivered = [o for o in outcomes if o.status == "delivered"]
        others = [o for o in outcomes if o.status != "delivered"]
        self.sql.record(
            [
                Recorded(
                    o.delivery_id,
                    o.status,
                    external_ref=o.external_ref,
                    notes=o.notes,
                    error=o.error,
                    due=now + timedelta(seconds=o.delay_s) if o.delay_s is not None else None,
                    needs_lookup=o.needs_lookup,
                    blocked_by=o.blocked_by,
                    undo_attempt=o.not_attempted,
                )
                for o in outcomes
            ],
            now,
        )
        events.deliveries_parked(
            self.engine, [o.delivery_id for o in others if o.status in ("parked", "needs_check")]
        )
        tried = [o for o in others if not o.not_attempted]
        self.counters.add(
            delivered=len(delivered),
            already_present=sum(1 for o in delivered if o.already_present),
            retried=sum(1 for o in tried if o.status == "retrying"),
            parked=sum(1 for o in tried if o.status == "parked"),
            needs_check=sum(1 for o in tried if o.status == "needs_check"),
            held=sum(1 for o in others if o.not_attempted and o.status == "parked"),
            deferred=sum(1 for o in others if o.not_attempted and o.status != "parked"),
        )

    def _maybe_reload_mapping(self) -> None:
        if self.mapping is None or time.monotonic() - self._mapping_checked < 5.0:
            return
        self._mapping_checked = time.monotonic()
        try:
            self.mapping.reload_if_changed()
        except Exception as exc:  # a broken edit: keep delivering with the loaded mapping
            log.warning("outbound mappings not reloaded: %s", exc)


@dataclass
class WorkerOptions:
    """How a worker runs. ``transport:`` in ``conveyor.yaml`` may set any of these."""

    concurrency: int = 4
    """Delivery threads in this process."""
    batch_size: int = 50
    """Jobs claimed together (one ledger round trip for the batch)."""
    heartbeat_s: float = DEFAULT_INTERVAL_S
    stale_after_s: float = DEFAULT_STALE_AFTER_S
    in_flight_wait_s: float = 1.0
    relay: bool = True
    """Run the outbox relay in this process (broker transports)."""
    relay_batch: int = 1000
    idle_check_s: float = 0.25
    gc_threshold: int = 20_000
    """Young-generation threshold of Python's cyclic garbage collector while the worker runs
    (0: leave the collector alone); see ``collector_tuned``."""
    transport_options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_project(cls, project: Project | None, **overrides: Any) -> WorkerOptions:
        """Options from ``transport:`` of ``conveyor.yaml``, then ``overrides`` (not None)."""
        settings = dict((project.raw.get("transport") or {}) if project else {})
        known = {f for f in cls.__dataclass_fields__ if f != "transport_options"}
        values = {k: settings.pop(k) for k in list(settings) if k in known}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values, transport_options=settings)


@dataclass
class RunResult:
    """How a run ended."""

    counters: dict[str, int]
    idle: bool
    published: int
    seconds: float


class Worker:
    """Delivery threads + (for broker transports) the outbox relay + a heartbeat."""

    def __init__(
        self,
        engine: Engine,
        *,
        targets: Sequence[str],
        broker_url: str | None = None,
        project: Project | None = None,
        policy: RetryPolicy | None = None,
        options: WorkerOptions | None = None,
        connectors: Mapping[str, Connector] | None = None,
        mapping: Any = None,
        worker_id: str | None = None,
        batch_sizes: Mapping[str, int] | None = None,
    ) -> None:
        if not targets:
            raise ConfigError("no delivery targets: add routes to conveyor.yaml")
        self.engine = engine
        self.targets = tuple(targets)
        self.broker_url = broker_url
        self.project = project
        self.policy = policy or (project.retry if project else RetryPolicy())
        self.options = options or WorkerOptions.from_project(project)
        self.worker_id = worker_id or new_worker_id()
        self._shared_connectors = dict(connectors or {})
        self._batch_sizes = dict(batch_sizes or {})
        self._local = threading.local()
        self._made: list[Connector] = []
        self._made_lock = threading.Lock()
        if connectors is None and project is not None:
            for target in self.targets:
                project.system(target)  # unknown target: a clear ConfigError before starting
        self.core = DeliveryCore(
            engine,
            worker_id=self.worker_id,
            policy=self.policy,
            connector_for=self._connector,
            mapping=mapping if mapping is not None else _load_mapping(project),
            stale_after_s=self.options.stale_after_s,
            in_flight_wait_s=self.options.in_flight_wait_s,
            batch_size_for=self._batch_size,
        )
        self.stop_event = self.core.stopping
        from conveyor.runtime.http import set_pool_size

        set_pool_size(self.options.concurrency)  # each delivery thread may hold a connection
        self.transport: Transport | None = None
        self._busy = 0
        self._busy_lock = threading.Lock()

    def _batch_size(self, target: str) -> int:
        """``batch_sizes`` given, else ``systems.<target>.batch_size`` of ``conveyor.yaml`` (1
        without a project)."""
        if target in self._batch_sizes:
            return max(1, int(self._batch_sizes[target]))
        if self.project is None or target not in self.project.systems:
            return 1
        return max(1, int(self.project.systems[target].batch_size))

    def _connector(self, target: str) -> Connector:
        """The connector of ``target`` for this thread: one for all threads when the connector
        is ``thread_safe`` (its connection pool, sized to the concurrency, then serves them
        all), else one per thread."""
        shared = self._shared_connectors.get(target)
        if shared is not None:
            return shared
        cache: dict[str, Connector] | None = getattr(self._local, "connectors", None)
        if cache is None:
            cache = self._local.connectors = {}
        connector = cache.get(target)
        if connector is None:
            from conveyor.runtime.registry import create, load

            if self.project is None:
                raise ConfigError(f"no connector for target {target!r}")
            system = self.project.system(target)
            if load(system.connector).thread_safe:
                with self._made_lock:
                    connector = self._shared_connectors.get(target)
                    if connector is None:
                        connector = self._shared_connectors[target] = create(system)
                        self._made.append(connector)
                return connector
            connector = cache[target] = create(system)
            with self._made_lock:
                self._made.append(connector)
        return connector

    def stop(self) -> None:
        """Ask the run to end (safe from a signal handler)."""
        self.stop_event.set()

    def run(self, *, until_idle: bool = False, timeout: float | None = None) -> RunResult:
        """Deliver until ``stop()`` — or until idle with ``until_idle`` — or ``timeout``."""
        from conveyor.delivery.relay import OutboxRelay
        from conveyor.transport import create

        started = time.monotonic()
        liveness = Liveness(
            self.engine,
            self.worker_id,
            transport="embedded" if not self.broker_url else "rabbitmq",
            targets=self.targets,
            interval_s=self.options.heartbeat_s,
            stale_after_s=self.options.stale_after_s,
        )
        liveness.start()
        transport = create(
            self.broker_url,
            engine=self.engine,
            consumer_id=self.worker_id,
            policy=self.policy,
            options={
                "stale_after_s": self.options.stale_after_s,
                **self.options.transport_options,
                "liveness": liveness,
            },
        )
        self.transport = transport
        relay: OutboxRelay | None = None
        threads: list[threading.Thread] = []
        idle = False
        with collector_tuned(self.options.gc_threshold):
            try:
                transport.start(self.targets)
                if transport.needs_relay and self.options.relay:
                    relay = OutboxRelay(self.engine, transport, batch_size=self.options.relay_batch)
                    relay.start()
                for index in range(max(1, self.options.concurrency)):
                    thread = threading.Thread(
                        target=self._loop, args=(transport,), name=f"deliver-{index}", daemon=True
                    )
                    thread.start()
                    threads.append(thread)
                while not self.stop_event.is_set():
                    if timeout is not None and time.monotonic() - started >= timeout:
                        break
                    if until_idle and self._idle():
                        idle = True
                        break
                    self.stop_event.wait(self.options.idle_check_s)
            finally:
                self.stop_event.set()
                for thread in threads:
                    thread.join(timeout=60)
                if relay is not None:
                    relay.stop()
                transport.close()
                liveness.stop()
                with self._made_lock:
                    for connector in self._made:
                        try:
                            connector.close()
                        except Exception as exc:
                            log.warning("closing connector %s: %s", connector.name, exc)
        return RunResult(
            counters=self.core.counters.as_dict(),
            idle=idle,
            published=relay.published if relay else 0,
            seconds=time.monotonic() - started,
        )

    def _idle(self) -> bool:
        with self._busy_lock:
            if self._busy:
                return False
        d = deliveries_t
        with self.engine.connect() as conn:
            open_count = conn.execute(
                select(func.count())
                .select_from(d)
                .where(d.c.target.in_(self.targets), d.c.status.in_(OPEN))
            ).scalar_one()
        return int(open_count) == 0

    def _loop(self, transport: Transport) -> None:
        failures = 0
        while not self.stop_event.is_set():
            try:
                jobs = transport.fetch(self.options.batch_size, timeout=0.2)
            except Exception as exc:
                failures += 1
                log.warning("fetching jobs failed: %s", exc)
                self.stop_event.wait(min(5.0, 0.2 * failures))
                continue
            if not jobs:
                continue
            with self._busy_lock:
                self._busy += 1
            try:
                self._work(transport, jobs)
                failures = 0
            except Exception as exc:
                failures += 1
                log.warning("delivery batch failed (%s); jobs go back to the queue", exc)
                try:
                    transport.release(jobs)
                except Exception as release_exc:
                    log.warning("could not give jobs back: %s", release_exc)
                self.stop_event.wait(min(5.0, 0.2 * failures))
            finally:
                with self._busy_lock:
                    self._busy -= 1

    def _work(self, transport: Transport, jobs: list[Job]) -> None:
        results = self.core.process(jobs)
        settled = [job for job, delay in results if delay is None]
        later = [(job, delay) for job, delay in results if delay is not None]
        transport.ack(settled)
        if later:
            try:
                transport.retry_later(later)
            except Exception as exc:  # the transport gave them back; the ledger knows the state
                log.warning("could not schedule %d retries: %s", len(later), exc)
                self.stop_event.wait(0.5)


@contextmanager
def collector_tuned(threshold: int) -> Iterator[None]:
    """While a worker runs, what was loaded before (modules, table metadata, compiled statements)
    is frozen out of Python's cyclic garbage collector, and young-generation collections run every
    ``threshold`` allocations instead of every 700: a delivery makes many short-lived objects
    (rows, frames, documents), and the default collects so often that it costs ~8 % of a worker's
    time (measured: 286-302 against 322-326 µs of worker CPU per message). Restored afterwards."""
    if threshold <= 0:
        yield
        return
    before = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(threshold, *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()


def project_targets(project: Project) -> list[str]:
    """Every target named by the routes of ``conveyor.yaml``, in order of appearance."""
    out: list[str] = []
    for route in project.router.routes:
        out.extend(t for t in route.targets if t not in out)
    return out
