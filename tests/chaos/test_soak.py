"""The chaos soak (``tests.chaos.soak``): CI's form, 20,000 messages through every inbound path
while RabbitMQ restarts twice, workers are SIGKILLed three times, the API once, PostgreSQL
restarts once and every target answers 5xx, times out, refuses and drops answers in windows;
and the long form (``--messages``, default 500,000; slow). Each prints its line of figures and
asserts nothing is missing and nothing is doubled."""

from __future__ import annotations

import os

import pytest

from tests.chaos.soak import FAULT_KINDS, Figures, Plan, soak
from tests.support.private_services import postgres_available, rabbit_available

CI_MESSAGES = 20_000

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq]


@pytest.fixture(autouse=True)
def _private_services() -> None:
    """The soak restarts its own PostgreSQL and RabbitMQ: it needs their binaries and root."""
    if not (postgres_available() and rabbit_available()):
        if os.environ.get("CI"):
            pytest.fail("the chaos soak needs PostgreSQL and RabbitMQ binaries and root")
        pytest.skip("cannot start a private PostgreSQL and RabbitMQ here")


def _run(plan: Plan, capsys: pytest.CaptureFixture[str]) -> Figures:
    lines: list[str] = []
    with soak(plan, say=lines.append) as ready:
        try:
            ready.run()
        finally:
            figures = ready.account()
            with capsys.disabled():
                print("\n" + "\n".join(lines))
                print(figures.line())
                for kind, examples in figures.examples.items():
                    print(f"  {kind}: {examples}")
    return figures


def _assert_clean(figures: Figures, plan: Plan) -> None:
    assert (figures.missing, figures.duplicates) == (0, 0), figures.examples
    assert (figures.inbound_missing, figures.stock_mismatches) == (0, 0), figures.examples
    assert figures.delivered + figures.parked == figures.deliveries
    assert "ledger_disagrees" not in figures.examples, figures.examples  # the ledger says so too
    assert figures.broker_restarts == plan.broker_restarts
    assert figures.worker_kills == plan.worker_kills
    assert figures.api_kills == plan.api_kills
    assert figures.db_restarts == plan.db_restarts
    assert all(figures.faults[kind] > 0 for kind in FAULT_KINDS), figures.faults


@pytest.mark.timeout(1800)
def test_chaos_soak_loses_nothing_and_doubles_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    plan = Plan.for_messages(CI_MESSAGES)
    figures = _run(plan, capsys)
    _assert_clean(figures, plan)
    assert figures.messages == CI_MESSAGES


@pytest.mark.slow
@pytest.mark.timeout(0)
def test_long_chaos_soak(
    request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]
) -> None:
    messages = request.config.getoption("--messages", default=None) or int(
        os.environ.get("CONVEYOR_CHAOS_MESSAGES", 500_000)
    )
    plan = Plan.for_messages(messages)
    _assert_clean(_run(plan, capsys), plan)
