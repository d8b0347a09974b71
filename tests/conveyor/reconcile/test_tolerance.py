"""Tolerances: absolute and/or relative, per material, group or default; specs and config."""

from __future__ import annotations

from decimal import Decimal

import pytest

from conveyor.errors import ConfigError
from conveyor.reconcile.tolerance import Rule, Tolerance, parse_rule


def test_rule_allows_the_larger_of_absolute_and_relative() -> None:
    rule = parse_rule("1,2%")
    assert rule == Rule(Decimal(1), Decimal("0.02"))
    assert rule.allowed(Decimal(10)) == Decimal(1)  # 2 % of 10 is 0.2: the 1 wins
    assert rule.allowed(Decimal(1000)) == Decimal(20)
    assert rule.within(Decimal("-20"), Decimal(1000))
    assert not rule.within(Decimal("20.001"), Decimal(1000))
    assert rule.allowed(Decimal(-1000)) == Decimal(20)  # the size of the reference counts


def test_exact_rule_allows_nothing() -> None:
    rule = Rule()
    assert rule.exact
    assert rule.within(Decimal(0), Decimal(5))
    assert not rule.within(Decimal("0.000000000001"), Decimal(5))


def test_most_specific_rule_wins() -> None:
    tolerance = Tolerance().with_specs(
        ["0.001", "group:raw=2%", "material:RM-1=0.5", "material:RM-1=1%"]
    )
    assert tolerance.rule_for("X", None) == Rule(Decimal("0.001"))
    assert tolerance.rule_for("X", "raw") == Rule(None, Decimal("0.02"))
    # a second spec for the same material adds the relative part to the absolute one
    assert tolerance.rule_for("RM-1", "raw") == Rule(Decimal("0.5"), Decimal("0.01"))
    assert tolerance.scoped


def test_from_config_reads_numbers_percentages_and_scopes() -> None:
    tolerance = Tolerance.from_dict(
        {
            "absolute": 0.001,
            "relative": "0.5%",
            "groups": {"raw": {"relative": 0.02}},
            "materials": {"M-9": "3"},
        }
    )
    assert tolerance.default == Rule(Decimal("0.001"), Decimal("0.005"))
    assert tolerance.groups["raw"] == Rule(None, Decimal("0.02"))
    assert tolerance.materials["M-9"] == Rule(Decimal(3))
    assert tolerance.as_dict()["default"] == {"absolute": "0.001", "relative": "0.5%"}
    assert str(tolerance.default) == "0.001,0.5%"


@pytest.mark.parametrize("spec", ["", "abc", "-1", "1,-2%", "plant:1000=1", "material:=1"])
def test_bad_specs_say_why(spec: str) -> None:
    with pytest.raises(ConfigError):
        Tolerance().with_specs([spec])
