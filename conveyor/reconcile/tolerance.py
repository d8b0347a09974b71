"""Tolerances: how far two systems may disagree on a line and still count as matched.

A rule has an absolute part (in the material's base unit) and/or a relative part (a share of the
reference system's quantity); the allowed difference is the larger of the two ("2 % or 1 unit,
whichever is greater"). Rules are looked up per material, then per material group, then the default.

Written on the command line as ``[material:CODE= | group:NAME=]PARTS`` where PARTS are
comma-separated ``N`` (absolute) and ``N%`` (relative): ``--tolerance 0.001``,
``--tolerance group:RAW=2%``, ``--tolerance material:M-100=0.5,1%``. In ``conveyor.yaml``::

    reconciliation:
      tolerance:
        absolute: 0.001
        relative: 0.5%
        groups: {RAW: {relative: 2%}}
        materials: {M-100: {absolute: 0.5}}
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from conveyor.errors import ConfigError
from conveyor.quantity import QuantityError, format_quantity, parse_quantity

_HUNDRED = Decimal(100)


@dataclass(frozen=True)
class Rule:
    """Allowed difference: ``absolute`` (base unit) and/or ``relative`` (fraction, 0.01 = 1 %)."""

    absolute: Decimal | None = None
    relative: Decimal | None = None

    def allowed(self, reference: Decimal) -> Decimal:
        """The largest difference accepted when the reference system holds ``reference``."""
        allowed = self.absolute or Decimal(0)
        if self.relative:
            allowed = max(allowed, abs(reference) * self.relative)
        return allowed

    def within(self, difference: Decimal, reference: Decimal) -> bool:
        """True when ``difference`` (signed) is inside the rule for ``reference``."""
        return abs(difference) <= self.allowed(reference)

    @property
    def exact(self) -> bool:
        """True when the rule allows no difference at all."""
        return not self.absolute and not self.relative

    def merged(self, other: Rule) -> Rule:
        """This rule with the parts ``other`` sets replaced."""
        return Rule(
            other.absolute if other.absolute is not None else self.absolute,
            other.relative if other.relative is not None else self.relative,
        )

    def as_dict(self) -> dict[str, str | None]:
        """JSON form: decimals as text, relative as a percentage (``"0.5%"``)."""
        return {
            "absolute": None if self.absolute is None else format_quantity(self.absolute),
            "relative": (
                None if self.relative is None else format_quantity(self.relative * _HUNDRED) + "%"
            ),
        }

    def __str__(self) -> str:
        parts = []
        if self.absolute is not None:
            parts.append(format_quantity(self.absolute))
        if self.relative is not None:
            parts.append(format_quantity(self.relative * _HUNDRED) + "%")
        return ",".join(parts) or "0"


@dataclass(frozen=True)
class Tolerance:
    """The rules of one run: a default, per material group and per material (most specific wins)."""

    default: Rule = Rule()
    groups: Mapping[str, Rule] = field(default_factory=dict)
    materials: Mapping[str, Rule] = field(default_factory=dict)

    def rule_for(self, material: str, group: str | None = None) -> Rule:
        """The rule that applies to ``material`` (in ``group``)."""
        rule = self.materials.get(material)
        if rule is not None:
            return rule
        if group is not None:
            rule = self.groups.get(group)
            if rule is not None:
                return rule
        return self.default

    @property
    def scoped(self) -> bool:
        """True when some rule depends on the material or its group."""
        return bool(self.groups or self.materials)

    def as_dict(self) -> dict[str, Any]:
        """JSON form for reports and the stored run."""
        return {
            "default": self.default.as_dict(),
            "groups": {name: rule.as_dict() for name, rule in sorted(self.groups.items())},
            "materials": {code: rule.as_dict() for code, rule in sorted(self.materials.items())},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Tolerance:
        """Read the ``tolerance`` mapping of ``conveyor.yaml`` (or of a stored run)."""
        if not data:
            return cls()
        if not isinstance(data, Mapping):
            raise ConfigError("reconciliation.tolerance must be a mapping", file="conveyor.yaml")
        default = _rule_from_mapping(data, "reconciliation.tolerance")
        if "default" in data:
            default = default.merged(_rule_from_mapping(data["default"], "tolerance.default"))
        groups = {
            str(name): _rule_from_mapping(spec, f"tolerance.groups.{name}")
            for name, spec in (data.get("groups") or {}).items()
        }
        materials = {
            str(code): _rule_from_mapping(spec, f"tolerance.materials.{code}")
            for code, spec in (data.get("materials") or {}).items()
        }
        return cls(default, groups, materials)

    def with_specs(self, specs: Iterable[str]) -> Tolerance:
        """This tolerance with command-line specs applied on top (see the module docstring)."""
        result = self
        for spec in specs:
            result = result._with_spec(spec)
        return result

    def _with_spec(self, spec: str) -> Tolerance:
        text = spec.strip()
        scope, _, parts = text.partition("=") if "=" in text else ("", "", text)
        rule = parse_rule(parts, where=f"--tolerance {spec!r}")
        if not scope:
            return replace(self, default=self.default.merged(rule))
        kind, _, name = scope.partition(":")
        if kind == "material" and name:
            current = self.materials.get(name, Rule())
            return replace(self, materials={**self.materials, name: current.merged(rule)})
        if kind == "group" and name:
            current = self.groups.get(name, Rule())
            return replace(self, groups={**self.groups, name: current.merged(rule)})
        raise ConfigError(
            f"--tolerance {spec!r}: scope must be material:CODE or group:NAME, not {scope!r}"
        )


def parse_rule(text: str, *, where: str = "tolerance") -> Rule:
    """``"0.5"``, ``"1%"`` or ``"0.5,1%"`` → a rule."""
    absolute: Decimal | None = None
    relative: Decimal | None = None
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if part.endswith("%"):
            relative = _non_negative(part[:-1], where) / _HUNDRED
        else:
            absolute = _non_negative(part, where)
    if absolute is None and relative is None:
        raise ConfigError(f"{where}: give an absolute quantity (0.5) and/or a percentage (1%)")
    return Rule(absolute, relative)


def _rule_from_mapping(spec: Any, where: str) -> Rule:
    if isinstance(spec, str | int | float | Decimal) and not isinstance(spec, bool):
        return parse_rule(str(spec) if not isinstance(spec, float) else repr(spec), where=where)
    if not isinstance(spec, Mapping):
        raise ConfigError(
            f"{where}: expected absolute/relative, got {spec!r}", file="conveyor.yaml"
        )
    absolute = spec.get("absolute")
    relative = spec.get("relative")
    rule = Rule(
        None if absolute is None else _non_negative(absolute, f"{where}.absolute"),
        None if relative is None else _relative(relative, f"{where}.relative"),
    )
    return rule


def _relative(value: Any, where: str) -> Decimal:
    """``"2%"`` → 0.02; a bare number is a fraction (0.02)."""
    if isinstance(value, str) and value.strip().endswith("%"):
        return _non_negative(value.strip()[:-1], where) / _HUNDRED
    return _non_negative(value, where)


def _non_negative(value: Any, where: str) -> Decimal:
    try:
        number = parse_quantity(value)
    except QuantityError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    if number < 0:
        raise ConfigError(f"{where}: a tolerance cannot be negative ({value})")
    return number
