"""The one YAML loader: line numbers, and refusals of files that would cost gigabytes (alias
bombs, huge or deeply nested files) before they cost them."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from conveyor.config import Project
from conveyor.errors import ConfigError
from conveyor.limits import Limits
from conveyor.yamlfile import load_yaml

REPO = Path(__file__).resolve().parents[2]


def _bomb(levels: int = 9) -> str:
    text = 'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n'
    previous = "a"
    for name in "bcdefghij"[: levels - 1]:
        text += f"{name}: &{name} [" + ", ".join([f"*{previous}"] * 9) + "]\n"
        previous = name
    return text


def test_an_alias_bomb_is_refused_quickly(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(_bomb(), encoding="utf-8")
    started = time.perf_counter()
    with pytest.raises(ConfigError, match="aliases expand the file to more than 200,000 values"):
        load_yaml(path)
    assert time.perf_counter() - started < 2


def test_too_many_aliases_are_refused_with_the_line(tmp_path: Path) -> None:
    path = tmp_path / "many.yaml"
    path.write_text("a: &a 1\nb: [" + ", ".join(["*a"] * 5) + "]\n", encoding="utf-8")
    assert load_yaml(path).data["b"] == [1] * 5
    with pytest.raises(ConfigError, match=r"many.yaml:2: refused: more than 3 aliases"):
        load_yaml(path, Limits(max_yaml_aliases=3))


def test_deep_nesting_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text("a: " + "[" * 5000 + "]" * 5000 + "\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="nested deeper than 50 levels"):
        load_yaml(path)


def test_a_big_file_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_bytes(b"# filler\n" * 300_000)
    with pytest.raises(ConfigError, match=r"file of 2,700,000 bytes is over the 2,097,152-byte"):
        load_yaml(path)


def test_a_non_utf8_file_is_a_clean_error(tmp_path: Path) -> None:
    path = tmp_path / "gbk.yaml"
    path.write_bytes("名称: 齿轮\n".encode("gbk"))
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_yaml(path)


@pytest.mark.parametrize("character", ["\x00", "\x07", "\x1b", "\ufffe"])
def test_a_control_character_is_a_config_error_with_its_line(
    tmp_path: Path, character: str
) -> None:
    """Found by fuzzing (tests/fuzz/test_yaml_files.py): PyYAML's reader refused the text before
    the parse, outside the error handling, so a stray control character escaped as a
    ``ReaderError`` instead of a ``ConfigError`` naming the file and line."""
    path = tmp_path / "conveyor.yaml"
    path.write_text(f"systems: {{}}\nroutes: []\nnote: a{character}b\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"conveyor\.yaml:3: character #x{ord(character):04x}"):
        load_yaml(path)


def test_conveyor_yaml_bombs_are_refused_and_limits_are_configurable(tmp_path: Path) -> None:
    (tmp_path / "conveyor.yaml").write_text(_bomb(), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"conveyor\.yaml:1: refused"):
        Project.load(tmp_path)
    (tmp_path / "conveyor.yaml").write_text(
        "limits:\n  max_yaml_aliases: 2\n  max_json_depth: 10\n", encoding="utf-8"
    )
    project = Project.load(tmp_path)
    assert project.limits.max_yaml_aliases == 2
    assert project.limits.max_json_depth == 10
    assert project.limits.max_csv_field == Limits().max_csv_field
    mappings = tmp_path / "mappings"
    mappings.mkdir()
    (mappings / "x.yaml").write_text("a: &a 1\nb: [*a, *a, *a]\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="more than 2 aliases"):
        load_yaml(mappings / "x.yaml")  # the project's limits are the process's


def test_an_unknown_limit_is_a_config_error_with_its_line(tmp_path: Path) -> None:
    (tmp_path / "conveyor.yaml").write_text("limits:\n  max_jsn_depth: 10\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"conveyor.yaml:2: .*max_jsn_depth"):
        Project.load(tmp_path)


def test_the_shipped_files_load_within_the_limits() -> None:
    for path in [REPO / "conveyor.yaml", *sorted((REPO / "mappings").glob("*.yaml"))]:
        assert load_yaml(path).data
