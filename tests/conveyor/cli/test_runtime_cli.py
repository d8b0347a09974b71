"""``conveyor poll``, ``receive`` and ``systems`` on SQLite and PostgreSQL projects, and the
stand-in line of ``run`` and ``reconcile``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine

from conveyor import redact
from conveyor.cli import main
from conveyor.ledger import Ledger
from tests.conveyor.runtime.conftest import write_jsonl, write_project
from tests.support.counting_source import order


def run(root: Path, *args: str, input: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["--project", str(root), *args], input=input)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def plant(tmp_path: Path, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project on the test ledger (SQLite or PostgreSQL): ``line1`` polls a fake records file;
    ``plc`` is a test connector with secrets and a live check."""
    records = write_jsonl(tmp_path / "line1.jsonl", [order("line1", n) for n in range(1, 4)])
    root = write_project(
        tmp_path / "plant",
        {
            "line1": {"connector": "fake", "settings": {"records_file": str(records)}},
            "mes": {"connector": "fake"},
            "plc": {
                "connector": "tests.support.checked_source:CheckedSource",
                "connection": "plc_main",
                "settings": {"url": "http://plc.local"},
            },
            "counter": {
                "connector": "tests.support.counting_source:CountingSource",
                "settings": {"count": 2},
            },
        },
    )
    monkeypatch.setenv("CONVEYOR_DB_URL", engine.url.render_as_string(hide_password=False))
    monkeypatch.delenv("CONVEYOR_PROJECT", raising=False)
    for name in ("PASSWORD", "API_KEY", "USERNAME"):
        monkeypatch.delenv(f"CONVEYOR_PLC_MAIN_{name}", raising=False)
    return root


def test_two_polls_the_second_accepts_nothing(plant: Path, engine: Engine) -> None:
    code, out, err = run(plant, "poll", "line1", "--type", "production_order")
    assert code == 0, err
    assert "line1: stand-in connector (fake), not a real system" in err
    assert (
        "line1 production_order: records 3, accepted 3, duplicate 0, rejected 0, parked 0; "
        "cursor 3 (was -)" in out
    )
    code, out, err = run(plant, "poll", "line1", "--type", "production_order", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["stand_in"] is True
    (stream,) = result["streams"]
    assert (stream["records"], stream["accepted"], stream["cursor"]) == (0, 0, "3")
    assert Ledger(engine).checkpoint("line1", "production_order") == "3"


def test_poll_of_every_stream_and_of_a_connector_registered_by_path(plant: Path) -> None:
    code, out, err = run(plant, "--json", "poll", "counter")
    assert code == 0, err
    assert "stand-in" not in err
    (stream,) = json.loads(out)["streams"]
    assert (stream["stream"], stream["accepted"], stream["cursor"]) == ("orders", 2, "2")

    code, _, err = run(plant, "poll", "counter", "--type", "nothing")
    assert code == 1
    assert "has no stream 'nothing' (streams: orders)" in err
    code, _, err = run(plant, "poll", "plc")
    assert code == 1
    assert "does not poll" in err
    code, _, err = run(plant, "poll", "nowhere")
    assert code == 1
    assert "unknown system 'nowhere'" in err


def test_poll_parks_what_it_cannot_take_and_exits_1(plant: Path, tmp_path: Path) -> None:
    records = write_jsonl(tmp_path / "line1.jsonl", [order("line1", 1), {"not": "canonical"}])
    assert records.exists()
    code, out, err = run(plant, "poll", "line1", "--type", "production_order")
    assert code == 1
    assert "accepted 1, duplicate 0, rejected 0, parked 1; cursor 2" in out
    assert "no inbound mapping for production_order" in err


def test_reset_cursor_asks_first(plant: Path, engine: Engine) -> None:
    ledger = Ledger(engine)
    assert run(plant, "poll", "line1", "--type", "production_order")[0] == 0
    assert run(plant, "poll", "counter")[0] == 0

    code, _, err = run(plant, "poll", "line1", "--reset-cursor", input="n\n")
    assert code == 1
    assert "Forget the cursor of line1 (every stream)?" in err
    assert ledger.checkpoint("line1", "production_order") == "3"

    code, out, _ = run(
        plant, "poll", "line1", "--reset-cursor", "--type", "production_order", input="y\n"
    )
    assert code == 0
    assert "line1: cleared 1 cursor(s) (stream production_order)" in out
    assert ledger.checkpoint("line1", "production_order") is None
    assert ledger.checkpoint("counter", "orders") == "2"  # another system's cursor is kept

    code, out, _ = run(plant, "--json", "poll", "counter", "--reset-cursor", "--yes")
    assert code == 0
    assert json.loads(out)["cleared"] == 1
    assert ledger.checkpoints("counter") == {}

    code, out, _ = run(plant, "poll", "line1", "--type", "production_order")
    assert "accepted 0, duplicate 3" in out  # polled again from the start: nothing twice


def test_receive_pass(plant: Path) -> None:
    code, out, err = run(plant, "receive", "line1")
    assert code == 0, err
    assert "line1: stand-in connector (fake)" in err
    assert "units 1: acknowledged 1 (already taken in 0), failed 0, not acknowledged 0" in out
    assert "records 3: accepted 3" in out
    code, out, _ = run(plant, "receive", "line1", "--json")
    assert json.loads(out)["duplicate"] == 3
    code, _, err = run(plant, "receive", "counter")
    assert code == 1
    assert "does not receive" in err


def test_systems_list(plant: Path) -> None:
    code, out, _ = run(plant, "--json", "systems", "list")
    assert code == 0
    systems: dict[str, Any] = {s["system"]: s for s in json.loads(out)}
    assert sorted(systems) == ["counter", "line1", "mes", "plc"]
    assert systems["line1"]["stand_in"] is True
    assert systems["line1"]["kind"] == "fake"
    assert "poll" in systems["line1"]["capabilities"]
    assert systems["mes"]["receives"] == ["production_order"]  # the route line1 → mes
    assert systems["line1"]["receives"] == []
    assert systems["counter"] == {
        "system": "counter",
        "connector": "tests.support.counting_source:CountingSource",
        "kind": "counting",
        "capabilities": ["poll"],
        "streams": ["orders"],
        "receives": [],
        "stand_in": False,
        "error": None,
    }
    code, out, _ = run(plant, "systems", "list")
    assert code == 0
    line1 = next(line for line in out.splitlines() if " line1 " in line)
    assert "stand-in" in line1
    assert "stand-in" not in next(line for line in out.splitlines() if " counter " in line)


def test_systems_check_names_missing_secrets_and_never_prints_values(
    plant: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, err = run(plant, "systems", "check", "plc")
    assert code == 1
    assert "plc (checked): NOT READY" in out
    assert "secrets: api_key missing, password missing" in out
    assert "CONVEYOR_PLC_MAIN_API_KEY" in err
    assert "CONVEYOR_PLC_MAIN_PASSWORD" in err
    assert "login refused (no password)" in out

    monkeypatch.setenv("CONVEYOR_PLC_MAIN_PASSWORD", "hunter2-plc")
    monkeypatch.setenv("CONVEYOR_PLC_MAIN_API_KEY", "k-77aa-plc")
    try:
        code, out, err = run(plant, "systems", "check", "plc")
        assert code == 0, out + err
        assert "secrets: api_key set, password set" in out
        # the live check said the password back: it is masked like every printed text
        assert "live check: http://plc.local: logged in with password ***" in out
        assert "hunter2-plc" not in out + err
        assert "k-77aa-plc" not in out + err
        code, out, _ = run(plant, "systems", "check", "plc", "--json")
        (report,) = json.loads(out)
        assert report["secrets"] == {"api_key": True, "password": True}
        assert "hunter2-plc" not in out
    finally:
        redact.forget_all()


def test_systems_check_every_system_and_a_live_check_that_hangs(plant: Path) -> None:
    code, out, _ = run(plant, "--json", "systems", "check")
    assert code == 1  # plc's secrets are missing
    reports = {r["system"]: r for r in json.loads(out)}
    assert reports["line1"]["ok"] is True  # a stand-in's secrets are optional
    assert reports["line1"]["missing_secrets"] == ["password"]
    assert reports["line1"]["health_ok"] is True
    assert reports["counter"]["health"] is None  # no health capability declared
    assert reports["counter"]["ok"] is True
    assert reports["plc"]["missing_secrets"] == ["api_key", "password"]

    config = plant / "conveyor.yaml"
    config.write_text(
        config.read_text(encoding="utf-8").replace(
            "url: http://plc.local", "url: http://plc.local\n      hang_s: 5"
        ),
        encoding="utf-8",
    )
    code, out, _ = run(plant, "systems", "check", "plc", "--timeout", "0.2")
    assert code == 1
    assert "live check: no answer within 0.2 s" in out

    code, _, err = run(plant, "systems", "check", "nowhere")
    assert code == 1
    assert "unknown system 'nowhere'" in err


def test_run_and_reconcile_say_when_a_stand_in_is_used(
    plant: Path, tmp_path: Path, engine: Engine
) -> None:
    assert run(plant, "db", "upgrade")[0] == 0
    code, _, err = run(plant, "run", "--until-idle", "--timeout", "30")
    assert code == 0, err
    assert "mes: stand-in connector (fake), not a real system" in err
    assert "plc:" not in err  # a real connector is not called a stand-in

    code, _, err = run(plant, "reconcile", "--systems", "line1,hub", "--out", str(tmp_path / "r"))
    assert code == 0, err
    assert "line1: snapshot from a stand-in connector (fake), not a real system" in err
    assert "hub:" not in err


def test_json_output_carries_the_stand_ins_instead_of_a_line(plant: Path, tmp_path: Path) -> None:
    assert run(plant, "db", "upgrade")[0] == 0
    code, out, err = run(plant, "--json", "run", "--until-idle", "--timeout", "30")
    assert code == 0, err
    assert json.loads(out)["stand_ins"] == ["mes"]
    assert "stand-in" not in err
    code, out, err = run(
        plant, "--json", "reconcile", "--systems", "line1,hub", "--out", str(tmp_path / "r")
    )
    assert code == 0, err
    assert json.loads(out)["stand_ins"] == ["line1"]
    code, out, err = run(plant, "--json", "poll", "line1", "--type", "production_order")
    assert json.loads(out)["stand_in"] is True
    assert "stand-in" not in err
