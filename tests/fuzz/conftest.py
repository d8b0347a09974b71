"""Fuzz tests: the number of cases each target ran, printed when the session ends."""

from __future__ import annotations

import pytest

from tests.fuzz.harness import PROFILE, summary


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """``fuzz <target>: N cases, M unexpected exceptions`` for every target that ran."""
    lines = summary()
    if lines:
        terminalreporter.section(f"fuzz targets (hypothesis profile {PROFILE})")
        for line in lines:
            terminalreporter.write_line(line)
