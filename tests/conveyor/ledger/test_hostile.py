"""The ledger's hostile sample files (tests/data/hostile/ledger_*.jsonl) give the outcome their
README table row promises, on SQLite and PostgreSQL, and leave every position equal to the sum of
its accepted movements."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conveyor.intake import accept_files
from conveyor.ledger import Ledger
from tests.support.ledger_checks import assert_positions_balance

HOSTILE = Path(__file__).resolve().parents[2] / "data" / "hostile"
PROMISE = re.compile(r"^\| (ledger_\S+\.jsonl) \| accept \| \d+ \| (\d+) \| (\d+) \|", re.MULTILINE)
PROMISES = {
    name: (int(accepted), int(parked))
    for name, accepted, parked in PROMISE.findall((HOSTILE / "README.md").read_text())
}


def test_every_ledger_file_has_a_readme_line() -> None:
    assert set(PROMISES) == {p.name for p in HOSTILE.glob("ledger_*.jsonl")}
    assert len(PROMISES) >= 4


@pytest.mark.parametrize("name", sorted(PROMISES))
def test_hostile_file_outcome(ledger: Ledger, name: str) -> None:
    totals, parked = accept_files(ledger, [HOSTILE / name])
    accepted, parked_count = PROMISES[name]
    assert totals["accepted"] == accepted
    assert totals["rejected"] + totals["conflict"] == parked_count == len(parked)
    assert len(ledger.parked_records()) == parked_count
    for item in parked:
        assert item["file"].endswith(name)
        assert item["line"] >= 1
        assert item["error"]["problems"][0]["rule"]
    assert_positions_balance(ledger)
    again, _ = accept_files(ledger, [HOSTILE / name])  # offered twice: nothing moves
    assert again["accepted"] == 0
    assert len(ledger.parked_records()) == parked_count
    assert_positions_balance(ledger)
