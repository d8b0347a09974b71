"""Fixtures of the runtime tests: a project whose ``line1`` system has no mapping file (its
connector speaks canonical messages) next to the shipped mappings, its mapping engine, and real
HTTP servers on loopback (``tests.support.scripted``)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
import yaml

from conveyor.config import Project
from conveyor.mapping import MappingEngine
from tests.support.scripted import server, tls_server

__all__ = ["mapping_engine", "project", "server", "tls_server", "write_jsonl", "write_project"]

REPO = Path(__file__).resolve().parents[3]


def write_project(root: Path, systems: dict[str, Any]) -> Path:
    """A project at ``root`` with the shipped mappings and master data and ``systems``."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copytree(REPO / "mappings", root / "mappings", dirs_exist_ok=True)
    shutil.copytree(REPO / "master_data", root / "master_data", dirs_exist_ok=True)
    config = {
        "systems": systems,
        "routes": [{"type": "production_order", "source": "line1", "targets": ["mes"]}],
    }
    (root / "conveyor.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    return root


def write_jsonl(path: Path, records: Iterable[Any]) -> Path:
    """``records`` as a JSON-lines file."""
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.fixture
def project(tmp_path: Path) -> Project:
    """A project with a ``line1`` system (fake connector, no mapping) and ``mes`` (fake)."""
    root = write_project(
        tmp_path / "plant",
        {"line1": {"connector": "fake"}, "mes": {"connector": "fake", "connection": "mes_line"}},
    )
    return Project.load(root)


@pytest.fixture
def mapping_engine(project: Project) -> MappingEngine:
    """The mapping engine of ``project``."""
    return MappingEngine.load(project)
