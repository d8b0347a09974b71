"""Secrets never leave the process: known secrets are planted in the environment, deliveries fail
against a target that echoes the request headers (``Authorization`` included) in its error
answers, and then every place a text is stored or printed is searched for them — the ledger file's
bytes, ``run -vv`` (stdout and the logs on stderr), ``parked``, ``trace`` and ``status``, as text
and as JSON."""

from __future__ import annotations

import base64
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conveyor import redact
from conveyor.messages import dumps, new_message
from simulators.http_target import HttpTarget

TOKEN = "planted-token-5a1f9c2e77"
USER = "planted-user"
PASSWORD = "planted-pass-83b0d4f1"
REPO = Path(__file__).resolve().parents[2]


def _message(source: str, kind: str, key: str) -> dict[str, object]:
    payload: dict[str, object] = {"material": "M1", "quantity": "1", "uom": "KG"}
    if kind == "production_output":
        payload.update(order_id=f"PO-{key}", location="1000/FG")
    else:
        payload.update(from_location="1000/RAW", to_location="1000/FG")
    return new_message(kind, source, key, payload)


def _cli(project: Path, *args: str, env: dict[str, str]) -> tuple[int, str, str]:
    done = subprocess.run(
        [sys.executable, "-m", "conveyor", "--project", str(project), *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return done.returncode, done.stdout, done.stderr


def test_planted_secrets_appear_in_no_stored_or_printed_text(tmp_path: Path) -> None:
    basic = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    planted = {"token": TOKEN, "password": PASSWORD, "basic credentials": basic}
    with HttpTarget() as target, HttpTarget() as failing:
        target.configure(reject={"mes:*": 422}, echo_headers=True)
        failing.configure(fail_first=100, fail_status=503, echo_headers=True)
        url = target.url
        config = {
            "systems": {
                "mes": {"connector": "fake"},
                "wms": {"connector": "fake"},
                "erp": {
                    "connector": "rest",
                    "settings": {"url": f"{url}/documents", "auth": "bearer", "timeout_s": 2},
                },
                "wms_erp": {
                    "connector": "rest",
                    "settings": {
                        "url": f"{failing.url}/documents",
                        "auth": "basic",
                        "timeout_s": 2,
                    },
                },
            },
            "routes": [
                {"type": "production_output", "source": "mes", "targets": ["erp"]},
                {"type": "stock_transfer", "source": "wms", "targets": ["wms_erp"]},
            ],
            "retry": {"max_attempts": 2, "base_delay_s": 0.05, "max_delay_s": 0.1},
        }
        (tmp_path / "conveyor.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
        messages = [
            _message("mes", "production_output", "GR-1/1"),
            _message("wms", "stock_transfer", "TR-1/1"),
        ]
        (tmp_path / "in.jsonl").write_text("\n".join(dumps(m) for m in messages) + "\n")
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("CONVEYOR_DB_URL", "CONVEYOR_BROKER_URL")
        }
        env.update(
            CONVEYOR_ERP_TOKEN=TOKEN,
            CONVEYOR_WMS_ERP_USERNAME=USER,
            CONVEYOR_WMS_ERP_PASSWORD=PASSWORD,
        )
        assert _cli(tmp_path, "db", "upgrade", env=env)[0] == 0
        assert _cli(tmp_path, "accept", str(tmp_path / "in.jsonl"), env=env)[0] == 0
        outputs: dict[str, str] = {}
        code, out, err = _cli(tmp_path, "run", "--until-idle", "--timeout", "60", "-vv", env=env)
        assert code == 0, err
        outputs["run -vv (stdout)"] = out
        outputs["run -vv (logs on stderr)"] = err
        for name, args in {
            "parked": ("parked",),
            "parked --json": ("--json", "parked"),
            "trace (text, refused)": ("trace", "GR-1/1"),
            "trace --json (refused)": ("--json", "trace", "GR-1/1"),
            "trace (text, gave up)": ("trace", "TR-1/1"),
            "trace --json (gave up)": ("--json", "trace", "TR-1/1"),
            "status": ("status",),
            "status --json": ("--json", "status"),
        }.items():
            code, out, err = _cli(tmp_path, *args, env=env)
            assert code == 0, err
            outputs[name] = out + err
        # the target did echo the credentials: the test would prove nothing otherwise
        assert (target.stats()["requests"], failing.stats()["requests"]) == (1, 2)
    parked = json.loads(outputs["parked --json"])
    assert len(parked) == 2
    assert any("material is blocked" in row["reason"] for row in parked)
    assert any("simulated outage" in row["reason"] for row in parked)
    assert "Authorization" in outputs["parked --json"]  # echoed ...
    assert redact.MASK in outputs["parked --json"]  # ... and its value masked
    ledger = tmp_path / ".conveyor" / "ledger.db"
    searched = {"ledger file (SQLite bytes)": ledger.read_bytes().decode("latin-1"), **outputs}
    print("searched:", ", ".join(searched))
    assert len(searched) == 11
    for where, text in searched.items():
        for what, value in planted.items():
            assert value not in text, f"the {what} appears in {where}"


def test_the_log_filter_redacts_messages_arguments_and_tracebacks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    redact.remember(TOKEN)
    handler = logging.StreamHandler()
    records: list[str] = []
    handler.emit = lambda record: records.append(handler.format(record))  # type: ignore[method-assign]
    logger = logging.getLogger("conveyor.test.redact")
    logger.addHandler(handler)
    redact.install_log_filter(logger)
    try:
        logger.warning("answer: %s", f"Authorization: Bearer {TOKEN}")
        try:
            raise RuntimeError(f"token={TOKEN}")
        except RuntimeError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
        redact.forget_all()
    assert len(records) == 2
    assert all(TOKEN not in text for text in records)
    assert "RuntimeError" in records[1]
