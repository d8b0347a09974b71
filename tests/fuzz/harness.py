"""The fuzzing harness: settings profiles, the per-target case counter and the one property every
target checks — nothing escapes a parser of outside input but the project's own typed errors.

Profiles (``HYPOTHESIS_PROFILE``): ``ci`` (default: a fixed number of cases per target, derandomised
so CI is repeatable, the whole suite well inside 90 s) and ``long`` (many more cases, random seeds,
for a run before a release). They are applied per test (``FUZZ``), never loaded globally, so the
rest of the suite (schemathesis, other property tests) keeps its own settings.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings

from conveyor.errors import ConveyorError

CI_EXAMPLES = int(os.environ.get("FUZZ_CI_EXAMPLES", "60"))
settings.register_profile(
    "ci",
    max_examples=CI_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.function_scoped_fixture,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)
settings.register_profile(
    "long",
    parent=settings.get_profile("ci"),
    max_examples=int(os.environ.get("FUZZ_LONG_EXAMPLES", "5000")),
    derandomize=False,
)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
if PROFILE not in ("ci", "long"):
    PROFILE = "ci"
FUZZ = settings(settings.get_profile(PROFILE))
"""The settings of every fuzz test (decorate with ``@FUZZ`` under ``@given``)."""
FUZZ_SLOW = settings(FUZZ, max_examples=max(10, FUZZ.max_examples // 2))
"""For targets whose case costs a simulator or an app start: half the cases."""

CASES: Counter[str] = Counter()
UNEXPECTED: Counter[str] = Counter()

T = TypeVar("T")


@contextmanager
def target(name: str, *allowed: type[BaseException]) -> Iterator[None]:
    """One case of fuzz target ``name``: counted; a ``ConveyorError`` (or one of ``allowed``, the
    documented exceptions of that parser) is a refusal and passes; anything else is an unexpected
    exception, counted and re-raised so hypothesis shrinks it and the test fails."""
    CASES[name] += 1
    try:
        yield
    except (ConveyorError, *allowed):
        return
    except Exception:  # hypothesis' own stop signals are BaseExceptions: not counted
        UNEXPECTED[name] += 1
        raise


def run(name: str, call: Callable[[], T], *allowed: type[BaseException]) -> T | None:
    """``call()`` as one case of ``name`` (see ``target``); its result, or None when refused."""
    result: T | None = None
    with target(name, *allowed):
        result = call()
    return result


def summary() -> list[str]:
    """One line per target, as printed at the end of the session."""
    return [
        f"fuzz {name}: {CASES[name]} cases, {UNEXPECTED[name]} unexpected exceptions"
        for name in sorted(CASES)
    ]


def reason_of(error: Any) -> str:
    """The reason a refused record is kept with (must never be empty)."""
    return str(error).strip()
