"""The commands ``mappings check``, ``mappings unmapped``, ``map`` and ``ingest``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from conveyor.cli import main

REPO = Path(__file__).resolve().parents[3]
DATA = REPO / "tests" / "data" / "mapping"


@pytest.fixture
def plant(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project folder with the shipped mappings and master data and its own SQLite ledger."""
    root = tmp_path / "plant"
    root.mkdir()
    shutil.copytree(REPO / "mappings", root / "mappings")
    shutil.copytree(REPO / "master_data", root / "master_data")
    shutil.copy(REPO / "conveyor.yaml", root / "conveyor.yaml")
    monkeypatch.delenv("CONVEYOR_DB_URL", raising=False)
    monkeypatch.delenv("CONVEYOR_PROJECT", raising=False)
    return root


def run(root: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["--project", str(root), *args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def test_check_ok(plant: Path) -> None:
    code, out, err = run(plant, "mappings", "check")
    assert code == 0
    assert "7 mapping file(s), 6 table(s): ok" in out + err


def test_check_reports_file_and_line_without_traceback(plant: Path) -> None:
    mes = plant / "mappings" / "mes.yaml"
    text = mes.read_text(encoding="utf-8")
    text = text.replace("{table: materials, from: mes_part", "{table: materails, from: mes_part", 1)
    text = text.replace("        operation: operation\n", "        opration: operation\n", 1)
    mes.write_text(text, encoding="utf-8")
    wms = plant / "mappings" / "wms.yaml"
    wms.write_text(
        wms.read_text(encoding="utf-8").replace(
            "      key: taskId\n      occurred_at", "      key: taskId\n     occurred_at", 1
        ),
        encoding="utf-8",
    )
    code, out, err = run(plant, "mappings", "check")
    assert code == 1
    lines = out.splitlines()
    assert lines[0].startswith("mappings/mes.yaml:20: ")
    assert "unknown table 'materails'" in lines[0]
    assert lines[1].startswith("mappings/mes.yaml:25: ")
    assert "unknown field 'opration'" in lines[1]
    assert lines[2].startswith("mappings/wms.yaml:14: YAML syntax:")
    assert "Traceback" not in out + err
    assert "3 problem(s)" in err

    code, out, _ = run(plant, "mappings", "check", "--json")
    assert code == 1
    report = json.loads(out)
    assert report["ok"] is False
    assert [(p["file"], p["line"]) for p in report["problems"]] == [
        ("mappings/mes.yaml", 20),
        ("mappings/mes.yaml", 25),
        ("mappings/wms.yaml", 14),
    ]

    # Every other command says so cleanly instead of failing with a traceback.
    code, _, err = run(
        plant,
        "map",
        "--system",
        "mes",
        "--type",
        "material_consumption",
        str(DATA / "mes_consumption.csv"),
    )
    assert code == 1
    assert "mappings/mes.yaml:20:" in err
    assert "Traceback" not in err


def test_map_dry_run(plant: Path) -> None:
    code, out, err = run(
        plant,
        "map",
        "--system",
        "mes",
        "--type",
        "material_consumption",
        str(DATA / "mes_consumption.csv"),
    )
    assert code == 1  # one record would be parked
    assert "mes_consumption.csv:4: ok" in out
    assert '"quantity": "24"' in out
    assert "mes_consumption.csv:5: would be parked:" in out
    assert "P-9999" in out
    assert "4 mapped, 1 would be parked" in err
    assert not (plant / ".conveyor").exists() or not any((plant / ".conveyor").iterdir())

    code, out, _ = run(
        plant,
        "--json",
        "map",
        "--system",
        "sap",
        "--type",
        "production_order",
        str(DATA / "sap_orders.json"),
    )
    assert code == 0
    result = json.loads(out)
    assert result["records"][0]["result"]["payload"]["components"][0]["material"] == "SF-4001"


def test_map_outbound_and_snapshot(plant: Path, tmp_path: Path) -> None:
    code, out, _ = run(
        plant,
        "--json",
        "map",
        "--system",
        "mes",
        "--type",
        "material_consumption",
        str(DATA / "mes_consumption.csv"),
    )
    messages = [r["result"] for r in json.loads(out)["records"] if r["status"] == "ok"]
    path = tmp_path / "messages.jsonl"
    path.write_text("\n".join(json.dumps(m) for m in messages) + "\n", encoding="utf-8")
    code, out, _ = run(
        plant,
        "--json",
        "map",
        "--system",
        "kingdee",
        "--type",
        "material_consumption",
        "--direction",
        "out",
        str(path),
    )
    assert code == 0
    documents = [r["result"] for r in json.loads(out)["records"]]
    assert documents[2]["Model"]["FEntity"][0]["FMaterialId"] == {"FNumber": "5.01.001"}
    assert documents[2]["Model"]["FEntity"][0]["FActualQty"] == "24"

    code, out, _ = run(
        plant,
        "map",
        "--system",
        "kingdee",
        "--type",
        "stock_snapshot",
        str(DATA / "kingdee_stock_gbk.csv"),
    )
    assert code == 0
    assert '"material": "FG-5001"' in out
    assert '"quantity": "144"' in out

    code, _, err = run(plant, "map", "--system", "kingdee", "--type", "stock_transfer", str(path))
    assert code == 1
    assert "no inbound mapping for stock_transfer" in err


def test_ingest_unmapped_and_fix(plant: Path) -> None:
    assert run(plant, "db", "upgrade")[0] == 0
    code, out, err = run(
        plant,
        "ingest",
        "--system",
        "mes",
        "--type",
        "material_consumption",
        str(DATA / "mes_consumption.csv"),
    )
    assert code == 1
    assert "accepted 4, duplicate 0, rejected 0, parked 1" in out
    assert "mes_consumption.csv:5: parked:" in err
    assert "P-9999" in err

    code, out, _ = run(plant, "mappings", "unmapped", "--json")
    assert code == 0
    report = json.loads(out)
    assert [(c["table"], c["code"], c["count"]) for c in report["codes"]] == [
        ("materials", "P-9999", 1)
    ]
    code, out, _ = run(plant, "mappings", "unmapped")
    assert "P-9999" in out
    assert "materials" in out

    with (plant / "master_data" / "materials.csv").open("a", encoding="utf-8") as fh:
        fh.write("RM-9999,new seal,PCS,raw,,,,,,P-9999,\n")
    from conveyor.config import Project
    from conveyor.ledger import Ledger
    from conveyor.mapping.replay import replay_parked

    project = Project.load(plant)
    ledger = Ledger.open(project)
    assert replay_parked(project, ledger) == {"replayed": 1, "still_parked": 0, "duplicate": 0}
    ledger.engine.dispose()
    code, out, _ = run(plant, "mappings", "unmapped")
    assert "no parked records" in out
    code, out, _ = run(plant, "trace", "C-1002/2")
    assert code == 0
    assert "mapping_version=" in out


# ---------------------------------------------------------------------- misuse and hostile files
def test_ingest_with_an_unknown_system_lists_the_known_ones(plant: Path) -> None:
    run(plant, "db", "upgrade")
    code, out, err = run(
        plant, "ingest", "--system", "SAP", "--type", "material_consumption",
        str(DATA / "mes_consumption.csv"),
    )  # fmt: skip
    assert code == 1
    assert "unknown system 'SAP': the known systems (mappings/*.yaml) are " in err
    assert "kingdee, mes, mes_b2mml, sap, wms, yonbip, yonyou; did you mean 'sap'?" in err
    assert "Traceback" not in out + err
    code, _, err = run(
        plant, "map", "--system", "wmss", "--type", "stock_transfer",
        str(DATA / "wms_moves.jsonl"),
    )  # fmt: skip
    assert code == 1
    assert "did you mean 'wms'?" in err


def test_a_file_of_unknown_encoding_is_refused_before_anything_is_ingested(
    plant: Path, tmp_path: Path
) -> None:
    run(plant, "db", "upgrade")
    unreadable = tmp_path / "short.csv"
    unreadable.write_bytes(
        "doc_no,line_no,order_no,part_no,area,lot,qty,unit,posted_at,operation\n"
        "C-1,1,MO-1,P-1001,MOLD-1,仓库,5,kg,2026/11/21 08:30,批次".encode("gbk")
        + b"\x9c\n"
    )
    code, out, err = run(
        plant, "ingest", "--system", "mes", "--type", "material_consumption",
        str(DATA / "mes_consumption.csv"), str(unreadable),
    )  # fmt: skip
    assert code == 1
    assert str(unreadable) in err
    assert "cannot tell its encoding: tried utf-8, gb18030" in err
    assert "(nothing was ingested)" in err
    code, out, _ = run(plant, "--json", "stock")
    assert json.loads(out) == []


def test_pull_prints_the_diff_and_where_the_files_are(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.support import kingdee as kd

    kd.plant_secrets(monkeypatch, "kingdee_k3")
    with kd.serve() as server:
        kd.change_material_master(kd.simulator_of(server))
        root = kd.write_master_data_project(tmp_path / "plant", server.url)
        code, out, _ = run(root, "mappings", "pull", "kingdee")
        assert code == 0
        assert "kingdee: 12 material(s) pulled; new 1, changed 2, missing in kingdee 1" in out
        assert "changed 1.02.001 (RM-2001): base_uom 'PCS' → 'BOX'" in out
        code, out, _ = run(root, "mappings", "pull", "kingdee", "--since", "2999-01-01", "--json")
    assert code == 0
    summary = json.loads(out)
    assert summary["counts"] == {"pulled": 0, "new": 0, "changed": 0, "missing": None,
                                 "unchanged": 0}  # fmt: skip
    assert Path(summary["files"]["diff.json"]).is_file()
    assert run(root, "mappings", "pull", "kingdee", "--since", "yesterday")[0] == 2
