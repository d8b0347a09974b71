"""Turn the declarative value specs of a mapping file into plain Python closures, once.

A spec is evaluated as: source (``path`` JMESPath · ``column`` literal key · ``const``) →
``default`` when missing → ``zfill``/``case`` → ``map`` → ``lookup`` (a dict index of a
master-data table) → ``parse`` → ``negate``/``abs`` → ``format``. ``when`` makes a value
conditional; ``cases`` picks the first spec whose ``when`` holds. Simple paths (``MATNR``,
``a.b``) become dict lookups; anything else is a compiled JMESPath expression with one extra
function, ``number(x)``.

Compilation never raises on a wrong spec: it records a ``FileProblem`` with the line of the spec
and compiles a placeholder, so ``conveyor mappings check`` can report every problem at once.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import jmespath
import jmespath.exceptions
import jmespath.functions

from conveyor.errors import MappingError, Problem
from conveyor.mapping.parsers import (
    ISO,
    DateParser,
    ParseError,
    check_date_format,
    format_date,
    parse_decimal,
)
from conveyor.quantity import QuantityError, format_quantity, parse_quantity
from conveyor.yamlfile import FileProblem, LoadedYaml

if TYPE_CHECKING:
    from conveyor.mapping.masterdata import MasterData
    from conveyor.mapping.units import Units

Getter = Callable[[Any], Any]
MISSING: Any = type(
    "Missing", (), {"__repr__": lambda self: "MISSING", "__bool__": lambda s: False}
)()
"""Returned by a value whose ``when`` is false or whose source is absent: the field is left out."""

SPEC_KEYWORDS = (
    "path",
    "column",
    "const",
    "default",
    "required",
    "when",
    "cases",
    "zfill",
    "case",
    "map",
    "lookup",
    "parse",
    "negate",
    "abs",
    "format",
    "description",
)
SPEC_MARKERS = ("path", "column", "const", "lookup", "cases", "default", "parse", "map")
"""An object node with any of these keys is a value spec; otherwise it is an output object."""

_TRUE = {"1", "true", "yes", "y", "x", "是", "t"}
_FALSE = {"0", "false", "no", "n", "否", "f", ""}


class Fail(Exception):
    """A value could not be produced; caught per field and turned into a ``Problem``."""

    def __init__(
        self, rule: str, message: str, value: Any = None, extra: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.rule = rule
        self.message = message
        self.value = value
        self.extra = extra or {}


@dataclass
class Failure:
    """One failed field of a record: the output field, the spec's line, and why."""

    field: str
    mapping_line: int
    fail: Fail


class _Functions(jmespath.functions.Functions):
    """JMESPath functions added for mappings."""

    @jmespath.functions.signature({"types": []})
    def _func_number(self, value: Any) -> Decimal | None:
        """``number(x)``: the exact decimal of text such as ``'1,234.5'``; null if not a number."""
        try:
            return parse_quantity(value)
        except QuantityError:
            return None


JMES_OPTIONS = jmespath.Options(custom_functions=_Functions())


def _truthy(value: Any) -> bool:
    """JMESPath truthiness: false, null, empty text/list/object are false; 0 is true."""
    if value is None or value is False:
        return False
    if isinstance(value, str | list | dict):
        return len(value) > 0
    return True


def _did_you_mean(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


@dataclass
class Compiler:
    """Compiles the specs of one mapping file against the master data; collects problems."""

    loaded: LoadedYaml
    display: str
    system_id: str
    master: MasterData
    units: Units
    zone: tzinfo
    problems: list[FileProblem] = field(default_factory=list)
    tables_used: set[str] = field(default_factory=set)

    # ------------------------------------------------------------------ problems
    def line(self, path: Sequence[Any]) -> int:
        """The file line of the spec at ``path``."""
        return self.loaded.line_of(list(path))

    def problem(self, path: Sequence[Any], message: str) -> None:
        """Record a problem at the line of ``path``."""
        where = ".".join(str(p) for p in path)
        self.problems.append(FileProblem(self.display, self.line(path), f"{where}: {message}"))

    # ------------------------------------------------------------------ paths
    def path(self, expression: Any, at: Sequence[Any]) -> Getter:
        """A getter for a JMESPath expression (plain dict access for simple paths)."""
        if not isinstance(expression, str) or not expression.strip():
            self.problem(at, f"expected a JMESPath expression, got {expression!r}")
            return lambda data: None
        try:
            compiled = jmespath.compile(expression)
        except jmespath.exceptions.JMESPathError as exc:
            message = str(exc).replace("\n", " ")
            self.problem(at, f"JMESPath {expression!r} does not parse: {message}")
            return lambda data: None
        return _fast_getter(compiled)

    def condition(self, expression: Any, at: Sequence[Any]) -> Callable[[Any], bool]:
        """A JMESPath condition (JMESPath truthiness)."""
        getter = self.path(expression, at)
        return lambda data: _truthy(getter(data))

    # ------------------------------------------------------------------ specs
    def value(self, spec: Any, at: Sequence[Any]) -> Getter:
        """Compile one value spec (text is a path; a non-text scalar is a constant)."""
        if isinstance(spec, str):
            return self._with_source(self.path(spec, at), {}, at)
        if not isinstance(spec, Mapping):
            constant = spec
            return lambda data: constant
        unknown = [k for k in spec if k not in SPEC_KEYWORDS]
        for key in unknown:
            self.problem([*at, key], f"unknown key {key!r}{_did_you_mean(key, SPEC_KEYWORDS)}")
        sources = [k for k in ("path", "column", "const") if k in spec]
        if len(sources) > 1:
            self.problem(at, f"use one of path, column, const (found {', '.join(sources)})")
        lookup = spec.get("lookup")
        if sources and isinstance(lookup, Mapping) and "match" in lookup:
            self.problem(
                [*at, "lookup", "match"],
                f"lookup.match takes its values from its own specs; drop {sources[0]} "
                "(or use lookup.from)",
            )
        if "cases" in spec:
            getter = self._cases(spec, at)
        else:
            source: Getter
            if "const" in spec:
                constant = spec["const"]
                source = lambda data: constant  # noqa: E731
            elif "path" in spec:
                source = self.path(spec["path"], [*at, "path"])
            elif "column" in spec:
                source = _key_getter(str(spec["column"]))
            elif isinstance(spec.get("lookup"), Mapping) and "match" in spec["lookup"]:
                source = self._match_source(spec["lookup"]["match"], [*at, "lookup", "match"])
            else:
                source = lambda data: None  # noqa: E731
            getter = self._with_source(source, spec, at)
        if "when" in spec:
            condition = self.condition(spec["when"], [*at, "when"])
            inner = getter

            def conditional(data: Any) -> Any:
                return inner(data) if condition(data) else MISSING

            return conditional
        return getter

    def _cases(self, spec: Mapping[str, Any], at: Sequence[Any]) -> Getter:
        cases = spec["cases"] if isinstance(spec["cases"], list) else []
        compiled: list[tuple[Callable[[Any], bool] | None, Getter]] = []
        for index, case in enumerate(cases):
            where = [*at, "cases", index]
            if not isinstance(case, Mapping):
                self.problem(where, "a case must be a value spec with `when`")
                continue
            condition = self.condition(case["when"], [*where, "when"]) if "when" in case else None
            body = {k: v for k, v in case.items() if k != "when"}
            compiled.append((condition, self.value(body, where)))

        def choose(data: Any) -> Any:
            for condition, getter in compiled:
                if condition is None or condition(data):
                    return getter(data)
            return MISSING

        return choose

    def _match_source(self, match: Any, at: Sequence[Any]) -> Getter:
        if not isinstance(match, Mapping) or not match:
            self.problem(at, "match must name columns and their value specs")
            return lambda data: None
        getters = [self.value(v, [*at, k]) for k, v in match.items()]

        def source(data: Any) -> Any:
            parts = tuple(_text(g(data)) for g in getters)
            return parts if any(parts) else None

        return source

    def _with_source(self, source: Getter, spec: Mapping[str, Any], at: Sequence[Any]) -> Getter:
        steps = self._steps(spec, at)
        has_default = "default" in spec
        default = spec.get("default")
        required = bool(spec.get("required"))

        def evaluate(data: Any) -> Any:
            value = source(data)
            if value.__class__ is str:
                value = value.strip()
            if value is None or value == "" or value is MISSING:
                if has_default:
                    value = default
                    if value is None or value == "":
                        return value
                elif required:
                    raise Fail("required", "no value (the field is required)", None)
                else:
                    return MISSING
            for step in steps:
                value = step(value)
            return value

        key = getattr(source, "key_name", None)
        if key is not None and len(steps) <= 1 and not has_default and not required:
            return _keyed(key, steps[0] if steps else None)
        if not steps and not has_default and not required:

            def plain(data: Any) -> Any:
                value = source(data)
                if value.__class__ is str:
                    value = value.strip()
                    return value if value else MISSING
                return MISSING if value is None else value

            return plain
        return evaluate

    def _steps(self, spec: Mapping[str, Any], at: Sequence[Any]) -> list[Callable[[Any], Any]]:
        steps: list[Callable[[Any], Any]] = []
        if "zfill" in spec:
            width = int(spec["zfill"])
            steps.append(lambda v: _text(v).zfill(width) if _text(v).isdigit() else _text(v))
        if spec.get("case") == "upper":
            steps.append(lambda v: _text(v).upper())
        elif spec.get("case") == "lower":
            steps.append(lambda v: _text(v).lower())
        if "map" in spec:
            steps.append(self._map(spec["map"], [*at, "map"]))
        if "lookup" in spec:
            steps.append(self._lookup(spec["lookup"], [*at, "lookup"]))
        if "parse" in spec:
            steps.append(self._parse(spec["parse"], [*at, "parse"]))
        if spec.get("negate"):
            steps.append(lambda v: -_decimal(v))
        if spec.get("abs"):
            steps.append(lambda v: abs(_decimal(v)))
        if "format" in spec:
            steps.append(self._format(spec["format"], [*at, "format"]))
        return steps

    def _map(self, table: Any, at: Sequence[Any]) -> Callable[[Any], Any]:
        if not isinstance(table, Mapping) or not table:
            self.problem(at, "map must be an object of value → value")
            return lambda v: v
        translation = {_text(k): v for k, v in table.items()}
        fallback = translation.pop("*", MISSING)
        listed = ", ".join(sorted(translation))

        def translate(value: Any) -> Any:
            found = translation.get(_text(value), MISSING)
            if found is not MISSING:
                return found
            if fallback is not MISSING:
                return fallback
            raise Fail("map", f"{value!r} is not one of {listed}", value)

        return translate

    def _lookup(self, spec: Any, at: Sequence[Any]) -> Callable[[Any], Any]:
        if not isinstance(spec, Mapping):
            self.problem(at, "lookup must be an object with table, from (or match) and to")
            return lambda v: v
        name = str(spec.get("table", ""))
        table = self.master.table(name)
        if table is None:
            self.problem(
                [*at, "table"],
                f"unknown table {name!r} (no master_data/{name}.csv)"
                + _did_you_mean(name, list(self.master.tables)),
            )
            return lambda v: v
        self.tables_used.add(name)
        columns = list(table.columns)
        keys = [str(spec["from"])] if "from" in spec else [str(k) for k in spec.get("match", {})]
        where = [(str(k), str(v)) for k, v in (spec.get("where") or {}).items()]
        to = str(spec.get("to", ""))
        bad = False
        for column, where_at in (
            *((k, [*at, "from" if "from" in spec else "match"]) for k in keys),
            (to, [*at, "to"]),
            *((k, [*at, "where", k]) for k, _ in where),
        ):
            if column not in columns:
                bad = True
                self.problem(
                    where_at,
                    f"table {name} has no column {column!r}" + _did_you_mean(column, columns),
                )
        if bad:
            return lambda v: v
        ignore_case = bool(spec.get("ignore_case"))
        optional = bool(spec.get("optional"))
        index = self.master.index(name, keys, to, where, ignore_case=ignore_case)
        label = "+".join(keys)
        file_name = f"{name}.csv"
        filt = "".join(f" and {k} = {v!r}" for k, v in where)

        def lookup(value: Any) -> Any:
            if value.__class__ is tuple:
                key: Any = tuple(p.casefold() for p in value) if ignore_case else value
                code = "/".join(value)
            else:
                code = value if value.__class__ is str else _text(value)
                key = code.casefold() if ignore_case else code
            found = index.get(key)
            if found:
                return found
            if optional:
                return MISSING
            message = (
                f"{file_name} row with {label} = {code!r}{filt} has no {to}"
                if found == ""
                else f"no row in {file_name} with {label} = {code!r}{filt}"
            )
            raise Fail(
                "lookup",
                message,
                code,
                {"table": name, "column": label, "code": code, "to": to},
            )

        return lookup

    def _parse(self, spec: Any, at: Sequence[Any]) -> Callable[[Any], Any]:
        if spec == "decimal":
            return _parse_decimal_step(False)
        if isinstance(spec, Mapping) and "decimal" in spec:
            return _parse_decimal_step(bool((spec["decimal"] or {}).get("decimal_comma")))
        if spec == "integer":
            return _parse_integer
        if spec == "text":
            return _text
        if spec == "boolean":
            return _parse_boolean
        if spec == "datetime" or (isinstance(spec, Mapping) and "date" in spec):
            formats: list[str]
            if spec == "datetime":
                formats = [ISO]
            else:
                raw = spec["date"]
                formats = [raw] if isinstance(raw, str) else [str(f) for f in raw]
            for fmt in formats:
                why = check_date_format(fmt)
                if why:
                    self.problem([*at, "date"], why)
            parser = DateParser(formats, self.zone)

            def parse_date(value: Any) -> datetime:
                try:
                    return parser(value)
                except ParseError as exc:
                    raise Fail("parse.date", str(exc), value) from None

            return parse_date
        self.problem(
            at, f"unknown parse {spec!r}: use decimal, integer, text, boolean, datetime or date"
        )
        return lambda v: v

    def _format(self, spec: Any, at: Sequence[Any]) -> Callable[[Any], Any]:
        if spec == "text":
            return _text
        if spec == "decimal":
            return _decimal
        if spec == "integer":
            return _parse_integer
        if isinstance(spec, Mapping) and "date" in spec:
            fmt = str(spec["date"])
            why = check_date_format(fmt)
            if why:
                self.problem([*at, "date"], why)
            zone = self.zone

            def as_date(value: Any) -> str:
                try:
                    return format_date(value, fmt, zone)
                except (ParseError, ValueError) as exc:
                    raise Fail("format.date", f"not a timestamp: {exc}", value) from None

            return as_date
        self.problem(at, f"unknown format {spec!r}: use text, decimal, integer or date")
        return lambda v: v

    # ------------------------------------------------------------------ trees
    def node(self, node: Any, at: Sequence[Any], *, outbound: bool) -> Builder:
        """Compile an output node: value spec, object of nodes, list of nodes or ``each``."""
        if isinstance(node, Mapping) and "each" in node:
            return self.each(node, at, outbound=outbound)
        if isinstance(node, Mapping) and not any(k in node for k in SPEC_MARKERS):
            if outbound:
                for key in node:
                    close = _misspelt_keyword(str(key))
                    if close:
                        self.problem(
                            [*at, key],
                            f"output key {key!r} looks like a misspelt {close[0]!r}",
                        )
            return self.fields(node, at, outbound=outbound)
        if isinstance(node, list):
            items = [self.node(item, [*at, i], outbound=outbound) for i, item in enumerate(node)]

            def build_list(data: Any, failures: list[Failure], prefix: str) -> Any:
                return [item(data, failures, f"{prefix}[{i}]") for i, item in enumerate(items)]

            return build_list
        getter = self.value(node, at)
        line = self.line(at)

        def build_value(data: Any, failures: list[Failure], prefix: str) -> Any:
            try:
                value = getter(data)
            except Fail as fail:
                failures.append(Failure(prefix, line, fail))
                return MISSING
            return value.isoformat() if value.__class__ is datetime else value

        return build_value

    def fields(
        self,
        fields: Mapping[str, Any],
        at: Sequence[Any],
        *,
        outbound: bool,
        convert: Any = None,
        convert_at: Sequence[Any] = (),
    ) -> Builder:
        """Compile an object of output fields; ``convert`` adds the unit conversion step."""
        entries: list[tuple[str, int, Getter | None, Builder | None]] = []
        for name, spec in fields.items():
            where = [*at, name]
            is_value = isinstance(spec, str) or (
                isinstance(spec, Mapping)
                and "each" not in spec
                and any(k in spec for k in SPEC_MARKERS)
            )
            if is_value:
                entries.append((str(name), self.line(where), self.value(spec, where), None))
            elif isinstance(spec, Mapping | list):
                builder = self.node(spec, where, outbound=outbound)
                entries.append((str(name), self.line(where), None, builder))
            else:
                entries.append((str(name), self.line(where), _constant(spec), None))
        converter = self.converter(convert, convert_at) if convert else None

        def build(data: Any, failures: list[Failure], prefix: str) -> dict[str, Any]:
            out: dict[str, Any] = {}
            for name, line, getter, nested in entries:
                if getter is not None:
                    try:
                        value = getter(data)
                    except Fail as fail:
                        where = f"{prefix}.{name}" if prefix else name
                        failures.append(Failure(where, line, fail))
                        continue
                    if value is MISSING:
                        continue
                    out[name] = value.isoformat() if value.__class__ is datetime else value
                elif nested is not None:
                    value = nested(data, failures, f"{prefix}.{name}" if prefix else name)
                    if value is MISSING or (value.__class__ is dict and not value):
                        continue  # an object with nothing in it is left out ({"FNumber": …})
                    out[name] = value
            if converter is not None:
                converter(out, failures, f"{prefix}." if prefix else "")
            return out

        return build

    def each(self, node: Mapping[str, Any], at: Sequence[Any], *, outbound: bool) -> Builder:
        """Compile ``{each: path, fields: {...}}``: one output item per element of the list."""
        items = self.path(node.get("each"), [*at, "each"])
        condition = self.condition(node["when"], [*at, "when"]) if "when" in node else None
        fields = node.get("fields")
        if not isinstance(fields, Mapping):
            self.problem(at, "each needs `fields`: the output of one element")
            fields = {}
        item = self.fields(
            fields,
            [*at, "fields"],
            outbound=outbound,
            convert=node.get("convert_to_base"),
            convert_at=[*at, "convert_to_base"],
        )

        def build_each(data: Any, failures: list[Failure], prefix: str) -> Any:
            if condition is not None and not condition(data):
                return MISSING
            elements = items(data)
            if elements is None:
                return MISSING
            if not isinstance(elements, list):
                elements = [elements]
            return [item(element, failures, f"{prefix}[{i}]") for i, element in enumerate(elements)]

        return build_each

    def converter(
        self, spec: Any, at: Sequence[Any]
    ) -> Callable[[dict[str, Any], list[Failure], str], None]:
        """The ``convert_to_base`` step: unit code → canonical unit → material's base unit."""
        from conveyor.mapping.masterdata import UNIT_TABLES

        names = spec if isinstance(spec, Mapping) else {}
        q = str(names.get("quantity", "quantity"))
        u = str(names.get("uom", "uom"))
        m = str(names.get("material", "material"))
        self.tables_used.update(UNIT_TABLES)
        units = self.units
        system = self.system_id
        line = self.line(at)

        def convert(obj: dict[str, Any], failures: list[Failure], prefix: str) -> None:
            code = obj.get(u)
            if code is None:
                if q in obj:
                    failures.append(
                        Failure(prefix + u, line, Fail("required", "no unit for the quantity"))
                    )
                return
            text = code if code.__class__ is str else _text(code)
            uom = units.canonical(system, text)
            if uom is None:
                failures.append(
                    Failure(
                        prefix + u,
                        line,
                        Fail(
                            "unit",
                            f"unit code {text!r} of system {system} is not in unit_codes.csv "
                            "(nor a canonical unit of units.csv)",
                            text,
                            {"table": "unit_codes", "column": "system+code", "code": text},
                        ),
                    )
                )
                return
            obj[u] = uom
            material = obj.get(m)
            quantity = obj.get(q)
            if material is None or quantity is None:
                return
            base = units.base_uom(material)
            if base is None:
                failures.append(
                    Failure(
                        prefix + m,
                        line,
                        Fail(
                            "lookup",
                            f"material {material!r} is not in materials.csv",
                            material,
                            {"table": "materials", "column": "material", "code": material},
                        ),
                    )
                )
                return
            try:
                number = quantity if quantity.__class__ is Decimal else _decimal(quantity)
                obj[q] = units.convert(material, number, uom, base)
            except Fail as fail:
                failures.append(Failure(prefix + q, line, fail))
                return
            except MappingError as exc:
                for p in exc.problems:
                    name = q if p.field == "quantity" else u
                    failures.append(
                        Failure(prefix + name, line, Fail(p.rule, p.message, p.value, p.extra))
                    )
                return
            obj[u] = base

        return convert


Builder = Callable[[Any, list[Failure], str], Any]
"""A compiled output node: ``(data, failures, field prefix) → value``."""


def _constant(value: Any) -> Getter:
    def constant(data: Any) -> Any:
        return value

    return constant


def _misspelt_keyword(key: str) -> str | None:
    """The spec keyword a lower-case output key seems to misspell (``pth`` → ``path``)."""
    if not key.islower() or key in SPEC_KEYWORDS:
        return None
    for word in difflib.get_close_matches(key, SPEC_KEYWORDS, n=1, cutoff=0.75):
        if abs(len(word) - len(key)) <= 2:
            return word
    return None


def _fast_getter(compiled: Any) -> Getter:
    """Plain ``dict.get`` chains for field and sub-expression paths (and ``a || b`` of them, as
    B2MML mappings write where two versions name a field apart), JMESPath otherwise."""
    plain = _plain_getter(compiled.parsed)
    if plain is not None:
        return plain
    search = compiled.search
    options = JMES_OPTIONS

    def general(data: Any) -> Any:
        try:
            return search(data, options=options)
        except jmespath.exceptions.JMESPathError as exc:
            raise Fail("path", f"JMESPath {compiled.expression!r}: {exc}", None) from None

    return general


def _plain_getter(ast: Mapping[str, Any]) -> Getter | None:
    """A getter without JMESPath for a field, a chain of fields, or ``||`` of those; None for
    anything else."""
    if ast["type"] == "or_expression":
        alternatives = [_plain_getter(child) for child in _alternatives(ast)]
        getters = [getter for getter in alternatives if getter is not None]
        if len(getters) != len(alternatives):
            return None
        return _first_truthy(getters)
    names: list[str] = []
    if ast["type"] == "field":
        names = [ast["value"]]
    elif ast["type"] == "subexpression" and all(c["type"] == "field" for c in ast["children"]):
        names = [c["value"] for c in ast["children"]]
    if len(names) == 1:
        return _key_getter(names[0])
    if not names:
        return None
    return _chain(names)


def _alternatives(ast: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The operands of ``a || b || c`` in order (JMESPath nests them to the left)."""
    if ast["type"] != "or_expression":
        return [ast]
    left, right = ast["children"]
    return [*_alternatives(left), *_alternatives(right)]


def _first_truthy(getters: Sequence[Getter]) -> Getter:
    """``a || b || …`` in one call: the first truthy value, else the last value (as JMESPath);
    one loop instead of a nested closure per ``||``, and truthiness inlined (run per record)."""
    alternatives = tuple(getters)

    def either(data: Any) -> Any:
        value = None
        for getter in alternatives:
            value = getter(data)
            if value is None or value is False:
                continue
            if isinstance(value, str | list | dict) and not value:
                continue
            return value
        return value

    return either


def _chain(names: Sequence[str]) -> Getter:
    """``a.b`` / ``a.b.c``: nested ``dict.get``s, unrolled for the usual two and three names
    (a B2MML record is ``Element.Child[.Leaf]``), a loop beyond."""
    if len(names) == 2:
        first, second = names

        def chain_two(data: Any) -> Any:
            value = data.get(first) if isinstance(data, dict) else None
            return value.get(second) if isinstance(value, dict) else None

        return chain_two
    if len(names) == 3:
        first, second, third = names

        def chain_three(data: Any) -> Any:
            value = data.get(first) if isinstance(data, dict) else None
            value = value.get(second) if isinstance(value, dict) else None
            return value.get(third) if isinstance(value, dict) else None

        return chain_three
    head, rest = names[0], names[1:]

    def chain(data: Any) -> Any:
        value = data.get(head) if isinstance(data, dict) else None
        for name in rest:
            if not isinstance(value, dict):
                return None
            value = value.get(name)
        return value

    return chain


def _key_getter(name: str) -> Getter:
    def get(data: Any) -> Any:
        try:
            return data.get(name)
        except AttributeError:
            return None

    get.key_name = name  # type: ignore[attr-defined]
    return get


def _keyed(key: str, step: Callable[[Any], Any] | None) -> Getter:
    """The common case, inlined: one record key, at most one step (a lookup, a parse)."""
    if step is None:

        def plain_key(data: Any) -> Any:
            try:
                value = data.get(key)
            except AttributeError:
                return MISSING
            if value.__class__ is str:
                value = value.strip()
                return value if value else MISSING
            return MISSING if value is None else value

        return plain_key

    def one_step(data: Any) -> Any:
        try:
            value = data.get(key)
        except AttributeError:
            return MISSING
        if value.__class__ is str:
            value = value.strip()
            if not value:
                return MISSING
        elif value is None or value is MISSING:
            return MISSING
        return step(value)

    return one_step


def _text(value: Any) -> str:
    if value.__class__ is str:
        return value
    if isinstance(value, Decimal):
        return format_quantity(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _decimal(value: Any) -> Decimal:
    if value.__class__ is Decimal:
        return value
    try:
        return parse_decimal(value)
    except ParseError as exc:
        raise Fail("parse.decimal", str(exc), value) from None


def _parse_decimal_step(decimal_comma: bool) -> Callable[[Any], Decimal]:
    def parse(value: Any) -> Decimal:
        try:
            return parse_quantity(value, decimal_comma=decimal_comma)
        except QuantityError as exc:
            raise Fail("parse.decimal", str(exc), value) from None

    return parse


def _parse_integer(value: Any) -> int:
    number = _decimal(value)
    if number != number.to_integral_value():
        raise Fail("parse.integer", f"{value!r} is not a whole number", value)
    return int(number)


def _parse_boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = _text(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise Fail("parse.boolean", f"{value!r} is not yes/no", value)


def problems_of(
    failures: list[Failure], base: Mapping[str, Any], *, file: str | None, line: int | None
) -> MappingError:
    """A ``MappingError`` with one ``Problem`` per failure. Each problem's message names the
    mapping file and line of the rule and the system; its ``extra`` carries ``base`` (system,
    mapping_file, message_type, direction), ``mapping_line`` and the failure's table/column/code."""
    problems = []
    for failure in failures:
        extra = dict(base)
        extra["mapping_line"] = failure.mapping_line
        extra.update(failure.fail.extra)
        where = f"{base.get('mapping_file')}:{failure.mapping_line}"
        problems.append(
            Problem(
                field=failure.field,
                value=failure.fail.value,
                rule=failure.fail.rule,
                message=f"{failure.fail.message} [system {base.get('system')}, rule {where}]",
                file=file,
                line=line,
                extra=extra,
            )
        )
    return MappingError(problems)
