"""Backoff for transient delivery failures: bounded exponential growth with "equal jitter".

``backoff_delay(attempt, policy)`` is ``min(max_delay, base * 2**(attempt-1))`` scaled by a random
factor in ``[0.5, 1.0]``: retries of many deliveries that failed together spread out instead of
hitting a recovering target at the same instant, and the delay never falls below half the curve.
``delay_tiers(policy)`` is the ladder of fixed delays a broker transport can offer (one delay queue
per tier); ``pick_tier`` chooses the longest tier not longer than the wanted delay, so a message
comes back early rather than late and the worker waits out the rest (see ``worker``).

Why not ``tenacity``: it retries a call inside one process. A failed delivery is instead
rescheduled in the ledger (``next_attempt_at``) or on a broker delay queue, so the wait survives
a restart and another worker may take the retry; only the delay formula is needed here, and it
is the three lines of ``backoff_delay``.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from conveyor.config import RetryPolicy

HOLD_DELAY_S = 0.25
"""The shortest wait: a delivery whose predecessor (same ordering key) is still on its way."""


def backoff_delay(attempt: int, policy: RetryPolicy, rng: random.Random | None = None) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
    exponent = max(0, attempt - 1)
    ceiling = min(policy.max_delay_s, policy.base_delay_s * (2.0 ** min(exponent, 62)))
    factor = 0.5 + 0.5 * (rng or random).random()
    return ceiling * factor


def delay_tiers(policy: RetryPolicy, factor: float = 4.0) -> tuple[float, ...]:
    """The hold delay, then ``base * factor**k`` up to ``max_delay`` (which is always a tier)."""
    tiers = {HOLD_DELAY_S}
    delay = policy.base_delay_s
    while delay < policy.max_delay_s:
        tiers.add(delay)
        delay *= factor
    tiers.add(policy.max_delay_s)
    return tuple(sorted(tiers))


def pick_tier(delay_s: float, tiers: Sequence[float]) -> float:
    """The longest tier ≤ ``delay_s``, or the shortest tier when ``delay_s`` is below all."""
    chosen = tiers[0]
    for tier in tiers:
        if tier <= delay_s:
            chosen = tier
    return chosen
