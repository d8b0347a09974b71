"""The chaos soak's option: ``pytest tests/chaos --messages N`` (or ``CONVEYOR_CHAOS_MESSAGES``)
sets the size of the long form."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--messages N``: messages of the long soak (default 500,000)."""
    parser.addoption(
        "--messages",
        type=int,
        default=None,
        help="messages of the long chaos soak (default: CONVEYOR_CHAOS_MESSAGES or 500000)",
    )
