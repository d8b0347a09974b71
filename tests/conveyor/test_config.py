"""conveyor.yaml: loading, defaults, and mistakes reported with file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.config import Project
from conveyor.errors import ConfigError, classify_http_status, is_transient

REPO = Path(__file__).resolve().parents[2]


def test_repository_config_loads() -> None:
    project = Project.load(REPO)
    assert set(project.systems) >= {"sap", "mes", "wms"}
    assert project.retry.max_attempts == 8
    assert project.router.targets(
        {"type": "material_consumption", "source": "mes", "payload": {}}
    ) == ["sap", "wms"]


def test_no_config_is_an_empty_project(tmp_path: Path) -> None:
    project = Project.load(tmp_path)
    assert project.systems == {}
    assert project.router.routes == ()


def test_unknown_system(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown system 'sapp'"):
        Project.load(REPO).system("sapp")


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("systems:\n  sap:\n    conector: fake\n", 3, "'conector' was unexpected"),
        ("routes:\n  - type: production_order\n    targets: mes\n", 3, "is not of type 'array'"),
        ("systems:\n  sap:\n    connector: fake\n   role: erp\n", 4, "YAML syntax"),
        ("retry:\n  max_attempts: 0\n", 2, "minimum"),
    ],
)
def test_mistakes_have_file_and_line(tmp_path: Path, text: str, line: int, words: str) -> None:
    (tmp_path / "conveyor.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        Project.load(tmp_path)
    assert f"conveyor.yaml:{line}:" in str(info.value)
    assert words in str(info.value)


@pytest.mark.parametrize(
    ("status", "transient"), [(429, True), (500, True), (503, True), (400, False), (404, False)]
)
def test_http_status_classification(status: int, transient: bool) -> None:
    error = classify_http_status(status, "body")
    assert error is not None
    assert is_transient(error) is transient
    assert classify_http_status(201) is None


def test_unknown_exceptions_are_terminal() -> None:
    assert not is_transient(RuntimeError("boom"))
