"""Which targets are down, for one worker process: a target that did not answer at all (refused,
timed out — ``TransientError.no_answer``) is left alone until its backoff has passed, so its
deliveries are given back untried instead of each holding a delivery thread for a timeout while
the other targets' deliveries wait behind it.

The wait grows with each failed probe as a delivery's own backoff does (``retry.backoff_delay``,
bounded by ``retry.max_delay_s``); the first answer of any kind from the target (a document
delivered or refused) closes the breaker. A delivery given back this way is not counted as an
attempt: only the probes are, so a long outage spends few of ``retry.max_attempts``.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from conveyor.config import RetryPolicy
from conveyor.retry import backoff_delay


@dataclass
class _Down:
    failures: int
    until: float


class TargetBreaker:
    """Targets that did not answer, and until when they are left alone. Thread-safe."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self._down: dict[str, _Down] = {}
        self._lock = threading.Lock()

    def wait_s(self, target: str) -> float | None:
        """Seconds ``target`` is still left alone, or None when it may be tried."""
        with self._lock:
            down = self._down.get(target)
            if down is None:
                return None
            left = down.until - time.monotonic()
            return left if left > 0 else None

    def failed(self, target: str) -> float:
        """``target`` did not answer: leave it alone a while longer; returns for how long.

        Failures that end while it is already left alone (other threads' attempts, started
        before it was marked down) do not lengthen the wait again: it grows once per probe."""
        now = time.monotonic()
        with self._lock:
            down = self._down.get(target)
            if down is not None and down.until > now:
                return down.until - now
            failures = down.failures + 1 if down is not None else 1
            delay = backoff_delay(failures, self.policy)
            self._down[target] = _Down(failures, now + delay)
            return delay

    def answered(self, target: str) -> None:
        """``target`` answered (delivered, refused, …): it is up."""
        with self._lock:
            self._down.pop(target, None)

    def down(self) -> list[str]:
        """The targets left alone right now."""
        now = time.monotonic()
        with self._lock:
            return sorted(t for t, d in self._down.items() if d.until > now)
