"""Stock snapshots of both Yonyou connectors, read live from their simulators over loopback
HTTP, feed ``conveyor reconcile --systems hub,<system>`` (no snapshot file)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from conveyor.cli import main
from simulators.yonyou import serve

REPO = Path(__file__).resolve().parents[2]


def run(project: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--project", str(project), *args])
    return result.exit_code, result.output


@pytest.fixture
def simulators() -> Iterator[tuple[Any, Any]]:
    with serve(mode="yonbip") as bip, serve(mode="u8") as u8:
        bip.simulator.set_stock(
            [
                {"org": "1000", "warehouse": "20", "material": "0501001", "quantity": 12},
                {"org": "1000", "warehouse": "01", "material": "0101001", "quantity": "5.5"},
            ]
        )
        u8.simulator.set_stock(
            [
                {"org": "001", "warehouse": "20", "material": "0501001", "quantity": 12},
                {"org": "001", "warehouse": "01", "material": "0101001", "quantity": "5.5"},
            ]
        )
        yield bip, u8


@pytest.fixture
def plant(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, simulators: tuple[Any, Any]) -> Path:
    bip, u8 = simulators
    monkeypatch.delenv("CONVEYOR_DB_URL", raising=False)
    monkeypatch.setenv("CONVEYOR_YONBIP_APP_KEY", "conveyor-app-key")
    monkeypatch.setenv("CONVEYOR_YONBIP_APP_SECRET", "conveyor-app-secret")
    monkeypatch.setenv("CONVEYOR_U8_APP_KEY", "opa-conveyor")
    monkeypatch.setenv("CONVEYOR_U8_APP_SECRET", "u8-secret")
    shutil.copytree(REPO / "mappings", tmp_path / "mappings")
    shutil.copytree(REPO / "master_data", tmp_path / "master_data")
    config = {
        "systems": {
            "yonbip": {"connector": "yonbip", "role": "erp", "settings": {"url": bip.url}},
            "yonyou": {
                "connector": "yonyou_u8",
                "role": "erp",
                "connection": "u8",
                "settings": {
                    "url": u8.url,
                    "from_account": "conveyor",
                    "to_account": "001",
                    "rows_per_page": 1,
                },
            },
        },
        "routes": [{"type": "stock_adjustment", "targets": ["yonbip"]}],
    }
    (tmp_path / "conveyor.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    assert run(tmp_path, "db", "upgrade")[0] == 0
    adjustment = {
        "message_id": "6a0c2d9e-3f55-4c4b-9f0e-2b7d1c9e8a01",
        "type": "stock_adjustment",
        "source": "mes",
        "key": "ADJ-1",
        "occurred_at": "2026-11-21T08:00:00+08:00",
        "schema_version": "1.0",
        "payload": {
            "material": "FG-5001",
            "location": "1000/FG",
            "quantity": "12",
            "uom": "PCS",
            "reason": "count",
        },
    }
    (tmp_path / "adjust.json").write_text(json.dumps(adjustment), encoding="utf-8")
    code, out = run(tmp_path, "accept", str(tmp_path / "adjust.json"))
    assert code == 0, out
    return tmp_path


@pytest.mark.parametrize("system", ["yonbip", "yonyou"], ids=["yonbip", "u8"])
def test_a_live_snapshot_is_reconciled_against_the_hub(plant: Path, system: str) -> None:
    code, out = run(
        plant, "--json", "reconcile", "--systems", f"hub,{system}", "--out", str(plant / system)
    )
    assert code == 0, out
    result = json.loads(out)
    assert result["summary"]["lines"] == 2
    assert result["summary"]["matched"] == 1  # FG-5001: 12 PCS in both
    assert result["summary"]["missing"] == {"hub": 1, system: 0}  # RM-1001 only in the ERP
    sources = {i["system"]: i["source"] for i in result["inputs"]}
    assert sources[system] == f"connector:{'yonbip' if system == 'yonbip' else 'yonyou_u8'}"
