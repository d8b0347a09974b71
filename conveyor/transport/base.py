"""The ``Transport`` contract: how deliveries travel from the outbox to the delivery workers.

A transport is a queue of *jobs* (one job = one delivery of one message to one target). The ledger
stays the record of truth — status, attempts, errors — so a transport only has to move delivery ids
reliably: at least once, with delays on request, to competing consumers. Exactly-once towards a
target comes from the ledger (one successful delivery per message and target).

    publish(envelopes)        durable when it returns (broker transports; see ``needs_relay``)
    fetch(max_jobs, timeout)  the next jobs for this consumer, held until settled
    ack(jobs)                 settled: drop them
    retry_later(job, delay)   bring them back after ``delay`` seconds
    release(jobs)             give them back at once, unprocessed (the worker could not work)

A job that is never settled (the consumer died) comes back to another consumer. ``depths()``
answers queue depths per target for ``conveyor status``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Protocol, runtime_checkable


@lru_cache(maxsize=1024)
def _body_tail(target: str, message_type: str, source: str) -> bytes:
    """The part of an envelope's body after the delivery id (the same for many deliveries)."""
    rest = json.dumps(
        {"target": target, "type": message_type, "source": source}, separators=(",", ":")
    )
    return rest[1:].encode()


@dataclass(frozen=True)
class Envelope:
    """One delivery as the relay publishes it: small, the ledger holds the message itself."""

    delivery_id: int
    target: str
    message_type: str
    source: str

    def body(self) -> bytes:
        """The wire form (JSON): ``{"delivery_id":…,"target":…,"type":…,"source":…}``."""
        return b'{"delivery_id":%d,%s' % (
            self.delivery_id,
            _body_tail(self.target, self.message_type, self.source),
        )

    @property
    def routing_key(self) -> str:
        """``<target>.<message type>.<source>`` (system names contain no dots)."""
        return f"{self.target}.{self.message_type}.{self.source}"


def pack_body(envelopes: Sequence[Envelope]) -> bytes:
    """The body of a broker message carrying several deliveries of one routing key:
    ``{"delivery_ids":[…],"target":…,"type":…,"source":…}``."""
    first = envelopes[0]
    ids = b",".join(b"%d" % e.delivery_id for e in envelopes)
    return b'{"delivery_ids":[%s],%s' % (
        ids,
        _body_tail(first.target, first.message_type, first.source),
    )


@dataclass(frozen=True)
class Job:
    """One delivery handed to a consumer; ``token`` is the transport's own handle."""

    delivery_id: int
    target: str
    token: Any = field(default=None, compare=False, repr=False)
    dead_lettered: str | None = None
    """Set when the broker itself gave up on the message (e.g. its delivery limit): why."""


@dataclass
class Depth:
    """How many jobs of one target are where."""

    target: str
    ready: int = 0
    """Deliverable now, waiting for a consumer (a broker that packs several jobs into one
    message counts its messages)."""
    delayed: int = 0
    """Waiting out a retry delay."""
    held: int = 0
    """Handed to a consumer and not yet settled."""
    parked: int = 0
    """In the broker's parking queue, not yet recorded in the ledger."""

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {
            "target": self.target,
            "ready": self.ready,
            "delayed": self.delayed,
            "held": self.held,
            "parked": self.parked,
        }


@runtime_checkable
class Transport(Protocol):
    """What every transport provides (see the module docstring)."""

    name: str
    url: str
    needs_relay: bool
    """True when outbox rows must be published to it (a broker); False when the outbox itself
    is the queue."""

    def start(self, targets: Sequence[str], *, consume: bool = True) -> None:
        """Connect and declare what ``targets`` need (idempotent); consume them when asked."""
        ...

    def publish(self, envelopes: Sequence[Envelope]) -> None:
        """Hand ``envelopes`` over; when this returns they are durable. Raises
        ``TransientError`` when the transport cannot take them now."""
        ...

    def fetch(self, max_jobs: int, timeout: float) -> list[Job]:
        """Up to ``max_jobs`` jobs, waiting at most ``timeout`` seconds for the first."""
        ...

    def ack(self, jobs: Sequence[Job]) -> None:
        """The jobs are settled (delivered, parked, or known to be stale)."""
        ...

    def retry_later(self, jobs: Sequence[tuple[Job, float]]) -> None:
        """Bring each job back after its delay in seconds."""
        ...

    def release(self, jobs: Sequence[Job]) -> None:
        """Give the jobs back unprocessed, to be fetched again."""
        ...

    def depths(self, targets: Sequence[str]) -> dict[str, Depth]:
        """Queue depths per target (works without ``start``)."""
        ...

    def close(self) -> None:
        """Stop consuming; unsettled jobs return to the queue."""
        ...
