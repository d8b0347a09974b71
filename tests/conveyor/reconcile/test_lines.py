"""The rules of a comparison, through the engine fed in chunks: classification, tolerance, variance
and value, aggregation, lots, units, in-transit explanation, exact decimals."""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

import pytest

from conveyor.reconcile.compare import Comparison
from conveyor.reconcile.lines import ZERO, Line, Transit, _by_report_order, join_key
from conveyor.reconcile.sources import Chunk
from conveyor.reconcile.tolerance import Tolerance

from .masterdata import Costs, Material


def chunk(*rows: tuple[Any, ...]) -> Chunk:
    """Rows ``(material, location, lot, quantity, uom[, description])`` as a chunk."""
    full = [(*r, "") if len(r) == 5 else r for r in rows]
    return Chunk(full, first_line=2)


def compare(systems: list[str], data: dict[str, list[tuple[Any, ...]]], **kwargs: Any) -> Any:
    lot_level = kwargs.pop("lot_level", True)
    comparison = Comparison(systems, lot_level=lot_level)
    for system, rows in data.items():
        comparison.add(system, chunk(*rows), source=f"{system}.csv")
    return comparison.result(**kwargs)


def test_exact_matches_stay_compact() -> None:
    comparison = Comparison(["a", "b", "c"])
    comparison.add("a", chunk(("M1", "L1", "", "10.5", "KG")))
    comparison.add("b", chunk(("M1", "L1", "", "10.5", "KG")))
    comparison.add("c", chunk(("M1", "L1", "", "10.5", "KG")))
    result = comparison.result()
    assert result.exceptions == []
    assert result.exact_keys == [join_key("M1", "L1")]
    (line,) = list(result.lines())
    assert line.status == "match"
    assert line.quantities == {"a": Decimal("10.5"), "b": Decimal("10.5"), "c": Decimal("10.5")}
    assert result.summary.exact == 1


def test_differently_written_equal_quantities_match_exactly() -> None:
    result = compare(
        ["a", "b"],
        {"a": [("M1", "L1", "", "10", "KG")], "b": [("M1", "L1", "", "10.000", "KG")]},
    )
    assert result.summary.matched == 1
    assert result.summary.exact == 1
    assert result.summary.within_tolerance == 0
    assert result.summary.accuracy_pct == 100.0


def test_classification_and_counts() -> None:
    result = compare(
        ["erp", "wms", "mes"],
        {
            "erp": [
                ("M1", "L1", "", "10", "KG"),
                ("M2", "L1", "", "5", "KG"),
                ("M3", "L1", "", "7", "KG"),
                ("M5", "L2", "", "1", "KG"),
            ],
            "wms": [
                ("M1", "L1", "", "10", "KG"),
                ("M2", "L1", "", "6", "KG"),
                ("M4", "L1", "", "3", "KG"),
                ("M5", "L2", "", "1", "KG"),
            ],
            "mes": [
                ("M1", "L1", "", "10", "KG"),
                ("M2", "L1", "", "5", "KG"),
                ("M3", "L1", "", "7", "KG"),
            ],
        },
    )
    status = {line.material: line.status for line in result.lines()}
    assert status == {
        "M1": "match",
        "M2": "quantity_mismatch",
        "M3": "missing_in:wms",
        "M4": "missing_in:erp,mes",
        "M5": "missing_in:mes",
    }
    summary = result.summary
    assert (summary.lines, summary.matched, summary.quantity_mismatch) == (5, 1, 1)
    assert summary.missing == {"erp": 1, "wms": 1, "mes": 2}
    assert summary.missing_lines == 3
    assert summary.accuracy_pct == 20.0
    assert result.has_differences
    by_location = {s.location: s for s in result.by_location}
    assert (by_location["L1"].lines, by_location["L1"].matched) == (4, 1)
    assert by_location["L2"].missing == 1


def test_variance_is_the_largest_signed_difference_from_the_reference() -> None:
    result = compare(
        ["erp", "wms", "mes"],
        {
            "erp": [("M1", "L1", "", "10", "KG")],
            "wms": [("M1", "L1", "", "12", "KG")],
            "mes": [("M1", "L1", "", "7", "KG")],
        },
    )
    (line,) = result.exceptions
    assert line.variances == {"wms": Decimal(2), "mes": Decimal(-3)}
    assert line.variance == Decimal(-3)


def test_missing_rows_count_as_zero_and_value_uses_unit_cost() -> None:
    costs = Costs(Material("M1", "KG", unit_cost=Decimal("12.5")))
    result = compare(
        ["erp", "wms"],
        {"erp": [], "wms": [("M1", "L1", "", "4", "KG")]},
        reference=costs,
    )
    (line,) = result.exceptions
    assert line.status == "missing_in:erp"
    assert line.variance == Decimal(4)
    assert line.variance_value == Decimal(50)
    assert result.summary.variance_value == Decimal(50)


def test_zero_and_no_row_are_the_same_stock() -> None:
    result = compare(
        ["erp", "wms"],
        {"erp": [("M1", "L1", "", "0", "KG")], "wms": []},
    )
    (line,) = result.lines()
    assert line.status == "match"
    assert line.quantities == {"erp": Decimal(0), "wms": None}
    assert result.summary.missing_lines == 0


def test_tolerance_absolute_relative_and_group() -> None:
    costs = Costs(Material("RAW", "KG", group="raw"), Material("FG", "PCS", group="fg"))
    tolerance = Tolerance().with_specs(["0.5", "group:raw=1%"])
    result = compare(
        ["erp", "wms"],
        {
            "erp": [
                ("RAW", "L1", "", "1000", "KG"),
                ("RAW", "L2", "", "10", "KG"),
                ("FG", "L1", "", "100", "PCS"),
                ("FG", "L2", "", "100", "PCS"),
            ],
            "wms": [
                ("RAW", "L1", "", "990", "KG"),  # 1 % of 1000 = 10: within
                ("RAW", "L2", "", "10.6", "KG"),  # 1 % of 10 = 0.1 < 0.5? group rule has no 0.5
                ("FG", "L1", "", "100.5", "PCS"),  # default 0.5: within
                ("FG", "L2", "", "101", "PCS"),
            ],
        },
        tolerance=tolerance,
        reference=costs,
    )
    status = {(line.material, line.location): line.status for line in result.lines()}
    assert status == {
        ("RAW", "L1"): "match",
        ("RAW", "L2"): "quantity_mismatch",
        ("FG", "L1"): "match",
        ("FG", "L2"): "quantity_mismatch",
    }
    assert result.summary.within_tolerance == 2
    assert result.summary.exact == 0
    tolerated = next(line for line in result.lines() if line.material == "RAW")
    assert tolerated.within_tolerance
    assert tolerated.variance == Decimal(-10)
    assert tolerated.tolerance == "1%"


def test_rows_of_one_key_in_one_system_are_summed_exactly() -> None:
    result = compare(
        ["erp", "wms"],
        {
            "erp": [("M1", "L1", "", "0.1", "KG"), ("M1", "L1", "", "0.2", "KG")],
            "wms": [("M1", "L1", "", "0.3", "KG")],
        },
    )
    (line,) = result.lines()
    assert line.status == "match"
    assert line.quantities["erp"] == Decimal("0.3")
    assert result.summary.aggregated_rows == {"erp": 1, "wms": 0}


def test_large_and_fine_decimals_stay_exact() -> None:
    big = "12345678901234567890123456.123456789012"
    result = compare(
        ["erp", "wms"],
        {
            "erp": [("M1", "L1", "", big, "KG")],
            "wms": [("M1", "L1", "", "12345678901234567890123456.123456789013", "KG")],
        },
    )
    (line,) = result.exceptions
    assert line.status == "quantity_mismatch"
    assert line.variance == Decimal("0.000000000001")


def test_lots_are_summed_when_a_system_does_not_track_them() -> None:
    comparison = Comparison(["erp", "wms"])
    comparison.add("erp", chunk(("M1", "L1", "", "12", "KG")))
    comparison.add("wms", chunk(("M1", "L1", "A", "5", "KG"), ("M1", "L1", "B", "7", "KG")))
    assert comparison.rows == {"erp": 1, "wms": 2}
    comparison.collapse_lots()
    result = comparison.result()
    (line,) = result.lines()
    assert (line.lot, line.status, line.quantities["wms"]) == (None, "match", Decimal(12))
    assert not result.lot_level


def test_a_lot_less_run_keys_without_lots_from_the_start() -> None:
    result = compare(
        ["erp", "wms"],
        {"erp": [("M1", "L1", "", "12", "KG")], "wms": [("M1", "L1", "A", "12", "KG")]},
        lot_level=False,
    )
    assert result.summary.exact == 1


def test_a_row_in_another_unit_without_conversion_is_unmapped_not_compared() -> None:
    comparison = Comparison(["erp", "wms"])
    comparison.add("erp", chunk(("M1", "L1", "", "2.5", "KG")), source="erp.csv")
    comparison.add(
        "wms", chunk(("M1", "L1", "", "2500", "G"), ("M2", "L1", "", "1", "PCS")), source="w.csv"
    )
    result = comparison.result()
    assert [u.stage for u in result.unmapped] == ["uom"]
    assert result.unmapped[0].system == "wms"
    assert result.unmapped[0].line == 2
    assert "KG" in result.unmapped[0].reason
    status = {line.material: line.status for line in result.lines()}
    assert status == {"M1": "missing_in:wms", "M2": "missing_in:erp"}


def test_in_transit_explains_a_timing_difference_without_changing_the_count() -> None:
    transit = Transit()
    transit.add(join_key("M1", "L1"), "wms", Decimal(5), "mes:GR-1 → wms (pending)")
    transit.add(join_key("M2", "L1"), "wms", Decimal(1), "mes:GR-2 → wms (pending)")
    result = compare(
        ["hub", "wms"],
        {
            "hub": [("M1", "L1", "", "15", "KG"), ("M2", "L1", "", "15", "KG")],
            "wms": [("M1", "L1", "", "10", "KG"), ("M2", "L1", "", "10", "KG")],
        },
        transit=transit,
    )
    lines = {line.material: line for line in result.lines()}
    assert lines["M1"].status == "quantity_mismatch"
    assert lines["M1"].in_transit == {"wms": Decimal(5)}
    assert lines["M1"].explained_by == "in_transit"
    assert lines["M1"].transit_refs == ["mes:GR-1 → wms (pending)"]
    assert lines["M2"].explained_by is None  # 1 in transit does not explain 5
    assert result.summary.quantity_mismatch == 2
    assert result.summary.explained_in_transit == 1
    assert result.summary.unexplained == 1


def test_in_transit_explains_a_row_not_yet_arrived() -> None:
    transit = Transit()
    transit.add(join_key("M1", "L1", "A"), "wms", Decimal(5))
    result = compare(
        ["hub", "wms"], {"hub": [("M1", "L1", "A", "5", "KG")], "wms": []}, transit=transit
    )
    (line,) = result.lines()
    assert (line.status, line.explained_by) == ("missing_in:wms", "in_transit")


def test_lines_come_by_variance_value_then_exact_matches_by_key() -> None:
    costs = Costs(
        Material("A", "KG", unit_cost=Decimal(1)),
        Material("B", "KG", unit_cost=Decimal(100)),
        Material("C", "KG"),
    )
    result = compare(
        ["erp", "wms"],
        {
            "erp": [
                ("Z", "L1", "", "1", "KG"),
                ("A", "L1", "", "10", "KG"),
                ("B", "L1", "", "10", "KG"),
                ("C", "L1", "", "10", "KG"),
                ("Y", "L1", "", "1", "KG"),
            ],
            "wms": [
                ("Z", "L1", "", "1", "KG"),
                ("A", "L1", "", "1", "KG"),
                ("B", "L1", "", "9", "KG"),
                ("C", "L1", "", "1000", "KG"),
                ("Y", "L1", "", "1", "KG"),
            ],
        },
        reference=costs,
    )
    assert [line.material for line in result.lines()] == ["B", "A", "C", "Y", "Z"]
    assert result.summary.lines_without_value == 1


def test_comparison_needs_two_distinct_systems() -> None:
    with pytest.raises(ValueError, match="two systems"):
        Comparison(["erp"])
    with pytest.raises(ValueError, match="twice"):
        Comparison(["erp", "erp"])


def test_descriptions_first_non_empty_per_material() -> None:
    result = compare(
        ["erp", "wms"],
        {
            "erp": [("M1", "L1", "A", "1", "KG", ""), ("M1", "L1", "B", "1", "KG", "first")],
            "wms": [("M1", "L1", "A", "1", "KG", "second")],
        },
    )
    assert {line.description for line in result.lines()} == {"first"}


def test_report_order_valued_lines_first_then_by_size_then_key() -> None:
    rng = random.Random(3)
    lines = []
    for i in range(2000):
        variance = Decimal(rng.randint(-30, 30)) / rng.choice([1, 10, 100])
        value = None if rng.random() < 0.4 else variance * Decimal(rng.choice(["0", "1.5", "2"]))
        lines.append(
            Line(f"M{rng.randint(0, 50)}", f"L{i}", None, "KG", {}, "x", variance, value, False)
        )
    expected = sorted(
        lines,
        key=lambda line: (
            0 if line.variance_value is not None else 1,
            -abs(line.variance_value) if line.variance_value is not None else ZERO,
            -abs(line.variance),
            line.key,
        ),
    )
    _by_report_order(lines)
    assert lines == expected
