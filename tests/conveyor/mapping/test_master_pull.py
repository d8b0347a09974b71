"""Material master pulls: the Kingdee simulator's ``BD_MATERIAL`` (over loopback HTTP) into the
staging folder, and the diff against ``master_data/materials.csv`` — exact counts, old → new,
formula-like text neutralised, and ``master_data/`` unchanged byte for byte."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from conveyor.config import Project
from conveyor.errors import ConfigError
from conveyor.mapping.master_pull import STAGING, master_data_systems, pull_materials
from conveyor.runtime import registry
from simulators._erp import SimServer
from tests.support import kingdee as kd
from tests.support.kingdee import sim, simulator_of

__all__ = ["sim"]  # the fixture used here

NOW = datetime(2026, 11, 29, 8, 30, 5, tzinfo=UTC)


@pytest.fixture
def project(tmp_path: Path, sim: SimServer, monkeypatch: pytest.MonkeyPatch) -> Project:
    kd.plant_secrets(monkeypatch, "kingdee_k3")
    return Project.load(kd.write_master_data_project(tmp_path / "plant", sim.url))


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_full_pull_stages_the_rows_and_diffs_new_changed_missing(
    project: Project, sim: SimServer
) -> None:
    kd.change_material_master(simulator_of(sim))
    before = snapshot(project.master_data_dir)
    with registry.create(project.system("kingdee")) as connector:
        result = pull_materials(project, connector, now=NOW)

    assert result.counts == {"pulled": 12, "new": 1, "changed": 2, "missing": 1, "unchanged": 9}
    assert result.folder == project.root / STAGING / "kingdee" / "20261129T083005Z"
    assert snapshot(project.master_data_dir) == before  # master_data/ never written
    assert sorted(p.name for p in result.folder.iterdir()) == [
        "diff.csv", "diff.json", "materials.csv"]  # fmt: skip

    summary = result.as_dict()
    assert summary["changed"] == [
        {"number": "1.01.002", "material": "RM-1002", "changes": {"description": {
            "old": "ABS颗粒 ABS granulate", "new": "ABS颗粒 阻燃 FR granulate"}}},
        {"number": "1.02.001", "material": "RM-2001", "changes": {"base_uom": {
            "old": "PCS", "new": "BOX"}}},  # Kingdee's "box" read through unit_codes.csv
    ]  # fmt: skip
    assert summary["new"] == [
        {"number": "9.99.001", "description": kd.NEW_MATERIAL_NAME, "base_uom": "PCS"}
    ]
    assert summary["missing"] == [
        {"number": "3.01.002", "material": "PK-3002", "description": "缠绕膜 stretch film 500mm",
         "base_uom": "M"}]  # fmt: skip
    assert json.loads((result.folder / "diff.json").read_text("utf-8")) == summary

    with (result.folder / "diff.csv").open(encoding="utf-8-sig", newline="") as fh:
        diff = list(csv.DictReader(fh))
    assert [(r["status"], r["number"], r["changed"]) for r in diff] == [
        ("new", "9.99.001", ""),
        ("changed", "1.01.002", "description"),
        ("changed", "1.02.001", "base_uom"),
        ("missing", "3.01.002", ""),
    ]
    assert diff[0]["new_description"] == "'" + kd.NEW_MATERIAL_NAME  # no formula runs
    assert (diff[2]["old_base_uom"], diff[2]["new_base_uom"]) == ("PCS", "BOX")

    with (result.folder / "materials.csv").open(encoding="utf-8", newline="") as fh:
        staged = list(csv.DictReader(fh))
    assert len(staged) == 12
    assert list(staged[0])[:3] == ["FNumber", "FName", "FBaseUnitId.FNumber"]
    assert {r["FNumber"]: r["FName"] for r in staged}["9.99.001"] == "'" + kd.NEW_MATERIAL_NAME

    text = "\n".join(result.text())
    assert "new 1, changed 2, missing in kingdee 1, unchanged 9" in text
    assert "description 'ABS颗粒 ABS granulate' → 'ABS颗粒 阻燃 FR granulate'" in text


def test_partial_pull_since_does_not_call_anything_missing(
    project: Project, sim: SimServer
) -> None:
    since = simulator_of(sim).modify_clock.now()
    kd.change_material_master(simulator_of(sim))
    with registry.create(project.system("kingdee")) as connector:
        first = pull_materials(project, connector, since=since, now=NOW)
        second = pull_materials(project, connector, since=since, now=NOW)
    assert first.counts == {"pulled": 3, "new": 1, "changed": 2, "missing": None, "unchanged": 0}
    assert "missing in kingdee not checked (partial pull)" in first.text()[0]
    assert second.folder.name == "20261129T083005Z-2"  # a second pull never overwrites


def test_a_system_without_a_material_master_is_refused(tmp_path: Path) -> None:
    (tmp_path / "conveyor.yaml").write_text(
        "systems:\n  mes: {connector: fake}\n  k3: {connector: kingdee}\n", encoding="utf-8"
    )
    project = Project.load(tmp_path)
    assert master_data_systems(project) == ["k3"]
    with registry.create(project.system("mes")) as fake, pytest.raises(ConfigError, match="mes"):
        pull_materials(project, fake)
    assert not (tmp_path / ".conveyor").exists()
