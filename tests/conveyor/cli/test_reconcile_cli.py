"""``conveyor reconcile``: a run on the seeded scenario, exit codes, the stored run's ``history``,
``show``, ``resolve``, ``approve``, ``verify``; ``alerts``; snapshots from connectors."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from conveyor.cli import main
from conveyor.config import Project
from conveyor.ledger import Ledger
from conveyor.ledger.db import make_engine
from tests.conveyor.reconcile.scenario import EXPECTED, make_plant, seed_hub


@pytest.fixture
def plant(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The seeded scenario's project with its SQLite ledger migrated and the hub seeded."""
    monkeypatch.delenv("CONVEYOR_DB_URL", raising=False)
    monkeypatch.delenv("CONVEYOR_USER", raising=False)
    root = make_plant(tmp_path / "plant", datetime.now(UTC) + timedelta(days=2))
    code, out = run(root, "db", "upgrade")
    assert code == 0, out
    project = Project.load(root)
    engine = make_engine(project.db_url)
    seed_hub(Ledger(engine, project.router))
    engine.dispose()
    return root


def run(project: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--project", str(project), *args])
    return result.exit_code, result.output


def reconcile(plant: Path, out: Path, *extra: str) -> tuple[int, str]:
    files = plant / "files"
    return run(
        plant,
        "--json",
        "reconcile",
        "--systems",
        "sap,wms,hub",
        "--snapshot",
        f"sap={files / 'sap_mard.csv'}",
        "--snapshot",
        f"wms={files / 'wms_snapshot.json'}",
        "--out",
        str(out),
        "--runner",
        "alice",
        *extra,
    )


def test_run_on_the_seeded_scenario(plant: Path, tmp_path: Path) -> None:
    code, out = reconcile(plant, tmp_path / "out")
    assert code == 0, out
    result: dict[str, Any] = json.loads(out)
    for name, expected in EXPECTED.items():
        assert result["summary"][name] == expected, name
    assert set(result["reports"]) == {"report.json", "report.csv", "report.xlsx", "report.html"}
    for name in result["reports"]:
        assert (tmp_path / "out" / name).is_file()
    assert result["alerts"] > 0  # positions under safety stock were raised after the run
    assert [i["system"] for i in result["inputs"]] == ["sap", "wms", "hub"]


def test_exit_code_with_fail_on_mismatch(plant: Path, tmp_path: Path) -> None:
    code, out = reconcile(plant, tmp_path / "out", "--fail-on-mismatch", "--no-alerts")
    assert code == 1, out
    assert json.loads(out)["summary"]["quantity_mismatch"] == EXPECTED["quantity_mismatch"]


def test_text_output_and_tolerance_option(plant: Path, tmp_path: Path) -> None:
    files = plant / "files"
    code, out = run(
        plant,
        "reconcile",
        "--systems",
        "sap,wms,hub",
        "--snapshot",
        f"sap={files / 'sap_mard.csv'}",
        "--snapshot",
        f"wms={files / 'wms_snapshot.json'}",
        "--tolerance",
        "material:FG-5001=2",
        "--out",
        str(tmp_path / "out"),
        "--no-alerts",
    )
    assert code == 0, out
    assert "accuracy" in out
    assert "50.00 %" in out  # FG-5001's difference of 2 is now within tolerance: 6 of 12
    assert str(tmp_path / "out" / "report.html") in out


def test_the_record_history_show_resolve_approve_verify(plant: Path, tmp_path: Path) -> None:
    code, out = reconcile(plant, tmp_path / "out", "--no-alerts")
    run_id = json.loads(out)["run_id"]
    code, out = run(plant, "--json", "reconcile", "history")
    assert code == 0, out
    (entry,) = json.loads(out)
    assert entry["run_id"] == run_id
    assert entry["accuracy_pct"] == "41.67"
    code, out = run(plant, "reconcile", "history")
    assert run_id[:8] in out
    key = ["--material", "FG-5001", "--location", "1000/FG"]
    code, out = run(
        plant,
        "reconcile",
        "resolve",
        run_id[:8],
        *key,
        "--resolution",
        "counting_error",
        "--note",
        "recount",
        "--by",
        "alice",
    )
    assert code == 2
    assert "someone else" in out
    code, out = run(
        plant,
        "--json",
        "reconcile",
        "resolve",
        run_id[:8],
        *key,
        "--resolution",
        "counting_error",
        "--note",
        "recounted: 118",
        "--by",
        "bob",
    )
    assert code == 0, out
    assert json.loads(out)["status"] == "quantity_mismatch"
    code, out = run(plant, "reconcile", "approve", run_id, "--by", "carol")
    assert code == 2
    assert "no closing resolution" in out
    code, out = run(plant, "reconcile", "approve", run_id, "--by", "alice", "--allow-open")
    assert code == 2
    code, out = run(
        plant, "reconcile", "approve", run_id, "--by", "carol", "--allow-open", "--note", "ok"
    )
    assert code == 0, out
    assert "approved by carol" in out
    code, out = run(plant, "--json", "reconcile", "show", run_id, "--out", str(tmp_path / "again"))
    assert code == 0, out
    shown = json.loads(out)
    assert shown["approvals"][0]["approver"] == "carol"
    assert shown["resolutions"][0]["by"] == "bob"
    assert (tmp_path / "again" / "report.html").is_file()
    code, out = run(plant, "reconcile", "show", run_id)
    assert code == 0, out
    assert "approved by carol" in out
    assert "counting_error" in out
    code, out = run(plant, "reconcile", "verify", run_id)
    assert code == 0, out
    assert out.count("ok") == 4
    with (tmp_path / "out" / "report.csv").open("a", encoding="utf-8") as fh:
        fh.write("tampered\n")
    code, out = run(plant, "reconcile", "verify", run_id)
    assert code == 1
    assert "changed" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--systems", "sap,wms"], "--out"),
        (["--systems", "sap", "--out", "x"], "at least two systems"),
        (["--systems", "sap,nowhere", "--out", "x"], "unknown system 'nowhere'"),
        (["--systems", "sap,hub", "--snapshot", "sap", "--out", "x"], "SYSTEM=FILE"),
        (["--systems", "sap,hub", "--tolerance", "a%", "--out", "x"], "--tolerance"),
        (["--systems", "sap,hub", "--as-of", "yesterday", "--out", "x"], "ISO 8601"),
    ],
)
def test_bad_options_exit_2_with_a_reason(plant: Path, args: list[str], message: str) -> None:
    code, out = run(plant, "reconcile", *args)
    assert code == 2, out
    assert message in out


def test_snapshots_from_connectors_and_the_hub(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CONVEYOR_DB_URL", raising=False)
    rows = [
        {"material": "M1", "location": "L1", "quantity": "4", "uom": "KG"},
        {"material": "M2", "location": "L1", "quantity": "1", "uom": "KG"},
    ]
    (tmp_path / "conveyor.yaml").write_text(
        json.dumps(
            {
                "systems": {"scale": {"connector": "fake", "settings": {"snapshot_rows": rows}}},
                "routes": [{"type": "stock_adjustment", "targets": ["scale"]}],
            }
        ),
        encoding="utf-8",
    )
    assert run(tmp_path, "db", "upgrade")[0] == 0
    canonical = tmp_path / "adjust.json"
    canonical.write_text(
        json.dumps(
            {
                "message_id": "0b9f3d51-6d51-4b0f-8d4e-6d0d6a1c2a11",
                "type": "stock_adjustment",
                "source": "mes",
                "key": "ADJ-1",
                "occurred_at": "2026-11-21T08:00:00+08:00",
                "schema_version": "1.0",
                "payload": {
                    "material": "M1",
                    "location": "L1",
                    "quantity": "4",
                    "uom": "KG",
                    "reason": "count",
                },
            }
        ),
        encoding="utf-8",
    )
    assert run(tmp_path, "accept", str(canonical))[0] == 0
    code, out = run(
        tmp_path, "--json", "reconcile", "--systems", "hub,scale", "--out", str(tmp_path / "o")
    )
    assert code == 0, out
    result = json.loads(out)
    assert result["summary"]["lines"] == 2
    assert result["summary"]["matched"] == 1  # M1: 4 in both
    assert result["summary"]["missing"] == {"hub": 1, "scale": 0}  # M2 only at the scale
    sources = {i["system"]: i["source"] for i in result["inputs"]}
    assert sources == {"hub": "hub ledger", "scale": "connector:fake"}
    code, out = run(tmp_path, "--json", "reconcile", "alerts")
    assert code == 0, out
    assert json.loads(out)["accepted"] == 0  # no master data: no safety stock to fall under


def test_canonical_csv_snapshots_of_every_system(plant: Path, tmp_path: Path) -> None:
    """Canonical CSV files for every system: the engine reads them by columns, bad rows of a file
    are still listed with their line, and the stored snapshot hashes are the files'."""
    rows = "material,location,lot,quantity,uom,description\n"
    files = {
        "sap": rows + "RM-1001,1000/RM,,1250.5,KG,\nRM-2001,1000/WIP-ASSY,,10000,PCS,\n",
        "wms": rows + "RM-1001,1000/RM,,1250.50,KG,\nRM-2001,1000/WIP-ASSY,,9800,PCS,\n",
        "mes": rows + "RM-1001,1000/RM,,1250.5,KG,\nRM-2001,1000/WIP-ASSY,,x,PCS,\n",
    }
    args: list[str] = []
    for system, text in files.items():
        path = tmp_path / f"{system}.csv"
        path.write_text(text, encoding="utf-8")
        args += ["--snapshot", f"{system}={path}"]
    out_dir = tmp_path / "out"
    code, out = run(
        plant,
        "--json",
        "reconcile",
        "--systems",
        "sap,wms,mes",
        *args,
        "--out",
        str(out_dir),
        "--no-alerts",
    )
    assert code == 0, out
    result: dict[str, Any] = json.loads(out)
    summary = result["summary"]
    assert (summary["lines"], summary["matched"], summary["unmapped"]) == (2, 1, 1)
    assert summary["missing"] == {"sap": 0, "wms": 0, "mes": 1}
    for item in result["inputs"]:
        digest = hashlib.sha256((tmp_path / f"{item['system']}.csv").read_bytes()).hexdigest()
        assert item["sha256"] == digest
    report = json.loads((out_dir / "report.json").read_text(encoding="utf-8"))
    (unmapped,) = report["unmapped"]
    assert (unmapped["system"], unmapped["line"], unmapped["stage"]) == ("mes", 3, "validate")


def test_snapshots_in_gbk_and_unreadable_json_run_without_a_traceback(
    plant: Path, tmp_path: Path
) -> None:
    """A GBK canonical CSV reads as ingest reads it; a JSON line nested 10,000 levels deep and
    one with bytes that are not text are listed with their file and line; the run completes."""
    sap = tmp_path / "sap.csv"
    sap.write_bytes(
        "material,location,lot,quantity,uom,description\n"
        "RM-1001,1000/RM,,1250.5,KG,聚丙烯颗粒\n".encode("gbk")
    )
    message = {
        "message_id": "5f0c6f9e-8a2b-4c1d-9e3f-0a1b2c3d4e5f",
        "type": "stock_snapshot",
        "source": "wms",
        "key": "WMS-1",
        "occurred_at": "2026-11-21T18:00:00+08:00",
        "schema_version": "1.0",
        "payload": {
            "as_of": "2026-11-21T18:00:00+08:00",
            "rows": [
                {"material": "RM-1001", "location": "1000/RM", "quantity": "1250.5", "uom": "KG"}
            ],
        },
    }
    wms = tmp_path / "wms.jsonl"
    deep = "[" * 10_000 + "]" * 10_000
    wms.write_bytes(
        json.dumps(message).encode()
        + b"\n"
        + b" " * (1 << 20)  # past what the encoding detection looks at
        + b"\n"
        + f'{{"type": "stock_snapshot", "x": {deep}}}\n'.encode()
        + b'{"type": "stock_snapshot", "key": "\xff"}\n'
    )
    code, out = run(
        plant,
        "--json",
        "reconcile",
        "--systems",
        "sap,wms",
        "--snapshot",
        f"sap={sap}",
        "--snapshot",
        f"wms={wms}",
        "--out",
        str(tmp_path / "out"),
        "--no-alerts",
    )
    assert code == 0, out
    result = json.loads(out)
    assert result["summary"]["exact"] == 1
    assert result["summary"]["unmapped"] == 2
    report = json.loads((tmp_path / "out" / "report.json").read_text(encoding="utf-8"))
    listed = {(u["source"], u["line"]): u["reason"] for u in report["unmapped"]}
    assert "nested too deeply" in listed[(str(wms), 3)]
    assert "not utf-8 text" in listed[(str(wms), 4)]
