"""Secrets never leave the process, whichever connector they belong to.

Known secrets are planted for every connector that has them — Kingdee (password login and signed
app secret), YonBIP, Yonyou U8, SAP over SOAP, a REST target's token, an AMQP system's broker URL
with its password, and an API token — and every simulator is told to repeat the credentials it was
given in its error answers. Then calls fail and succeed for real: direct calls that are refused,
deliveries through the worker (one refused, one retried, one delivered per target), a
reconciliation that reads Kingdee's stock, an AMQP receive against a refusing broker, API requests
with the right and a wrong token. Every output is searched for every secret and its encoded forms
(the list of outputs is printed): exception texts, the logs of every level with tracebacks, the
ledger file's bytes, ``parked`` / ``trace`` / ``status`` as text and JSON, the reconciliation's
report files, the API's ``/metrics`` and its answers. Extends tests/conveyor/test_redact.py (the
REST target through the CLI) to every connector.
"""

from __future__ import annotations

import base64
import json
import logging
import shutil
import traceback
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar
from urllib.parse import quote

import pytest
import yaml
from click.testing import CliRunner
from fastapi.testclient import TestClient

from connectors.amqp import AmqpConnector
from conveyor import redact
from conveyor.api import create_app
from conveyor.api.tokens import TokenStore
from conveyor.cli import main
from conveyor.config import Project, RetryPolicy
from conveyor.connector import Connector
from conveyor.delivery.worker import Worker, WorkerOptions
from conveyor.errors import ConveyorError
from conveyor.ledger import Ledger
from conveyor.ledger.db import make_engine
from conveyor.routing import Router
from conveyor.runtime.secrets import env_name
from conveyor.testing.conformance import Harness, _document, _key, _message
from tests.connectors.test_kingdee import KingdeeHarness, SignedKingdeeHarness
from tests.connectors.test_rest import RestHarness
from tests.connectors.test_sap import SapHarness
from tests.connectors.test_yonbip import YonBIPHarness
from tests.connectors.test_yonyou_u8 import U8Harness
from tests.support import kingdee as kd
from tests.support.broker import BROKER

REPO = Path(__file__).resolve().parents[2]
AMQP_PASSWORD = "planted-amqp-pw-6d2e91"
API_TOKEN_NAME = "mes-line-1"


class PasswordKingdee(KingdeeHarness):
    """Kingdee with a password login; its simulator holds no app secret this connector was
    given (it repeats the credentials it holds, and a real server only knows what it was sent)."""

    def start(self) -> None:
        super().start()
        self.sim.app_secret = "not-given-to-a-password-login"


class SignedKingdee(SignedKingdeeHarness):
    """Signed Kingdee requests, as a system of its own (both run in one worker); no password."""

    system: ClassVar[str] = "kingdee_signed"

    def start(self) -> None:
        super().start()
        self.sim.password = "not-given-to-signed-requests"


HARNESSES: list[type[Harness]] = [
    PasswordKingdee,
    SignedKingdee,
    YonBIPHarness,
    U8Harness,
    SapHarness,
    RestHarness,
]


def forms(value: str) -> dict[str, str]:
    """The forms in which a secret leaks: as it is, URL-encoded, base64, JSON-escaped."""
    return {
        "plain": value,
        "url-encoded": quote(value, safe=""),
        "base64": base64.b64encode(value.encode()).decode(),
        "json": json.dumps(value)[1:-1],
    }


@pytest.fixture
def harnesses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Harness]]:
    """Every HTTP connector's simulator running, its secrets planted in the environment."""
    made = []
    for cls in HARNESSES:
        folder = tmp_path / cls.__name__
        folder.mkdir()
        harness = cls(folder)
        for name, value in harness.secrets.items():
            monkeypatch.setenv(env_name(harness.system, name), value)
        made.append(harness)
    for harness in made:
        harness.start()
    try:
        yield made
    finally:
        for harness in made:
            harness.stop()
        redact.forget_all()


def _exception_text(exc: BaseException) -> str:
    """Everything an exception shows: its text, repr, JSON form and the whole traceback chain."""
    shown = [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
    if isinstance(exc, ConveyorError):
        shown.append(json.dumps(exc.as_dict(), default=str))
    return "\n".join(shown)


def _direct_calls(harnesses: list[Harness]) -> dict[str, str]:
    """A refused send to every connector (its simulator repeating the credentials)."""
    texts = {}
    for harness in harnesses:
        harness.misbehave(reject=[_key(1)], echo_secrets=True)
        connector = harness.connector()
        try:
            connector.send(_document(1), message_type=harness.message_type, key=_key(1))
        except ConveyorError as exc:
            texts[f"exception text: {harness.system} refused send"] = _exception_text(exc)
        finally:
            connector.close()
    assert len(texts) == len(harnesses), "every simulator refused the planted key"
    return texts


def _deliver(harnesses: list[Harness], root: Path) -> Ledger:
    """Messages 1-3 to every target through the worker: 1 refused (credentials echoed), the
    first posting of each target failing once (retried), the others delivered."""
    for harness in harnesses:
        harness.misbehave(reject=[_key(1)], fail_first=1, echo_secrets=True)
    (root / ".conveyor").mkdir(parents=True, exist_ok=True)
    engine = make_engine(f"sqlite:///{root / '.conveyor' / 'ledger.db'}")
    systems = [h.system for h in harnesses]
    ledger = Ledger(
        engine,
        Router.from_config([{"type": "production_output", "source": "mes", "targets": systems}]),
    )
    ledger.upgrade()
    results = ledger.accept_batch([_message(harnesses[0], n) for n in (1, 2, 3)])
    assert [r.status for r in results] == ["accepted"] * 3
    connectors: dict[str, Connector] = {h.system: h.connector() for h in harnesses}
    try:
        run = Worker(
            engine,
            targets=systems,
            policy=RetryPolicy(max_attempts=3, base_delay_s=0.05, max_delay_s=0.1),
            options=WorkerOptions(concurrency=2, batch_size=50, heartbeat_s=0.3, stale_after_s=5),
            connectors=connectors,
        ).run(until_idle=True, timeout=120)
        assert run.idle, run
    finally:
        for connector in connectors.values():
            connector.close()
    return ledger


def _project(root: Path, kingdee_url: str) -> None:
    """A project whose systems are the targets, plus Kingdee as it is reconciled."""
    shutil.copytree(REPO / "mappings", root / "mappings")
    shutil.copytree(REPO / "master_data", root / "master_data")
    config = {
        "systems": {
            "mes": {"connector": "fake", "role": "mes"},
            "kingdee": {
                "connector": "kingdee",
                "role": "erp",
                "settings": kd.settings(kingdee_url),
            },
            "line_queue": {"connector": "amqp", "settings": {"queue": "never-declared"}},
        },
        "routes": [],
        "alerts": {"on_accept": False},
    }
    (root / "conveyor.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")


def _file_text(path: Path) -> str:
    """A file's bytes as text; an XLSX (a zip) as the text of every part inside it."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as book:
            return "\n".join(book.read(name).decode("utf-8", "replace") for name in book.namelist())
    return path.read_bytes().decode("latin-1")


def _cli(root: Path, *args: str) -> str:
    result = CliRunner().invoke(main, ["--project", str(root), *args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        return result.output + _exception_text(result.exception)
    return result.output + (result.stderr if result.stderr_bytes else "")


def _amqp(monkeypatch: pytest.MonkeyPatch) -> str:
    """An AMQP receive with a planted password the broker refuses."""
    user_host = BROKER.split("://", 1)[1].split("@", 1)[1]
    monkeypatch.setenv(env_name("line_queue", "url"), f"amqp://guest:{AMQP_PASSWORD}@{user_host}")
    connector = AmqpConnector("line_queue", {"queue": "never-declared", "idle_s": 0.2})
    with pytest.raises(ConveyorError) as refused:
        list(connector.receive())
    connector.close()
    return _exception_text(refused.value)


def _api(root: Path, ledger: Ledger, token: str) -> dict[str, str]:
    """The API's metrics and answers, asked with the token and with a wrong one."""
    app = create_app(Project.load(root), ledger=ledger)
    with TestClient(app) as client:
        good = {"Authorization": f"Bearer {token}"}
        metrics = client.get("/metrics", headers=good)
        assert metrics.status_code == 200
        answers = [
            client.get("/v1/parked", headers=good).text,
            client.get("/v1/status", headers=good).text,
            client.get("/v1/messages/CF-1%2F1", headers=good).text,
            client.get("/v1/status", headers={"Authorization": f"Bearer {token}x"}).text,
            client.post("/v1/messages", content=b"{", headers=good).text,
        ]
    return {"API /metrics": metrics.text, "API answers": "\n".join(answers)}


@pytest.mark.rabbitmq
def test_planted_secrets_appear_in_no_output(
    harnesses: list[Harness],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    redact.install_log_filter()  # as the CLI and the hub do for every handler of the root logger
    root = tmp_path / "plant"
    root.mkdir()
    monkeypatch.delenv("CONVEYOR_DB_URL", raising=False)
    monkeypatch.delenv("CONVEYOR_BROKER_URL", raising=False)
    kingdee = next(h for h in harnesses if h.system == "kingdee")
    _project(root, kingdee.server.url)  # type: ignore[attr-defined]
    token = TokenStore.of_project(root).add(API_TOKEN_NAME, "operate")
    planted = {f"{h.system} {name}": value for h in harnesses for name, value in h.secrets.items()}
    planted.update({"amqp password": AMQP_PASSWORD, "API token": token})

    outputs = _direct_calls(harnesses)
    ledger = _deliver(harnesses, root)
    outputs["exception text: amqp receive refused by the broker"] = _amqp(monkeypatch)
    outputs.update(_api(root, ledger, token))
    for name, args in {
        "parked": ("parked",),
        "parked --json": ("--json", "parked"),
        "trace (refused)": ("trace", "CF-1/1"),
        "trace --json (refused)": ("--json", "trace", "CF-1/1"),
        "trace --json (retried)": ("--json", "trace", "CF-2/1"),
        "status": ("status",),
        "status --json": ("--json", "status"),
        "reconcile --json": (
            "--json",
            "reconcile",
            "--systems",
            "hub,kingdee",
            "--out",
            str(tmp_path / "report"),
            "--no-alerts",
        ),
        "systems check (amqp refused)": ("systems", "check", "line_queue"),
    }.items():
        outputs[f"CLI {name}"] = _cli(root, *args)
    for report in sorted((tmp_path / "report").glob("report.*")):
        outputs[f"report file {report.name}"] = _file_text(report)
    ledger.engine.dispose()
    for path in sorted((root / ".conveyor").glob("ledger.db*")):
        outputs[f"ledger file {path.name} (SQLite bytes)"] = path.read_bytes().decode("latin-1")
    outputs["tokens file"] = (root / ".conveyor" / "tokens.json").read_text(encoding="utf-8")
    outputs["logs (every level, with tracebacks)"] = caplog.text

    # the run did what it should, so the search means something
    parked = json.loads(outputs["CLI parked --json"])
    refused = {row["target"] for row in parked if "CF-1/1" in json.dumps(row)}
    assert refused == {h.system for h in harnesses}, parked
    assert redact.MASK in outputs["CLI parked --json"]  # echoed credentials were there, masked
    assert any(f"report file report.{kind}" in outputs for kind in ("json", "csv", "xlsx", "html"))
    assert "conveyor_" in outputs["API /metrics"]
    assert "ACCESS_REFUSED" in outputs["exception text: amqp receive refused by the broker"]
    report = json.loads(outputs["report file report.json"])
    assert any(i["system"] == "kingdee" for i in report["inputs"])  # Kingdee's stock was read

    print(f"searched {len(outputs)} outputs for {len(planted)} secrets:")
    for where in outputs:
        print(f"  {where}")
    leaks = [
        f"the {what} ({form}) appears in {where}"
        for where, text in outputs.items()
        for what, value in planted.items()
        for form, shown in forms(value).items()
        if len(shown) >= redact.MIN_SECRET_LENGTH and shown in text
    ]
    assert not leaks, "\n".join(leaks)
