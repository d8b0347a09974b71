"""Secrets through one door: an Airflow Connection inside Airflow (a stand-in ``airflow.sdk``
module here: Airflow is not installed), the environment otherwise; every value remembered for
redaction."""

from __future__ import annotations

import base64
import sys
import types
from collections.abc import Iterator
from typing import Any

import pytest

from connectors.fake import FakeConnector
from conveyor import redact
from conveyor.runtime import secrets
from conveyor.runtime.secrets import env_name, in_airflow, secret


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(__import__("os").environ):
        if name.startswith(("AIRFLOW_CTX_", "CONVEYOR_SAP_PRD_")):
            monkeypatch.delenv(name)
    redact.forget_all()
    yield
    redact.forget_all()


class _Connection:
    def __init__(self, login: str | None, password: str | None, extra: dict[str, Any]) -> None:
        self.login = login
        self.password = password
        self.extra_dejson = extra


@pytest.fixture
def airflow(monkeypatch: pytest.MonkeyPatch) -> dict[str, _Connection]:
    """A stand-in ``airflow.sdk`` whose ``BaseHook.get_connection`` answers from a dict."""
    connections: dict[str, _Connection] = {}

    class BaseHook:
        @staticmethod
        def get_connection(conn_id: str) -> _Connection:
            if conn_id not in connections:
                raise LookupError(f"The conn_id `{conn_id}` isn't defined")
            return connections[conn_id]

    package = types.ModuleType("airflow")
    sdk = types.ModuleType("airflow.sdk")
    sdk.BaseHook = BaseHook  # type: ignore[attr-defined]
    package.sdk = sdk  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "airflow", package)
    monkeypatch.setitem(sys.modules, "airflow.sdk", sdk)
    return connections


def test_env_names() -> None:
    assert env_name("sap_prd", "password") == "CONVEYOR_SAP_PRD_PASSWORD"
    assert env_name("kingdee-cloud.prod", "app_secret") == "CONVEYOR_KINGDEE_CLOUD_PROD_APP_SECRET"


def test_environment_outside_airflow(monkeypatch: pytest.MonkeyPatch) -> None:
    # the Airflow tests run Airflow in this process: a process outside Airflow has not imported it
    monkeypatch.delitem(sys.modules, "airflow", raising=False)
    assert not in_airflow()
    assert secret("sap_prd", "password") is None
    monkeypatch.setenv("CONVEYOR_SAP_PRD_PASSWORD", "")
    assert secret("sap_prd", "password") is None  # an empty variable is no secret
    monkeypatch.setenv("CONVEYOR_SAP_PRD_USERNAME", "RFC_USER")
    monkeypatch.setenv("CONVEYOR_SAP_PRD_PASSWORD", "Winter-2026!")
    assert secret("sap_prd", "password") == "Winter-2026!"
    assert "airflow" not in sys.modules  # never imported to find out

    basic = base64.b64encode(b"RFC_USER:Winter-2026!").decode()
    text = f"login failed: Winter-2026! (sent {basic})"
    assert redact.redact(text) == "login failed: *** (sent ***)"
    assert "RFC_USER" in redact.redact("user RFC_USER")  # a username is not a secret


def test_connector_reads_through_its_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_SAP_PRD_PASSWORD", "via-connection")
    connector = FakeConnector("sap", connection="sap_prd")
    assert connector.secret("password") == "via-connection"
    assert FakeConnector("sap_prd").secret("password") == "via-connection"  # name as connection


def test_airflow_connection_first_then_environment(
    airflow: dict[str, _Connection], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert in_airflow()
    airflow["sap_prd"] = _Connection("RFC_USER", "from-airflow", {"App_Secret": "as-in-extra"})
    monkeypatch.setenv("CONVEYOR_SAP_PRD_PASSWORD", "from-env")
    monkeypatch.setenv("CONVEYOR_SAP_PRD_TOKEN", "token-from-env")
    assert secret("sap_prd", "password") == "from-airflow"
    assert secret("sap_prd", "username") == "RFC_USER"
    assert secret("sap_prd", "app_secret") == "as-in-extra"  # extra keys, case-insensitive
    assert secret("sap_prd", "token") == "token-from-env"  # not in the Connection: environment
    assert secret("other", "password") is None  # no such Connection, no variable

    basic = base64.b64encode(b"RFC_USER:from-airflow").decode()
    assert redact.redact(f"a from-airflow b as-in-extra c {basic}") == "a *** b *** c ***"


def test_airflow_without_the_connection_falls_back_to_the_environment(
    airflow: dict[str, _Connection], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONVEYOR_SAP_PRD_PASSWORD", "from-env-only")
    assert secret("sap_prd", "password") == "from-env-only"
    airflow["sap_prd"] = _Connection(None, "", {})
    assert secret("sap_prd", "password") == "from-env-only"  # an empty field is not set
    assert redact.redact("from-env-only") == "***"


def test_is_set_reports_presence(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not secrets.is_set("sap_prd", "api_key")
    monkeypatch.setenv("CONVEYOR_SAP_PRD_API_KEY", "key-12345")
    assert secrets.is_set("sap_prd", "api_key")
    assert redact.redact("key-12345") == "***"
