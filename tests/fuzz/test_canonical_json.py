"""Fuzzing canonical JSON from outside: ``messages.parse_json`` (refusals are returned, never
raised), ``records_of_text`` / ``read_records`` (every record comes back, read or refused with a
reason and its line) and ``messages.validate`` (only ``ValidationError``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from conveyor.errors import UnreadableRecordError
from conveyor.messages import parse_json, read_records, records_of_text, validate
from tests.fuzz.harness import FUZZ, reason_of, run, target
from tests.fuzz.strategies import json_values, mutated, raw_bytes, replace_leaves

REPO = Path(__file__).resolve().parents[2]
SAMPLES = (REPO / "samples" / "messages.jsonl").read_text(encoding="utf-8").splitlines()
MESSAGES = [json.loads(line) for line in SAMPLES]


def _check_records(records: list[tuple[int, Any]], text: str) -> None:
    """Each record has a line inside the text; a refused one keeps its reason."""
    last = text.count("\n") + 1
    for line, record in records:
        assert 1 <= line <= last
        if isinstance(record, Exception):
            assert isinstance(record, UnreadableRecordError), repr(record)
            assert reason_of(record)


@FUZZ
@given(st.one_of(st.sampled_from(SAMPLES).flatmap(mutated), raw_bytes))
@example(b'{"a": "\\ud800"}')
@example(b"[" * 5000)
@example(b'{"quantity": 1e999999}')
def test_parse_json_returns_a_value_or_a_refusal(data: bytes) -> None:
    text = data.decode("utf-8", "replace")
    with target("parse_json"):
        value = parse_json(text)
    if isinstance(value, Exception):
        assert isinstance(value, UnreadableRecordError)
        assert reason_of(value)


@FUZZ
@given(
    st.lists(st.sampled_from(SAMPLES), min_size=1, max_size=4).flatmap(
        lambda lines: st.one_of(
            mutated("\n".join(lines)),
            mutated("[" + ",\n".join(lines) + "]"),
        )
    )
)
@example(b"[1,\n[[[[")
@example(b'[{"a":1} {"b":2}]')
def test_records_of_text_keeps_every_record(data: bytes) -> None:
    text = data.decode("utf-8", "replace")
    records = run("records_of_text", lambda: list(records_of_text(text)))
    assert records is not None, "records_of_text raised instead of refusing one record"
    _check_records(records, text)


@FUZZ
@given(
    st.one_of(st.sampled_from(SAMPLES).flatmap(mutated), raw_bytes),
    st.sampled_from([".jsonl", ".json"]),
)
@example(b"\xff\xfe{\x00", ".jsonl")
@example(b"\xef\xbb\xbf[", ".json")
def test_read_records_of_any_file_bytes(tmp_path_factory: Any, data: bytes, suffix: str) -> None:
    path = Path(tmp_path_factory.mktemp("json")) / f"in{suffix}"
    path.write_bytes(data)
    records = run("read_records", lambda: list(read_records(path)))
    if records is not None:
        _check_records(records, data.decode("utf-8", "replace"))


@st.composite
def _messages(draw: st.DrawFn) -> Any:
    """A sample message with some leaves replaced and keys dropped, or any JSON value."""
    if draw(st.integers(0, 5)) == 0:
        return draw(json_values)
    return replace_leaves(draw(st.sampled_from(MESSAGES)), draw)


@FUZZ
@given(_messages())
@example({"type": "stock_adjustment", "payload": []})
@example({**MESSAGES[1], "occurred_at": "2026-02-30T00:00:00+08:00"})
def test_validate_refuses_with_validation_errors_only(message: Any) -> None:
    run("validate", lambda: validate(message))
