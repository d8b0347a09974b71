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


# ---------------------------------------------------------------------- first run and misuse
def one_clear_line(project: Path, *args: str) -> str:
    """Run a command that must refuse; return its one line (exit 1, no traceback)."""
    result = CliRunner().invoke(main, ["--project", str(project), *args])
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    return lines[0]


@pytest.mark.parametrize("command", [["stock"], ["status"], ["accept", "SAMPLE"]])
def test_commands_before_db_upgrade_say_what_to_do(project: Path, command: list[str]) -> None:
    args = [str(REPO / "samples" / "messages.jsonl") if a == "SAMPLE" else a for a in command]
    line = one_clear_line(project, *args)
    assert line.startswith("Error: ledger not initialised: run conveyor db upgrade")


@pytest.mark.postgres
def test_an_empty_postgresql_database_is_not_initialised(
    pg_database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import uuid

    from sqlalchemy import text

    from conveyor.ledger.db import make_engine

    name = f"conveyor_empty_{uuid.uuid4().hex[:8]}"
    admin_url = pg_database_url.rsplit("/", 1)[0] + "/postgres"
    admin = make_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        monkeypatch.setenv("CONVEYOR_DB_URL", admin_url.rsplit("/", 1)[0] + "/" + name)
        shutil.copy(REPO / "conveyor.yaml", tmp_path / "conveyor.yaml")
        line = one_clear_line(tmp_path, "stock")
        assert "ledger not initialised: run conveyor db upgrade" in line
        assert run(tmp_path, "db", "upgrade")[0] == 0
        assert run(tmp_path, "stock")[0] == 0
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_a_project_that_does_not_exist_is_refused_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-plant"
    line = one_clear_line(missing, "db", "upgrade")
    assert f"project directory {missing} does not exist" in line
    assert not missing.exists()


def test_a_folder_without_conveyor_yaml_is_refused(tmp_path: Path) -> None:
    line = one_clear_line(tmp_path, "db", "upgrade")
    assert "has no conveyor.yaml: not a Conveyor project" in line
    assert not (tmp_path / ".conveyor").exists()


def test_a_db_url_into_a_missing_folder_is_refused(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONVEYOR_DB_URL", f"sqlite:///{tmp_path / 'gone' / 'ledger.db'}")
    line = one_clear_line(project, "db", "upgrade")
    assert f"the ledger's folder {tmp_path / 'gone'} does not exist" in line
    assert not (tmp_path / "gone").exists()


def test_a_write_lock_held_past_the_timeout_is_one_line(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlite3

    assert run(project, "db", "upgrade")[0] == 0
    monkeypatch.setenv("CONVEYOR_DB_LOCK_TIMEOUT", "0.3")
    holder = sqlite3.connect(project / ".conveyor" / "ledger.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        line = one_clear_line(project, "accept", str(REPO / "samples" / "messages.jsonl"))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert "the ledger is busy" in line
    assert "longer than 0.3 s" in line
    code, out = run(project, "accept", str(REPO / "samples" / "messages.jsonl"))
    assert code == 0, out


def test_accept_refuses_a_csv_file_and_suggests_ingest(project: Path, tmp_path: Path) -> None:
    run(project, "db", "upgrade")
    path = tmp_path / "consumption.csv"
    path.write_text("doc_no,qty\nC-1,5\n", encoding="utf-8")
    line = one_clear_line(project, "accept", str(REPO / "samples" / "messages.jsonl"), str(path))
    assert "is a CSV file: accept takes canonical JSON messages" in line
    assert f"conveyor ingest --system SYSTEM --type TYPE {path}" in line
    assert json.loads(run(project, "--json", "stock")[1]) == []  # nothing accepted


def test_a_huge_rejected_line_is_echoed_clipped(project: Path, tmp_path: Path) -> None:
    run(project, "db", "upgrade")
    sample = (REPO / "samples" / "messages.jsonl").read_text(encoding="utf-8").splitlines()
    message = json.loads(sample[1])
    message["payload"]["lot"] = "L" * 3_000_000  # schema-invalid (too long), under the line limit
    path = tmp_path / "big.jsonl"
    path.write_text(json.dumps(message) + "\n" + sample[2] + "\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["--project", str(project), "accept", str(path)])
    assert result.exit_code == 1
    assert "accepted 1, duplicate 0, conflict 0, rejected 1" in result.stdout
    assert len(result.stderr) < 3000
    assert "more characters" in result.stderr


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
