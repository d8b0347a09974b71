"""The provider: its info passes Airflow's own schemas, importing it imports no Airflow, its
connection forms reach Airflow's UI (``/ui/connections/hook_meta`` on the real API app), and the
hook turns a Connection into a configured connector whose secrets come through the runtime's
``secret()`` door."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import jsonschema

from conveyor.airflow import get_provider_info
from tests.support.airflow import airflow_env, require_airflow, run_python

__all__ = ["airflow_env"]  # the session fixture used here

KINDS = ["conveyor_hub", "conveyor_kingdee", "conveyor_rest", "conveyor_sap", "conveyor_yonyou"]


def airflow_schema(name: str) -> dict:
    """One of the JSON schemas Airflow validates providers with (read, Airflow not imported)."""
    require_airflow()
    spec = importlib.util.find_spec("airflow")
    assert spec is not None
    assert spec.submodule_search_locations
    folder = Path(next(iter(spec.submodule_search_locations)))
    return dict(json.loads((folder / name).read_text(encoding="utf-8")))


def test_provider_info_passes_airflows_schemas() -> None:
    info = get_provider_info()
    jsonschema.validate(info, airflow_schema("provider_info.schema.json"))
    assert sorted(k["connection-type"] for k in info["connection-types"]) == KINDS
    assert info["package-name"] == "conveyor-hub"


def test_importing_the_provider_imports_no_airflow() -> None:
    code = (
        "import sys, conveyor.airflow\n"
        "print(sorted(m for m in sys.modules if m.startswith('airflow')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]"


def test_the_entry_point_names_get_provider_info() -> None:
    from importlib.metadata import entry_points

    group = entry_points(group="apache_airflow_provider")
    (found,) = [ep for ep in group if ep.value.startswith("conveyor")]
    assert found.value == "conveyor.airflow:get_provider_info"
    assert found.load()()["name"] == "Conveyor"


HOOK_META = """
import json
from airflow.api_fastapi.app import create_app, purge_cached_app
from fastapi.testclient import TestClient

purge_cached_app()
client = TestClient(create_app())
answer = client.get("/ui/connections/hook_meta")
forms = {
    h["connection_type"]: h for h in answer.json() if h["connection_type"].startswith("conveyor_")
}
print(json.dumps({"status": answer.status_code, "forms": forms}))
"""


def test_connection_forms_appear_in_airflows_hook_meta(airflow_env: dict[str, str]) -> None:
    out = run_python(HOOK_META, airflow_env)
    assert out["status"] == 200
    forms = out["forms"]
    assert sorted(forms) == KINDS
    kingdee = forms["conveyor_kingdee"]
    assert kingdee["hook_name"] == "Conveyor: Kingdee K/3 Cloud"
    assert kingdee["standard_fields"]["host"] == {
        "hidden": False,
        "title": "WebAPI URL",
        "placeholder": "https://erp.example.com/k3cloud",
    }
    assert kingdee["standard_fields"]["port"]["hidden"] is True
    assert kingdee["extra_fields"]["acct_id"]["schema"]["title"] == "Account set id (账套ID)"
    assert kingdee["extra_fields"]["lcid"]["value"] == 2052
    assert kingdee["extra_fields"]["app_secret"]["schema"]["format"] == "password"
    yonyou = forms["conveyor_yonyou"]
    assert {"from_account", "to_account", "app_key"} <= set(yonyou["extra_fields"])
    assert yonyou["standard_fields"]["password"]["hidden"] is True


HOOK = """
import json
from conveyor.airflow.hooks import ConveyorHook
from conveyor.config import Project
from conveyor.runtime.secrets import secret

project = Project(root=".", raw={"systems": {"k3": {
    "connector": "kingdee", "connection": "kingdee_prd", "settings": {"submit": True}}}})
hook = ConveyorHook(system="k3", project=project)
connector = hook.connector()
got = hook.get_conn()
print(json.dumps({
    "conn_id": got.conn_id,
    "settings": connector.settings,
    "present": got.secrets,
    "password": secret("kingdee_prd", "password"),
    "kind": connector.kind,
}))
"""


def test_the_hook_builds_the_connector_from_a_connection(airflow_env: dict[str, str]) -> None:
    connection = {
        "conn_type": "conveyor_kingdee",
        "host": "https://k3.example.com/k3cloud",
        "login": "administrator",
        "password": "Winter-2026!",
        "extra": {"acct_id": "6512", "lcid": 1033, "login_method": "password", "org": ""},
    }
    env = {**airflow_env, "AIRFLOW_CONN_KINGDEE_PRD": json.dumps(connection)}
    out = run_python(HOOK, env)
    assert out["conn_id"] == "kingdee_prd"
    assert out["kind"] == "kingdee"
    assert out["settings"] == {
        "url": "https://k3.example.com/k3cloud",
        "acct_id": "6512",
        "lcid": 1033,
        "login": "password",
        "submit": True,
    }
    assert sorted(out["present"]) == ["password", "username"]
    assert out["password"] == "Winter-2026!"  # the same door the runtime reads through
