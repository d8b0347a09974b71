"""The soak's account (``tests.chaos.soak.tally``) tells delivered, doubled, parked, missing and
unexpected postings apart — a check that could not fail would prove nothing."""

from __future__ import annotations

from collections import Counter

from tests.chaos.soak import Figures, Status, tally


def test_each_kind_of_outcome_is_counted_once() -> None:
    expected = [
        ("mes:A", "erp"),  # held once: delivered
        ("mes:B", "erp"),  # held twice: a duplicate
        ("mes:C", "erp"),  # not held, parked with a reason
        ("mes:D", "erp"),  # not held, the ledger says delivered: missing
        ("mes:E", "erp"),  # held once, the ledger still says in flight
    ]
    held = {"erp": Counter({"mes:A": 1, "mes:B": 2, "mes:E": 1, "mes:Z": 1})}
    status: Status = {
        ("mes", "A", "erp"): ("delivered", None),
        ("mes", "B", "erp"): ("delivered", None),
        ("mes", "C", "erp"): ("parked", "E M7 021 Deficit of SL Unrestricted-use"),
        ("mes", "D", "erp"): ("delivered", None),
        ("mes", "E", "erp"): ("in_flight", None),
    }
    figures = Figures()
    problems = tally(figures, expected, held, status)
    assert (figures.delivered, figures.duplicates, figures.parked, figures.missing) == (2, 2, 1, 1)
    assert problems["duplicates"] == ["mes:B→erp ×2"]
    assert problems["unexpected"] == ["mes:Z→erp"]  # held, but nobody sent it
    assert problems["missing"] == ["mes:D→erp: delivered"]
    assert problems["ledger_disagrees"] == ["mes:E→erp: in_flight"]


def test_a_parked_delivery_without_a_reason_is_missing() -> None:
    figures = Figures()
    tally(figures, [("wh:T1", "sap")], {"sap": Counter()}, {("wh", "T1", "sap"): ("parked", "")})
    assert (figures.parked, figures.missing) == (0, 1)
