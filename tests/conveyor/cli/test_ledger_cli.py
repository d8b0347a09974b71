"""``conveyor db upgrade``, ``accept``, ``stock`` and ``trace`` on a SQLite project."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from conveyor.cli import main

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("CONVEYOR_DB_URL", raising=False)
    shutil.copy(REPO / "conveyor.yaml", tmp_path / "conveyor.yaml")
    return tmp_path


def run(project: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--project", str(project), *args])
    return result.exit_code, result.output


def test_help_is_fast_and_lists_commands() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "conveyor", "--help"], capture_output=True, text=True, check=True
    )
    for command in ("accept", "db", "stock", "trace"):
        assert command in out.stdout


def test_db_upgrade_creates_sqlite_ledger(project: Path) -> None:
    code, out = run(project, "db", "upgrade")
    assert code == 0, out
    assert (project / ".conveyor" / "ledger.db").exists()
    assert "revision" in out


def test_accept_twice_then_stock(project: Path) -> None:
    run(project, "db", "upgrade")
    sample = str(REPO / "samples" / "messages.jsonl")
    code, out = run(project, "--json", "accept", sample)
    assert code == 0
    assert json.loads(out)["accepted"] == 13
    code, out = run(project, "--json", "accept", sample)
    assert code == 0
    assert json.loads(out) == {
        "accepted": 0,
        "duplicate": 13,
        "conflict": 0,
        "rejected": 0,
        "alerts": 0,
        "rejected_records": [],
    }
    code, out = run(
        project, "--json", "stock", "--material", "RM-1001", "--location", "1000/WIP-MOLD"
    )
    assert json.loads(out)[0]["quantity"] == "129.85"
    code, out = run(project, "stock", "--lot", "FG261121-A")
    assert "46" in out


def test_rejected_records_exit_1_and_are_parked(project: Path) -> None:
    run(project, "db", "upgrade")
    code, out = run(project, "--json", "accept", str(REPO / "samples" / "rejected.jsonl"))
    assert code == 1
    report = json.loads(out)
    assert report["rejected"] == 6
    assert [r["line"] for r in report["rejected_records"]] == [1, 2, 3, 4, 5, 6]
    reasons = [r["reason"] for r in report["rejected_records"]]
    assert "material_consumptio" in reasons[0]
    assert "$.payload.material" in reasons[1]
    assert "'-5'" in reasons[2]
    assert "12,5kg" in reasons[3]
    assert "2026-11-21 25:61" in reasons[4]
    assert all(r["parked_id"] for r in report["rejected_records"])
    code, out = run(project, "accept", str(REPO / "samples" / "rejected.jsonl"))
    assert "rejected.jsonl:3: rejected: $.payload.quantity" in out


def test_trace_shows_changes_and_routes(project: Path) -> None:
    run(project, "db", "upgrade")
    run(project, "accept", str(REPO / "samples" / "messages.jsonl"))
    code, out = run(project, "trace", "MC-100045-0001/1")
    assert code == 0
    assert "stock RM-1001 @ 1000/WIP-MOLD lot=L2611-07: -120.1 KG" in out
    assert "→ sap: pending" in out
    code, out = run(project, "trace", "nothing-like-this")
    assert code == 1


def test_bad_config_is_reported_with_line(project: Path) -> None:
    (project / "conveyor.yaml").write_text(
        "systems:\n  sap:\n    conector: fake\n", encoding="utf-8"
    )
    code, out = run(project, "stock")
    assert code == 1
    assert "conveyor.yaml:3:" in out


@pytest.fixture
def plant(project: Path) -> Path:
    """The shipped project: config, mappings and master data (safety stock per material)."""
    shutil.copytree(REPO / "master_data", project / "master_data")
    shutil.copytree(REPO / "mappings", project / "mappings")
    return project


def test_accepting_stock_movements_raises_stock_alerts_once(plant: Path) -> None:
    run(plant, "db", "upgrade")
    sample = str(REPO / "samples" / "messages.jsonl")
    code, out = run(plant, "accept", sample)
    assert code == 0, out
    # plant 1000 ends the sample day with FG-5001 46 < 200 and RM-2001 4,616 < 20,000 (nettable)
    assert "stock alerts raised: 2" in out
    code, out = run(plant, "--json", "trace", "alert/below_safety_stock/FG-5001/1000/-/46/200")
    assert code == 0, out
    assert json.loads(out)["messages"][0]["type"] == "stock_alert"
    code, out = run(plant, "--json", "accept", sample)
    assert json.loads(out)["alerts"] == 0  # nothing moved: nothing re-checked


def test_alerts_on_accept_can_be_turned_off(plant: Path) -> None:
    config = plant / "conveyor.yaml"
    config.write_text(
        config.read_text(encoding="utf-8") + "\nalerts:\n  on_accept: false\n", encoding="utf-8"
    )
    run(plant, "db", "upgrade")
    code, out = run(plant, "--json", "accept", str(REPO / "samples" / "messages.jsonl"))
    assert code == 0, out
    assert json.loads(out)["alerts"] == 0
    code, out = run(plant, "--json", "reconcile", "alerts")
    assert json.loads(out)["accepted"] == 2  # the check still runs when asked


def test_a_broken_mapping_does_not_fail_an_accept_of_canonical_messages(plant: Path) -> None:
    (plant / "mappings" / "mes.yaml").write_text("inbound: [unclosed\n", encoding="utf-8")
    run(plant, "db", "upgrade")
    result = CliRunner().invoke(
        main, ["--project", str(plant), "accept", str(REPO / "samples" / "messages.jsonl")]
    )
    assert result.exit_code == 0, result.output
    assert "accepted 13" in result.stdout
    assert "stock alerts not checked: " in result.stderr
    assert "mes.yaml" in result.stderr


def test_rejected_values_are_echoed_escaped(project: Path) -> None:
    run(project, "db", "upgrade")
    code, out = run(
        project, "accept", str(REPO / "tests" / "data" / "hostile" / "ledger_codes.jsonl")
    )
    assert code == 1
    assert "accepted 2, duplicate 0, conflict 0, rejected 12" in out
    assert "\x1b" not in out
    assert "\u202e" not in out
    assert "\x00" not in out
    assert "\\x1b[31mHK-RM-1001" in out
    assert "\\u202e" in out


def test_a_conflict_is_counted_exits_1_and_shows_in_trace(project: Path) -> None:
    run(project, "db", "upgrade")
    hostile = str(REPO / "tests" / "data" / "hostile" / "ledger_conflicts.jsonl")
    code, out = run(project, "--json", "accept", hostile)
    assert code == 1
    counts = json.loads(out)
    assert (counts["accepted"], counts["duplicate"], counts["conflict"]) == (1, 3, 3)
    assert {r["status"] for r in counts["rejected_records"]} == {"conflict"}
    code, out = run(project, "trace", "HC-GR-1/1")
    assert code == 0
    assert out.count("production_output mes:HC-GR-1/1") == 1
    assert out.count("(accept, parked)") == 3
