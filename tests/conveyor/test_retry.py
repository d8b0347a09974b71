"""Backoff: bounded exponential growth with jitter, and the delay-queue ladder."""

from __future__ import annotations

import random

import pytest

from conveyor.config import RetryPolicy
from conveyor.retry import HOLD_DELAY_S, backoff_delay, delay_tiers, pick_tier

POLICY = RetryPolicy(max_attempts=8, base_delay_s=1.0, max_delay_s=300.0)


@pytest.mark.parametrize(("attempt", "ceiling"), [(1, 1), (2, 2), (3, 4), (9, 256), (10, 300)])
def test_backoff_grows_exponentially_within_jitter_bounds(attempt: int, ceiling: float) -> None:
    rng = random.Random(7)
    delays = [backoff_delay(attempt, POLICY, rng) for _ in range(200)]
    assert min(delays) >= ceiling / 2
    assert max(delays) <= ceiling
    assert len({round(d, 6) for d in delays}) > 100  # jittered, not one value


def test_backoff_never_exceeds_the_maximum() -> None:
    assert backoff_delay(500, POLICY) <= 300.0


def test_tiers_start_with_the_hold_delay_and_end_at_the_maximum() -> None:
    tiers = delay_tiers(POLICY)
    assert tiers == (HOLD_DELAY_S, 1.0, 4.0, 16.0, 64.0, 256.0, 300.0)


def test_pick_tier_comes_back_early_rather_than_late() -> None:
    tiers = delay_tiers(POLICY)
    assert pick_tier(0.1, tiers) == HOLD_DELAY_S
    assert pick_tier(3.9, tiers) == 1.0
    assert pick_tier(70, tiers) == 64.0
    assert pick_tier(10_000, tiers) == 300.0
