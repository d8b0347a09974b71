"""Canonical message validation: every type validates; bad records name field, value and rule."""

from __future__ import annotations

import codecs
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from conveyor import messages
from conveyor.errors import UnreadableRecordError, ValidationError
from conveyor.limits import Limits

REPO = Path(__file__).resolve().parents[2]
SAMPLES = [
    json.loads(line) for line in (REPO / "samples" / "messages.jsonl").read_text().splitlines()
]


def output(**payload: Any) -> dict[str, Any]:
    base = {
        "order_id": "PO-1",
        "material": "M1",
        "quantity": "2",
        "uom": "KG",
        "location": "1000/FG",
    }
    base.update(payload)
    return messages.new_message("production_output", "mes", "GR-1/1", base)


def problems(message: Any) -> list[dict[str, Any]]:
    with pytest.raises(ValidationError) as info:
        messages.validate(message)
    return [p.as_dict() for p in info.value.problems]


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda m: f"{m['type']}:{m['key']}")
def test_samples_are_valid(sample: dict[str, Any]) -> None:
    validated = messages.validate(sample)
    assert isinstance(validated["payload"]["quantity"], Decimal)


def test_every_type_has_a_schema_file() -> None:
    for message_type in messages.MESSAGE_TYPES:
        if message_type == "stock_alert" and not (REPO / "schemas" / "stock_alert.json").exists():
            continue
        assert messages.schema(message_type)["$schema"].endswith("2020-12/schema")


def test_quantities_become_decimal_and_input_is_untouched() -> None:
    message = output(quantity="0.1")
    validated = messages.validate(message)
    assert validated["payload"]["quantity"] == Decimal("0.1")
    assert message["payload"]["quantity"] == "0.1"


def test_json_numbers_parse_to_decimal() -> None:
    # 2.675 has no exact binary float (as a float it is 2.67499999999999982236…)
    text = messages.dumps(output()).replace('"quantity":"2"', '"quantity":2.675')
    validated = messages.validate(messages.loads(text))
    assert validated["payload"]["quantity"] == Decimal("2.675")


def test_components_and_rows_quantities_are_decimal() -> None:
    order = next(m for m in SAMPLES if m["type"] == "production_order")
    validated = messages.validate(order)
    assert all(isinstance(c["quantity"], Decimal) for c in validated["payload"]["components"])


def test_wrong_type() -> None:
    message = output()
    message["type"] = "production_outptu"
    [problem] = problems(message)
    assert problem["field"] == "$.type"
    assert problem["value"] == "production_outptu"
    assert problem["rule"] == "enum"


def test_missing_field_is_named() -> None:
    message = output()
    del message["payload"]["material"]
    [problem] = problems(message)
    assert problem["field"] == "$.payload.material"
    assert problem["rule"] == "required"


def test_negative_quantity_where_not_allowed() -> None:
    [problem] = problems(output(quantity="-5"))
    assert problem["field"] == "$.payload.quantity"
    assert problem["value"] == "-5"


def test_zero_output_is_refused() -> None:
    assert problems(output(quantity="0"))[0]["field"] == "$.payload.quantity"


def test_negative_consumption_is_a_return() -> None:
    message = messages.new_message(
        "material_consumption",
        "mes",
        "MC-1/1",
        {"order_id": "PO-1", "material": "M1", "quantity": "-1.5", "uom": "KG", "location": "L"},
    )
    assert messages.validate(message)["payload"]["quantity"] == Decimal("-1.5")


@pytest.mark.parametrize("bad", ["12,5kg", "1e3", "abc", True])
def test_non_decimal_quantity(bad: object) -> None:
    [problem] = problems(output(quantity=bad))
    assert problem["field"] == "$.payload.quantity"
    assert problem["value"] == str(bad)


def test_too_many_decimals_for_the_ledger() -> None:
    [problem] = problems(output(quantity=Decimal("1.1234567890123")))
    assert problem["rule"] == "decimal"


@pytest.mark.parametrize(
    "bad", ["2026-11-21 25:61", "2026-13-45T00:00:00Z", "2026-11-21T08:00:00", "yesterday"]
)
def test_unparseable_timestamp(bad: str) -> None:
    message = output()
    message["occurred_at"] = bad
    [problem] = problems(message)
    assert problem["field"] == "$.occurred_at"
    assert problem["value"] == bad


def test_payload_timestamp_checked_for_real_dates() -> None:
    order = json.loads(json.dumps(SAMPLES[0]))
    order["payload"]["scheduled_end"] = "2026-02-30T08:00:00+08:00"
    [problem] = problems(order)
    assert problem["field"] == "$.payload.scheduled_end"


def test_unknown_payload_field_is_refused() -> None:
    [problem] = problems(output(materail="M1"))
    assert problem["rule"] == "additionalProperties"


def test_not_an_object() -> None:
    assert problems([1, 2])[0]["rule"] == "type"


def test_dumps_keeps_decimals_exact() -> None:
    text = messages.dumps({"quantity": Decimal("0.1") + Decimal("0.2")})
    assert text == '{"quantity":"0.3"}'


def test_read_records_jsonl_with_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text('\ufeff{"a": 1.5}\n\n{"b": \n{"c": 2}\n', encoding="utf-8")
    records = list(messages.read_records(path))
    assert [line for line, _ in records] == [1, 3, 4]
    assert records[0][1] == {"a": Decimal("1.5")}
    assert isinstance(records[1][1], ValueError)


def test_read_records_json_array(tmp_path: Path) -> None:
    path = tmp_path / "in.json"
    path.write_text('[{"a": 1}, {"a": 2}]', encoding="utf-8")
    assert [r for _, r in messages.read_records(path)] == [{"a": 1}, {"a": 2}]


# ---------------------------------------------------------------------- JSON from outside
def _records(tmp_path: Path, name: str, data: bytes | str) -> list[tuple[int, Any]]:
    path = tmp_path / name
    if isinstance(data, str):
        path.write_text(data, encoding="utf-8")
    else:
        path.write_bytes(data)
    return list(messages.read_records(path))


def test_deep_nesting_refuses_its_line_alone(tmp_path: Path) -> None:
    deep = "[" * 10_000 + "]" * 10_000
    records = _records(tmp_path, "x.jsonl", f'{{"a": 1}}\n{deep}\n{{"b": 2}}\n')
    assert [line for line, _ in records] == [1, 2, 3]
    assert records[0][1] == {"a": 1}
    assert isinstance(records[1][1], UnreadableRecordError)
    assert "nested 10,000 levels deep" in str(records[1][1])
    assert records[1][1].problems[0].rule == "max_json_depth"
    assert records[2][1] == {"b": 2}


def test_depth_limit_is_configurable_and_strings_do_not_count() -> None:
    tight = Limits(max_json_depth=3)
    assert messages.parse_json('{"a": {"b": {"c": 1}}}', tight) == {"a": {"b": {"c": 1}}}
    assert isinstance(messages.parse_json('{"a": {"b": {"c": [1]}}}', tight), Exception)
    assert messages.parse_json('{"a": "[[[[[[{{{{"}', tight) == {"a": "[[[[[[{{{{"}


def test_lone_surrogate_escapes_are_refused_and_pairs_read(tmp_path: Path) -> None:
    records = _records(
        tmp_path, "x.jsonl", '{"k": "\\ud800"}\n{"k": "\\ud83d\\ude00"}\n{"\\udfff": 1}\n'
    )
    assert "$.k" in str(records[0][1])
    assert "unpaired surrogate" in str(records[0][1])
    assert records[1][1] == {"k": "\U0001f600"}
    assert isinstance(records[2][1], UnreadableRecordError)


def test_undecodable_bytes_refuse_their_line_with_bytes_and_column(tmp_path: Path) -> None:
    records = _records(tmp_path, "x.jsonl", b'{"a": 1}\n{"b": "\xd6\xd0"}\n{"c": 3}\n')
    assert records[0][1] == {"a": 1}
    assert records[2][1] == {"c": 3}
    error = records[1][1]
    assert isinstance(error, UnreadableRecordError)
    assert "bytes 0xd6 0xd0 at column 8 are not utf-8" in str(error)
    assert error.text is not None
    assert "\\udcd6" not in str(error)


def test_utf16_with_bom_is_read(tmp_path: Path) -> None:
    text = '{"a": "原料"}\n{"b": 2}\n'
    records = _records(tmp_path, "x.jsonl", codecs.BOM_UTF16_LE + text.encode("utf-16-le"))
    assert records == [(1, {"a": "原料"}), (2, {"b": 2})]


def test_one_pretty_printed_object_is_one_record(tmp_path: Path) -> None:
    records = _records(tmp_path, "x.json", '\n{\n  "a": 1,\n  "b": [1, 2]\n}\n')
    assert records == [(2, {"a": 1, "b": [1, 2]})]


def test_array_elements_come_with_their_lines(tmp_path: Path) -> None:
    records = _records(tmp_path, "x.json", '[\n  {"a": 1},\n  {"b":\n    2},\n  "x"\n]\n')
    assert records == [(2, {"a": 1}), (3, {"b": 2}), (5, "x")]
    broken = _records(tmp_path, "y.json", '[\n  {"a": 1},\n  {"b": oops},\n  {"c": 3}\n]')
    assert broken[0] == (2, {"a": 1})
    assert broken[1][0] == 3
    assert "the rest of the array could not be read" in str(broken[1][1])


def test_json_lines_files_are_never_read_as_one_array(tmp_path: Path) -> None:
    records = _records(tmp_path, "x.jsonl", '[1, 2]\n{"a": 1}\n')
    assert records == [(1, [1, 2]), (2, {"a": 1})]


def test_a_line_over_the_length_limit_is_refused_unread_and_kept_clipped() -> None:
    limits = Limits(max_record_chars=1000, max_stored_record_chars=200)
    error = messages.parse_json('{"a": "' + "x" * 5000 + '"}', limits)
    assert isinstance(error, UnreadableRecordError)
    assert "5,009 characters is over the 1,000-character limit" in str(error)
    assert error.text is not None
    assert len(error.text) < 250


def test_a_too_deep_array_element_is_refused_and_the_array_reads_on(tmp_path: Path) -> None:
    deep = "[" * 10_000 + '"]"' + "]" * 10_000
    records = _records(tmp_path, "x.json", f'[\n  {{"a": 1}},\n  {deep},\n  {{"c": 3}}\n]\n')
    assert records[0] == (2, {"a": 1})
    assert records[1][0] == 3
    assert "nested 10,000 levels deep" in str(records[1][1])
    assert records[2] == (4, {"c": 3})


HIDDEN = [
    "\x00",  # NUL
    "\x1b[31m",  # an ANSI escape
    "\x85",  # C1 next line
    "\u202e",  # right-to-left override
    "\u200b",  # zero-width space
    "\ufeff",  # byte order mark
    "\u2028",  # line separator
    "\U000e0041",  # a tag character (Cf outside the BMP)
    "\ud800",  # a lone surrogate
    "\n",  # even at the very end
]


@pytest.mark.parametrize("hidden", HIDDEN, ids=repr)
@pytest.mark.parametrize("field", ["material", "location", "lot", "uom", "order_id"])
def test_codes_refuse_control_and_format_characters(field: str, hidden: str) -> None:
    found = problems(output(**{field: f"RM{hidden}1"})) + problems(output(**{field: f"RM{hidden}"}))
    assert {p["field"] for p in found} == {f"$.payload.{field}"}
    assert all("control" in p["message"] for p in found)


@pytest.mark.parametrize("hidden", HIDDEN, ids=repr)
def test_business_key_and_envelope_codes_refuse_them_too(hidden: str) -> None:
    message = output()
    message["key"] = f"GR-1{hidden}/1"
    assert [p["field"] for p in problems(message)] == ["$.key"]
    message = output(reversal_of=f"GR{hidden}")
    assert [p["field"] for p in problems(message)] == ["$.payload.reversal_of"]
    message = output()
    message["correlation_id"] = f"c{hidden}"
    assert [p["field"] for p in problems(message)] == ["$.correlation_id"]


def test_ordinary_unicode_codes_stay_valid() -> None:
    message = messages.validate(output(material="原料-铝锭 Ø12", location="1000/仓库 A", lot="Ä-1"))
    assert message["payload"]["material"] == "原料-铝锭 Ø12"


def test_free_text_keeps_line_breaks_but_not_escapes() -> None:
    adjustment = messages.new_message(
        "stock_adjustment",
        "mes",
        "ADJ-1/1",
        {"material": "M1", "quantity": "1", "uom": "KG", "location": "A", "reason": "count"},
    )
    adjustment["payload"]["note"] = "counted twice\nby two people"
    assert messages.validate(adjustment)["payload"]["note"].count("\n") == 1
    adjustment["payload"]["note"] = "ok \x1b[2J"
    assert [p["field"] for p in problems(adjustment)] == ["$.payload.note"]


def test_code_pattern_covers_every_control_and_format_character() -> None:
    """The schema's class is written out (JSON Schema regexes have no \\p{Cc}); it must list every
    Cc, Cf, Cs, Zl and Zp character of this Python's Unicode database."""
    import re
    import sys
    import unicodedata

    common = json.loads((REPO / "schemas" / "common.json").read_text(encoding="utf-8"))
    pattern = re.compile(common["$defs"]["material"]["pattern"])
    hidden = {"Cc", "Cf", "Cs", "Zl", "Zp"}
    for code in range(sys.maxunicode + 1):
        char = chr(code)
        refused = pattern.search(f"a{char}b") is None
        assert refused == (unicodedata.category(char) in hidden), hex(code)


@pytest.mark.parametrize(
    ("number", "rule_text"),
    [
        ("1e999999", "integer digits"),
        ("1e400", "integer digits"),
        ("1" + "0" * 39, "integer digits"),
        ("0.0000000000001", "decimal places"),
        ("-0.0", "minimum of 0"),  # the schema's exclusiveMinimum sees JSON numbers
        ("0.0", "minimum of 0"),
    ],
)
def test_json_numbers_are_held_to_the_text_bounds(number: str, rule_text: str) -> None:
    record = messages.loads(
        messages.dumps(output()).replace('"quantity":"2"', f'"quantity":{number}')
    )
    [problem] = problems(record)
    assert problem["field"] == "$.payload.quantity"
    assert rule_text in problem["message"]
    assert len(problem["value"]) <= 100


def test_a_zero_or_negative_zero_adjustment_number_is_refused() -> None:
    for zero in (Decimal("-0.0"), Decimal("0.000")):
        adjustment = messages.new_message(
            "stock_adjustment",
            "mes",
            "ADJ-1/1",
            {"material": "M1", "quantity": zero, "uom": "KG", "location": "A", "reason": "x"},
        )
        [problem] = problems(adjustment)
        assert problem["message"] == "must not be zero"


def test_38_digit_quantity_is_kept_whole() -> None:
    big = "12345678901234567890123456.123456789012"
    assert str(messages.validate(output(quantity=big))["payload"]["quantity"]) == big
    assert messages.validate(output(quantity=Decimal(big)))["payload"]["quantity"] == Decimal(big)
