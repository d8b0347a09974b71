"""Fixtures of the mapping tests: a project folder holding a copy of the shipped mappings and
master data (so tests can edit them), and its loaded engine."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conveyor.config import Project
from conveyor.mapping import MappingEngine

REPO = Path(__file__).resolve().parents[3]
DATA = REPO / "tests" / "data" / "mapping"


@pytest.fixture
def project(tmp_path: Path) -> Project:
    """A project with copies of ``mappings/`` and ``master_data/``."""
    root = tmp_path / "plant"
    root.mkdir()
    shutil.copytree(REPO / "mappings", root / "mappings")
    shutil.copytree(REPO / "master_data", root / "master_data")
    return Project.load(root)


@pytest.fixture
def mapping_engine(project: Project) -> MappingEngine:
    """The engine of ``project``."""
    return MappingEngine.load(project)


def edit(path: Path, old: str, new: str) -> None:
    """Replace one occurrence of ``old`` in a text file (the test fails if it is absent)."""
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def append_row(path: Path, row: str) -> None:
    """Add a line to a CSV table."""
    with path.open("a", encoding="utf-8") as fh:
        fh.write(row.rstrip("\n") + "\n")
