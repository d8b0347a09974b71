"""Limits: named defaults, the ``limits:`` section of ``conveyor.yaml``, and outside values
echoed clipped wherever a problem is printed or kept."""

from __future__ import annotations

from pathlib import Path

from conveyor import limits
from conveyor.config import Project
from conveyor.errors import Problem
from conveyor.limits import Limits
from conveyor.redact import clip


def test_defaults_are_named_and_a_project_overrides_some(tmp_path: Path) -> None:
    assert Limits().max_json_depth == limits.MAX_JSON_DEPTH == 64
    assert Limits.from_config(None) == limits.DEFAULT
    (tmp_path / "conveyor.yaml").write_text(
        "limits:\n  max_echo_chars: 40\n  max_csv_field: 2048\n", encoding="utf-8"
    )
    project = Project.load(tmp_path)
    assert project.limits == Limits(max_echo_chars=40, max_csv_field=2048)
    assert limits.current() is project.limits


def test_problems_echo_outside_values_clipped() -> None:
    limits.use(Limits(max_echo_chars=40))
    problem = Problem("$.payload.lot", "L" * 10_000, "maxLength", "M" * 10_000)
    text = str(problem)
    assert len(text) < 300
    assert "more characters" in text
    shown = problem.as_dict()
    assert len(shown["value"]) < 80
    assert len(shown["message"]) < 120


def test_clipped_text_can_always_be_printed_and_stored() -> None:
    assert clip("a\x00b\ud800c") == "a\\x00b\\ud800c"
    assert clip("x" * 10, 4) == "xxxx… (6 more characters)"
    assert clip("原料") == "原料"
