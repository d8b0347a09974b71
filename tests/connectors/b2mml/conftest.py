"""Fixtures of the B2MML tests: the official schemas (``<repo>/../shared/b2mml``, never shipped
with the project: skipped locally when absent, required in CI), a project with a B2MML-speaking
MES (``mesx``, mapped by ``mappings/mes_b2mml.yaml``) and its mapping engine."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml

from conveyor.config import Project
from conveyor.mapping import MappingEngine

REPO = Path(__file__).resolve().parents[3]
DATA = REPO / "tests" / "data" / "b2mml"
SCHEMAS = REPO.parent / "shared" / "b2mml"


@pytest.fixture
def xsd_dir() -> Path:
    """The folder with the official B2MML schemas (``V0600/``, ``V0701/``)."""
    if not (SCHEMAS / "V0600").is_dir() or not (SCHEMAS / "V0701").is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"the official B2MML schemas are missing at {SCHEMAS} (CI provides them)")
        pytest.skip(f"the official B2MML schemas are not at {SCHEMAS} (MESA's download)")
    return SCHEMAS


def write_b2mml_project(root: Path, settings: dict[str, object]) -> Project:
    """A project with the shipped mappings and master data and a ``mesx`` B2MML system."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copytree(REPO / "mappings", root / "mappings", dirs_exist_ok=True)
    shutil.copytree(REPO / "master_data", root / "master_data", dirs_exist_ok=True)
    config = {
        "systems": {
            "mesx": {
                "connector": "b2mml",
                "mapping": "mappings/mes_b2mml.yaml",
                "settings": settings,
            },
            "erp": {"connector": "fake"},
        },
        "routes": [
            {"type": "production_order", "source": "erp", "targets": ["mesx"]},
        ],
    }
    (root / "conveyor.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    return Project.load(root)


@pytest.fixture
def b2mml_project(tmp_path: Path, xsd_dir: Path) -> Project:
    """A project whose ``mesx`` writes schedules into ``tmp_path/outbox`` and validates."""
    (tmp_path / "outbox").mkdir()
    return write_b2mml_project(
        tmp_path / "plant", {"out_dir": str(tmp_path / "outbox"), "xsd_dir": str(xsd_dir)}
    )


@pytest.fixture
def b2mml_engine(b2mml_project: Project) -> MappingEngine:
    """The mapping engine of ``b2mml_project``."""
    return MappingEngine.load(b2mml_project)
