"""Canonical messages: build, validate (fast) and serialise the ISA-95-shaped envelope + payload.

Validation compiles each ``schemas/<type>.json`` once with ``fastjsonschema``; when the fast check
fails, ``jsonschema`` lists every problem with its JSON path, rule and value. Semantic checks the
schema cannot express (real calendar dates, decimal scale) follow. Quantities come out as
``Decimal``.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, time
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

from conveyor.errors import Problem, UnreadableRecordError, ValidationError
from conveyor.limits import Limits, current
from conveyor.paths import schemas_dir
from conveyor.quantity import QuantityError, format_quantity, parse_quantity, range_problem
from conveyor.redact import clip

SCHEMA_VERSION = "1.0"
SCHEMA_BASE_URI = "https://conveyor.example/schemas/"

Message = dict[str, Any]
"""A canonical message: the envelope as a dict, payload quantities as ``Decimal`` once validated."""

MESSAGE_TYPES = (
    "production_order",
    "material_consumption",
    "production_output",
    "stock_transfer",
    "stock_adjustment",
    "material_request",
    "stock_snapshot",
    "stock_alert",
)

#  Where quantities and timestamps sit in each payload: "" is the payload itself, "components" a
# list.
_QUANTITY_HOLDERS = {"": ("quantity",), "components": ("quantity",), "rows": ("quantity",)}
_TIMESTAMP_FIELDS = ("scheduled_start", "scheduled_end", "needed_by", "as_of")


def _load_schema(uri: str) -> dict[str, Any]:
    """Resolve a schema URI to its file in ``schemas/``; never touches the network."""
    if not uri.startswith(SCHEMA_BASE_URI):
        raise ValueError(f"refusing to load schema from outside schemas/: {uri}")
    name = uri[len(SCHEMA_BASE_URI) :].split("#", 1)[0]
    path = (schemas_dir() / name).resolve()
    if path.parent != schemas_dir().resolve():
        raise ValueError(f"schema name escapes schemas/: {name}")
    with path.open(encoding="utf-8") as fh:
        data: dict[str, Any] = json.load(fh)
    return data


@cache
def schema(message_type: str) -> dict[str, Any]:
    """The JSON Schema of one message type (loaded once)."""
    if message_type not in MESSAGE_TYPES:
        raise KeyError(message_type)
    return _load_schema(SCHEMA_BASE_URI + f"{message_type}.json")


_CODE_CLASS = "^[^\\u0000-"
"""How the code and free-text patterns of ``common.json`` begin (a class of refused characters)."""


class _PrintableFirst:
    """A code pattern's regex behind a C-speed shortcut: text that ``str.isprintable`` accepts
    holds none of the refused characters (all are Cc, Cf, Cs, Zl or Zp), so only the rare other
    text is scanned by the full class, whose astral ranges make it slow for every string."""

    __slots__ = ("_regex",)

    def __init__(self, regex: re.Pattern[str]) -> None:
        self._regex = regex

    def search(self, text: str) -> object:
        """Truthy when ``text`` has none of the refused characters (as ``re.search``)."""
        return True if text.isprintable() else self._regex.search(text)


@cache
def _fast_validator(message_type: str) -> Callable[[Any], Any]:
    import fastjsonschema

    validator = fastjsonschema.compile(
        schema(message_type), handlers={"https": _load_schema}, use_default=False
    )
    patterns = getattr(validator, "__globals__", {}).get("REGEX_PATTERNS")
    if isinstance(patterns, dict):  # the compiled module's regexes; absent: the plain regex
        for source, regex in list(patterns.items()):
            if source.startswith(_CODE_CLASS) and isinstance(regex, re.Pattern):
                patterns[source] = _PrintableFirst(regex)
    return validator


@cache
def _full_validator(message_type: str) -> Any:
    from jsonschema import Draft202012Validator, FormatChecker
    from referencing import Registry, Resource

    # attrs aliases ``_retrieve`` to ``retrieve``; mypy's attrs plugin does not see the alias
    registry: Registry[Any] = Registry(
        retrieve=lambda uri: Resource.from_contents(_load_schema(uri))  # type: ignore[call-arg]
    )
    return Draft202012Validator(
        schema(message_type), registry=registry, format_checker=FormatChecker()
    )


def _path_of(parts: Iterator[Any] | list[Any]) -> str:
    out = "$"
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _explain(err: Any) -> str:
    """The validator's message, with the field's description when a regex alone would puzzle."""
    described = err.schema.get("description") if isinstance(err.schema, dict) else None
    if err.validator == "pattern" and described:
        return f"{err.instance!r} is not valid here: {described}"
    return str(err.message)


def _problem_of(err: Any) -> Problem:
    path = list(err.absolute_path)
    value = err.instance if not isinstance(err.instance, dict | list) else None
    if err.validator == "required" and isinstance(err.instance, dict):
        missing = [name for name in err.validator_value if name not in err.instance]
        if missing:  # name the missing field itself, not its parent
            return Problem(_path_of([*path, missing[0]]), None, "required", "is required")
    return Problem(
        field=_path_of(path), value=value, rule=str(err.validator), message=_explain(err)
    )


def _schema_problems(message: Any, message_type: str, first: Any) -> list[Problem]:
    """Every schema problem, by ``jsonschema`` (slow path, only for invalid messages); one per
    field, so a bad timestamp is not reported twice (format and pattern)."""
    problems: dict[str, Problem] = {}
    errors = _full_validator(message_type).iter_errors(message)
    for err in sorted(errors, key=lambda e: [str(p) for p in e.absolute_path]):
        problem = _problem_of(err)
        problems.setdefault(problem.field, problem)
    if not problems:  # fastjsonschema and jsonschema disagree only on exotic inputs
        path = getattr(first, "path", ["data"])[1:]
        rule = getattr(first, "rule", "?")
        value = getattr(first, "value", None)
        definition = getattr(first, "definition", None) or {}
        text = str(first)
        if rule == "pattern" and definition.get("description"):  # e.g. a code ending in "\n"
            text = f"{value!r} is not valid here: {definition['description']}"
        return [Problem(_path_of(path), value, rule, text)]
    return list(problems.values())


@cache
def _quantity_kinds(message_type: str) -> dict[str, str]:
    """Which ``common.json`` quantity definition each quantity holder of a type refers to
    (``quantity``, ``positive_quantity``, ``nonzero_quantity``), read from its schema."""
    payload = schema(message_type).get("properties", {}).get("payload", {})
    out: dict[str, str] = {}
    for holder in _QUANTITY_HOLDERS:
        node = payload.get("properties", {})
        if holder:
            node = node.get(holder, {}).get("items", {}).get("properties", {})
        ref = node.get("quantity", {}).get("$ref", "")
        if ref:
            out[holder] = ref.rsplit("/", 1)[-1]
    return out


def _shown(value: Any) -> Any:
    """A rejected value as it is kept in a problem: short texts as they are, long ones clipped."""
    if isinstance(value, str | int | Decimal) and not isinstance(value, bool):
        text = value if isinstance(value, str) else format_quantity(Decimal(value))
        return clip(text, 80) if len(text) > 80 else value
    return value


def _parse_timestamp(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("z", "Z").replace("t", "T"))
    if parsed.tzinfo is None:
        raise ValueError("timestamp has no UTC offset")
    return parsed


def _semantic_problems(message: Message) -> list[Problem]:
    """Checks beyond the schema: real dates, exact decimals that fit the ledger's scale."""
    problems: list[Problem] = []
    payload = message["payload"]
    for fieldname in ("occurred_at",):
        try:
            _parse_timestamp(message[fieldname])
        except ValueError as exc:
            problems.append(Problem(f"$.{fieldname}", message[fieldname], "timestamp", str(exc)))
    for fieldname in _TIMESTAMP_FIELDS:
        if fieldname in payload:
            try:
                _parse_timestamp(payload[fieldname])
            except ValueError as exc:
                problems.append(
                    Problem(f"$.payload.{fieldname}", payload[fieldname], "timestamp", str(exc))
                )
    kinds = _quantity_kinds(message["type"])
    for holder, fields in _QUANTITY_HOLDERS.items():
        items = [payload] if holder == "" else payload.get(holder, [])
        for index, item in enumerate(items):
            for fieldname in fields:
                if fieldname not in item:
                    continue
                where = (
                    f"$.payload.{fieldname}"
                    if holder == ""
                    else f"$.payload.{holder}[{index}].{fieldname}"
                )
                raw = item[fieldname]
                try:
                    quantity = parse_quantity(raw)
                except QuantityError as exc:
                    problems.append(Problem(where, _shown(raw), "decimal", str(exc)))
                    continue
                # JSON numbers skip the schema's text pattern: the same bounds, checked here
                problem = range_problem(quantity)
                kind = kinds.get(holder)
                if problem is None and kind == "positive_quantity" and quantity <= 0:
                    problem = "must be greater than zero"
                elif problem is None and kind == "nonzero_quantity" and quantity == 0:
                    problem = "must not be zero"
                if problem is not None:
                    problems.append(Problem(where, _shown(raw), "decimal", problem))
                else:
                    item[fieldname] = quantity
    return problems


def validate(message: Any) -> Message:
    """Validate a canonical message and return a copy with quantities as ``Decimal``.

    Raises ``ValidationError`` listing each problem's JSON path, rule and offending value.
    """
    if not isinstance(message, dict):
        raise ValidationError(
            [Problem("$", type(message).__name__, "type", "a message must be a JSON object")]
        )
    message_type = message.get("type")
    if message_type not in MESSAGE_TYPES:
        raise ValidationError(
            [
                Problem(
                    "$.type",
                    message_type,
                    "enum",
                    f"unknown message type; expected one of {', '.join(MESSAGE_TYPES)}",
                )
            ]
        )
    try:
        validator = _fast_validator(message_type)
    except FileNotFoundError:
        raise ValidationError(
            [Problem("$.type", message_type, "schema", "no schema for this type")]
        ) from None
    import fastjsonschema

    try:
        validator(message)
    except fastjsonschema.JsonSchemaValueException as first:
        raise ValidationError(_schema_problems(message, message_type, first)) from None
    copy = dict(message)
    payload = dict(message["payload"])
    for holder in ("components", "rows"):
        if holder in payload:
            payload[holder] = [dict(item) for item in payload[holder]]
    copy["payload"] = payload
    problems = _semantic_problems(copy)
    if problems:
        raise ValidationError(problems)
    return copy


def new_message(
    message_type: str,
    source: str,
    key: str,
    payload: dict[str, Any],
    *,
    occurred_at: datetime | str | None = None,
    mapping_version: str | None = None,
    correlation_id: str | None = None,
) -> Message:
    """Build an envelope around ``payload`` (not yet validated)."""
    when = occurred_at or datetime.now(UTC)
    message: Message = {
        "message_id": str(uuid.uuid4()),
        "type": message_type,
        "source": source,
        "key": key,
        "occurred_at": when if isinstance(when, str) else when.isoformat(),
        "schema_version": SCHEMA_VERSION,
        "payload": payload,
    }
    if mapping_version:
        message["mapping_version"] = mapping_version
    if correlation_id:
        message["correlation_id"] = correlation_id
    return message


def json_default(value: object) -> object:
    """``json.dumps(default=…)`` for the hub's values: a ``Decimal`` as its exact text (never a
    binary float), a date or time in ISO 8601. Connectors encode outbound bodies with it too."""
    if isinstance(value, Decimal):
        return format_quantity(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def dumps(message: Any, *, indent: int | None = None) -> str:
    """JSON text of a message; ``Decimal`` quantities become exact strings."""
    return json.dumps(
        message,
        default=json_default,
        ensure_ascii=False,
        indent=indent,
        separators=None if indent else (",", ":"),
    )


def loads(text: str | bytes) -> Any:
    """Parse JSON with numbers as ``Decimal`` (never float). For text Conveyor wrote itself (the
    ledger's payloads); text from outside goes through ``parse_json``."""
    return json.loads(text, parse_float=Decimal)


def occurred_at(message: Message) -> datetime:
    """The envelope's ``occurred_at`` as an aware datetime."""
    return _parse_timestamp(message["occurred_at"])


# ------------------------------------------------------------------ JSON from outside
# Every JSON text from outside (files, and later the HTTP API and file drops) is read here, so the
# same limits hold everywhere: Python's parser recurses once per nesting level and a deep enough
# text ends the process's stack (RecursionError) instead of failing one record; ``\ud800`` escapes
# parse into lone surrogates that no database or terminal accepts; a 50 MB line costs its size
# several times over. Each is refused for its record alone, with the reason.

_DECODER = json.JSONDecoder(parse_float=Decimal)
_WHITESPACE = re.compile(r"[ \t\n\r]*")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)
_BRACKET = re.compile(r"[\[\]{}]")
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.S)
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_RAW_SURROGATE = re.compile("[\ud800-\udfff]")


def _depth(text: str) -> int:
    """How deep ``text`` nests (strings skipped), without parsing it."""
    depth = deepest = 0
    for bracket in _BRACKET.findall(_STRING.sub("", text)):
        depth += 1 if bracket in "[{" else -1
        deepest = max(deepest, depth)
    return deepest


def _value_end(text: str, start: int) -> int:
    """Where the bracketed JSON value at ``start`` ends (strings skipped), or -1."""
    depth = 0
    for token in _TOKEN.finditer(text, start):
        mark = token.group()
        if mark[0] == '"':
            continue
        depth += 1 if mark in "[{" else -1
        if depth == 0:
            return token.end()
    return -1


def _lone_surrogate(value: Any, path: str = "$") -> tuple[str, str] | None:
    """The JSON path and text of the first string in ``value`` holding a lone surrogate."""
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            if _RAW_SURROGATE.search(item):
                return where, item
        elif isinstance(item, dict):
            for key, child in item.items():
                if _RAW_SURROGATE.search(key):
                    return where, key
                stack.append((child, f"{where}.{key}"))
        elif isinstance(item, list):
            stack.extend((child, f"{where}[{index}]") for index, child in enumerate(item))
    return None


def _refused(message: str, text: str, limits: Limits, rule: str) -> UnreadableRecordError:
    kept = clip(text, limits.max_stored_record_chars)
    return UnreadableRecordError(message, rule=rule, text=kept)


def _precheck(
    text: str, limits: Limits, encoding: str, marked: bool = True
) -> UnreadableRecordError | None:
    """Refusals that must come before parsing: length, undecodable bytes (only a text decoded
    with marks can hold them), nesting."""
    if len(text) > limits.max_record_chars:
        return _refused(
            f"record of {len(text):,} characters is over the {limits.max_record_chars:,}-character"
            " limit (limits.max_record_chars in conveyor.yaml)",
            text,
            limits,
            "max_record_chars",
        )
    if marked and _RAW_SURROGATE.search(text):
        from conveyor.mapping.readers import bad_bytes

        problem = bad_bytes(text, encoding) or "holds characters that are not valid Unicode"
        return _refused(problem, text, limits, "encoding")
    # counting is C speed; only a text with enough brackets to be too deep is measured
    if text.count("[") + text.count("{") > limits.max_json_depth:
        depth = _depth(text)
        if depth > limits.max_json_depth:
            return _refused(
                f"nested {depth:,} levels deep, over the limit of {limits.max_json_depth} "
                "(limits.max_json_depth in conveyor.yaml)",
                text,
                limits,
                "max_json_depth",
            )
    return None


def _checked(value: Any, text: str, limits: Limits) -> Any:
    """``value`` parsed from ``text``, or the refusal of a lone ``\\uD8xx`` escape in it."""
    if "\\u" in text and _SURROGATE_ESCAPE.search(text):
        found = _lone_surrogate(value)
        if found is not None:
            where, string = found
            return _refused(
                f"{where}: {clip(string, 80)} holds an unpaired surrogate escape (\\ud800-\\udfff"
                " without its pair): not valid Unicode",
                text,
                limits,
                "unicode",
            )
    return value


def parse_json(
    text: str, limits: Limits | None = None, *, encoding: str = "utf-8", marked: bool = True
) -> Any:
    """One JSON record from outside, numbers as ``Decimal``; an ``UnreadableRecordError`` is
    *returned* (not raised) when it is refused, so a caller parks it and reads on. ``marked``:
    the text may hold bytes its decoder could not read (see ``readers.BAD_BYTES``)."""
    limits = limits or current()
    refused = _precheck(text, limits, encoding, marked)
    if refused is not None:
        return refused
    try:
        value = _DECODER.decode(text)
    except (ValueError, RecursionError) as exc:
        return _refused(f"not JSON: {exc}", text, limits, "json")
    return _checked(value, text, limits)


def read_records(path: Path, limits: Limits | None = None) -> Iterator[tuple[int, Any | Exception]]:
    """Records of a JSON or JSON-lines file as ``(line, record or UnreadableRecordError)``.

    A ``.json`` file may hold one (pretty-printed) object, an array (each element with the line
    it starts on), or JSON lines; ``.jsonl`` / ``.ndjson`` files are JSON lines. Bytes that are
    not UTF-8 (or UTF-16/32 with a BOM), nesting deeper than ``limits.max_json_depth``, lines over
    ``limits.max_record_chars`` and unpaired surrogate escapes refuse their record alone.
    """
    from conveyor.mapping.readers import decode_bytes

    limits = limits or current()
    text, encoding, marked = decode_bytes(path.read_bytes())
    lines_only = path.suffix.lower() in (".jsonl", ".ndjson")
    yield from records_of_text(
        text, limits, encoding=encoding, marked=marked, lines_only=lines_only
    )


def records_of_text(
    text: str,
    limits: Limits | None = None,
    *,
    encoding: str = "utf-8",
    marked: bool = True,
    lines_only: bool = False,
) -> Iterator[tuple[int, Any | Exception]]:
    """The records of a JSON text (see ``read_records``), for callers that hold the text
    (``marked``: see ``parse_json``)."""
    limits = limits or current()
    text = text.removeprefix("\ufeff")
    start = _WHITESPACE.match(text).end()  # type: ignore[union-attr]
    first_line = text.count("\n", 0, start) + 1
    if not lines_only and text.startswith("[", start):
        yield from _array_records(text, start, first_line, limits, encoding, marked)
        return
    if not lines_only and text.startswith("{", start):
        end = text.find("\n", start)
        head = text[start:] if end < 0 else text[start:end]
        if head.count("{") > head.count("}"):  # "{" alone on its line: one pretty-printed object
            whole = parse_json(text[start:], limits, encoding=encoding, marked=marked)
            if not isinstance(whole, Exception):
                yield first_line, whole
                return
    for number, line in enumerate(text.split("\n"), start=1):
        if line.strip():
            yield (
                number,
                parse_json(line.removesuffix("\r"), limits, encoding=encoding, marked=marked),
            )


def _array_records(
    text: str, start: int, line: int, limits: Limits, encoding: str, marked: bool
) -> Iterator[tuple[int, Any | Exception]]:
    """Elements of a JSON array, each parsed (and refused) on its own, with its first line."""
    position = start + 1
    counted = start
    while True:
        position = _WHITESPACE.match(text, position).end()  # type: ignore[union-attr]
        line += text.count("\n", counted, position)
        counted = position
        if text.startswith("]", position):
            return
        try:
            value, end = _DECODER.raw_decode(text, position)
        except RecursionError:
            # nested too deep for the parser: skip the element by its brackets, read on
            end = _value_end(text, position)
            if end < 0:
                yield (
                    line,
                    _refused("not JSON: unbalanced brackets", text[position:], limits, "json"),
                )
                return
            value = None
        except ValueError as exc:
            yield (
                line,
                _refused(
                    f"not JSON: {exc}; the rest of the array could not be read",
                    text[position:],
                    limits,
                    "json",
                ),
            )
            return
        element = text[position:end]
        refused = _precheck(element, limits, encoding, marked)
        yield line, refused if refused is not None else _checked(value, element, limits)
        position = _WHITESPACE.match(text, end).end()  # type: ignore[union-attr]
        if text.startswith(",", position):
            position += 1
        elif not text.startswith("]", position):
            yield (
                text.count("\n", 0, position) + 1,
                _refused(
                    "not JSON: expected ',' or ']' after an array element; the rest of the array "
                    "could not be read",
                    text[position:],
                    limits,
                    "json",
                ),
            )
            return
