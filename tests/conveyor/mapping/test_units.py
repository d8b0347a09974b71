"""Unit conversion: exact, material-specific factors over global ones, declared rounding."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest

from conveyor.config import Project
from conveyor.errors import MappingError
from conveyor.mapping import MappingEngine
from conveyor.mapping.units import round_fraction


def test_material_specific_factor_wins_over_global(mapping_engine: MappingEngine) -> None:
    units = mapping_engine.units
    # FG-5001 has its own 12 PCS per BOX; the global factor is 10.
    assert units.convert("FG-5001", Decimal(2), "BOX", "PCS") == Decimal(24)
    assert units.convert("SF-4001", Decimal(2), "BOX", "PCS") == Decimal(20)
    assert units.convert(None, Decimal(2), "BOX", "PCS") == Decimal(20)


def test_grams_to_kilograms_is_exact(mapping_engine: MappingEngine) -> None:
    result = mapping_engine.units.convert("RM-1001", Decimal(1500), "G", "KG")
    assert result == Decimal("1.5")
    assert str(result) == "1.5"


def test_chained_and_reverse_factors(mapping_engine: MappingEngine) -> None:
    units = mapping_engine.units
    assert units.convert("RM-1001", Decimal("0.0025"), "T", "G") == Decimal(2500)
    assert units.convert("RM-1001", Decimal(3), "BAG", "KG") == Decimal(75)
    assert units.convert("RM-1001", Decimal(1), "BAG", "G") == Decimal(25000)
    assert units.convert("PK-3002", Decimal(2), "ROLL", "MM") == Decimal(600000)
    assert units.factor("FG-5001", "PCS", "BOX") == Fraction(1, 12)


def test_rounding_follows_the_target_unit(mapping_engine: MappingEngine) -> None:
    units = mapping_engine.units
    # BOX keeps 3 decimals, half_up: 5 PCS = 0.41666… BOX
    assert units.convert("FG-5001", Decimal(5), "PCS", "BOX") == Decimal("0.417")
    # KG keeps 6 decimals, half_even: 0.0000005 KG = 0.0005 G → 1 mG rounds to even
    assert units.convert("RM-1001", Decimal("0.0005"), "G", "KG") == Decimal("0")
    assert units.convert("RM-1001", Decimal("0.0015"), "G", "KG") == Decimal("0.000002")


def test_exact_rule_refuses_to_round(mapping_engine: MappingEngine) -> None:
    with pytest.raises(MappingError) as caught:
        mapping_engine.units.convert("FG-5001", Decimal("0.05"), "BOX", "PCS")  # 0.6 PCS
    problem = caught.value.problems[0]
    assert problem.rule == "unit.rounding"
    assert problem.extra["code"] == "PCS"


def test_no_path_names_both_units(mapping_engine: MappingEngine) -> None:
    with pytest.raises(MappingError) as caught:
        mapping_engine.units.convert("RM-1001", Decimal(1), "PCS", "KG")
    problem = caught.value.problems[0]
    assert problem.rule == "unit.conversion"
    assert "PCS" in problem.message
    assert "KG" in problem.message
    assert problem.extra["table"] == "unit_conversions"


def test_unit_codes_per_system(mapping_engine: MappingEngine) -> None:
    units = mapping_engine.units
    assert units.canonical("sap", "KGM") == "KG"
    assert units.canonical("kingdee", "kg") == "KG"
    assert units.canonical("yonyou", "千克") == "KG"  # a row for every system (*)
    assert units.canonical("mes", "KG") == "KG"  # the canonical code means itself
    assert units.canonical("mes", "KGM") is None  # SAP's code is SAP's only
    assert units.to_base("FG-5001", Decimal(1), "BOX") == (Decimal(12), "PCS")


@pytest.mark.parametrize(
    ("value", "decimals", "rule", "expected"),
    [
        (Fraction(5, 2), 0, "half_up", "3"),
        (Fraction(-5, 2), 0, "half_up", "-3"),
        (Fraction(5, 2), 0, "half_even", "2"),
        (Fraction(7, 2), 0, "half_even", "4"),
        (Fraction(-7, 3), 1, "down", "-2.3"),
        (Fraction(-7, 3), 1, "floor", "-2.4"),
        (Fraction(7, 3), 1, "up", "2.4"),
        (Fraction(7, 3), 1, "ceiling", "2.4"),
        (Fraction(1, 4), 2, "exact", "0.25"),
    ],
)
def test_round_fraction(value: Fraction, decimals: int, rule: str, expected: str) -> None:
    assert round_fraction(value, decimals, rule) == Decimal(expected)


def test_round_fraction_exact_refuses() -> None:
    assert round_fraction(Fraction(1, 3), 6, "exact") is None


def test_material_path_wins_over_a_shorter_global_one(project: Project) -> None:
    with (project.master_data_dir / "units.csv").open("a", encoding="utf-8") as fh:
        fh.write("CASE,case,package,3,half_up\n")
    with (project.master_data_dir / "unit_conversions.csv").open("a", encoding="utf-8") as fh:
        fh.write(",CASE,PCS,50\nFG-5001,CASE,BOX,4\n")
    units = MappingEngine.load(project).units
    assert units.convert("FG-5001", Decimal(1), "CASE", "PCS") == Decimal(48)  # 4 × 12
    assert units.convert("FG-5002", Decimal(1), "CASE", "PCS") == Decimal(50)


def test_a_38_digit_quantity_converts_exactly(mapping_engine: MappingEngine) -> None:
    # 26 + 12 digits of grams: the product needs more than Python's default 28 digits
    grams = Decimal("12345678901234567890123.456")
    result = mapping_engine.units.convert("RM-1001", grams, "G", "KG")
    assert result == Decimal("12345678901234567890.123456")


@pytest.mark.parametrize("tonnes", [Decimal("1E+24"), Decimal("1E+999999")])
def test_a_conversion_beyond_the_ledger_range_is_refused(
    mapping_engine: MappingEngine, tonnes: Decimal
) -> None:
    with pytest.raises(MappingError) as caught:
        mapping_engine.units.convert("RM-1001", tonnes, "T", "G")  # 1E+30 G does not fit
    assert caught.value.problems[0].rule == "quantity.range"
