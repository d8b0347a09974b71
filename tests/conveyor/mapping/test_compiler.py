"""Paths without JMESPath: plain field chains and ``a || b`` of them answer exactly as JMESPath."""

from __future__ import annotations

from typing import Any

import jmespath
import pytest

from conveyor.mapping.compiler import _fast_getter

RECORDS: list[Any] = [
    {"a": {"b": "x"}, "c": "y"},
    {"a": {"b": ""}, "c": "y"},
    {"a": {"b": None}, "c": {"d": "z"}},
    {"a": "not an object", "c": []},
    {"a": {"b": []}, "c": {}},
    {"a": {"b": 0}, "c": "y"},
    {"a": {"b": False}},
    {"a": {"b": {"c": "deep", "d": {"e": 1}}}, "c": "y"},
    {"a": {"b": {"c": "", "d": "not an object"}}, "c": {"d": 0}},
    {"a": {"b": {"c": None, "d": {"e": None}}}},
    {},
    "text",
]


@pytest.mark.parametrize(
    "expression",
    [
        "a.b || c",
        "a.b || c.d || c",
        "c || a.b",
        "a.b",
        "a.b || `1`",
        "x || a.b",
        "a.b.c || c.d || a.b.d.e",
        "(a.b.c || c) || (x || c.d)",
        "a.b.d.e",
        "a.b.d.e || a.b.c",
        "x || y || z",
    ],
)
def test_fast_paths_answer_as_jmespath(expression: str) -> None:
    compiled = jmespath.compile(expression)
    getter = _fast_getter(compiled)
    for record in RECORDS:
        assert getter(record) == compiled.search(record), (expression, record)
