"""Conveyor as an Airflow provider: ``get_provider_info`` (the ``apache_airflow_provider`` entry
point of the ``conveyor-hub`` distribution) declares the connection types and their forms.

This module imports no Airflow (Airflow reads it while discovering providers, and the hub must
import it without Airflow installed); the hook, operators, trigger and DAG builder live in the
submodules, which do. The forms are declarative (``ui-field-behaviour`` and ``conn-fields``,
Airflow 3.2+): fields a system does not use are hidden, the rest relabelled for its vocabulary,
and the connector's own settings (account set, language, organisation, …) and secrets (app key,
app secret, token) are ``conn-fields`` stored in the Connection's ``extra`` under the names the
connector's ``config_schema`` gives them, which is where ``conveyor.runtime.secrets`` reads them.
"""

from __future__ import annotations

from typing import Any

HOOK = "conveyor.airflow.hooks.ConveyorHook"
TRIGGER = "conveyor.airflow.triggers.AmqpEventTrigger"


def _field(
    label: str,
    kind: str = "string",
    *,
    description: str | None = None,
    default: Any = None,
    enum: list[Any] | None = None,
    secret: bool = False,
) -> dict[str, Any]:
    """One ``conn-fields`` entry: an optional JSON-schema field kept in the Connection's extra."""
    schema: dict[str, Any] = {"type": [kind, "null"]}
    if default is not None:
        schema["default"] = default
    if enum is not None:
        schema["enum"] = [*enum, None]
    if secret:
        schema["format"] = "password"
    field: dict[str, Any] = {"label": label, "schema": schema}
    if description:
        field["description"] = description
    return field


_HTTP_FIELDS = {
    "timeout_s": _field("Timeout (s)", "number", description="Read timeout of each call."),
    "verify_tls": _field("Verify TLS", "boolean", default=True),
    "ca_bundle": _field("CA bundle file", description="PEM file of the system's CA."),
}


def _kind(
    conn_type: str,
    name: str,
    *,
    hidden: list[str],
    relabel: dict[str, str],
    placeholders: dict[str, str],
    fields: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    return {
        "connection-type": conn_type,
        "hook-class-name": HOOK,
        "hook-name": name,
        "ui-field-behaviour": {
            "hidden-fields": hidden,
            "relabeling": relabel,
            "placeholders": placeholders,
        },
        "conn-fields": {**fields, **_HTTP_FIELDS},
    }


CONNECTION_TYPES: list[dict[str, Any]] = [
    _kind(
        "conveyor_kingdee",
        "Conveyor: Kingdee K/3 Cloud",
        hidden=["schema", "port", "extra"],
        relabel={"host": "WebAPI URL", "login": "User name", "password": "Password"},
        placeholders={
            "host": "https://erp.example.com/k3cloud",
            "login": "Administrator",
        },
        fields={
            "acct_id": _field("Account set id (账套ID)", description="The data centre's id."),
            "lcid": _field("Language (LCID)", "integer", default=2052, enum=[2052, 1033, 3076]),
            "org": _field("Organisation number", description="Used by signed (app) logins."),
            "auth": _field("Authentication", default="session", enum=["session", "signed"]),
            "login_method": _field(
                "Login with", default="password", enum=["password", "app_secret", "sign"]
            ),
            "app_id": _field("App id", description="Third-party system login."),
            "app_secret": _field("App secret", secret=True),
        },
    ),
    _kind(
        "conveyor_yonyou",
        "Conveyor: Yonyou U8 / YonBIP",
        hidden=["schema", "port", "login", "password", "extra"],
        relabel={"host": "Open API URL"},
        placeholders={"host": "https://api.yonyoucloud.com/iuap-api-gateway"},
        fields={
            "from_account": _field("From account (U8)", description="Sending system code."),
            "to_account": _field("To account (U8)", description="The U8 enterprise's account."),
            "org": _field("Organisation (YonBIP)"),
            "app_key": _field("App key", secret=True),
            "app_secret": _field("App secret", secret=True),
        },
    ),
    _kind(
        "conveyor_sap",
        "Conveyor: SAP (SOAP / BAPI)",
        hidden=["schema", "port", "extra"],
        relabel={"host": "WSDL URL", "login": "SAP user", "password": "Password"},
        placeholders={
            "host": "https://sap.example.com/sap/bc/srt/wsdl/…?sap-client=100",
            "login": "RFC_CONVEYOR",
        },
        fields={
            "url": _field("Endpoint URL", description="Override of the WSDL's address."),
            "auth": _field("Authentication", default="basic", enum=["none", "basic", "wsse"]),
            "commit": _field("Commit", default="session", enum=["session", "wrapper"]),
        },
    ),
    _kind(
        "conveyor_rest",
        "Conveyor: REST system",
        hidden=["schema", "port", "extra"],
        relabel={"host": "Document URL", "login": "User name (basic)"},
        placeholders={"host": "https://mes.example.com/api/{message_type}"},
        fields={
            "auth": _field("Authentication", default="none", enum=["none", "bearer", "basic"]),
            "lookup_url": _field("Lookup URL", description="With {key}: find a document."),
            "token": _field("Bearer token", secret=True),
        },
    ),
    {
        "connection-type": "conveyor_hub",
        "hook-class-name": HOOK,
        "hook-name": "Conveyor: hub",
        "ui-field-behaviour": {
            "hidden-fields": ["schema", "login", "extra"],
            "relabeling": {"host": "Hub API URL", "password": "API token", "port": "Port"},
            "placeholders": {"host": "http://conveyor-api", "port": "8000"},
        },
        "conn-fields": {
            "project": _field("Project folder", description="CONVEYOR_PROJECT of the hub."),
            "events_queue": _field("Parking events queue", default="conveyor.parked"),
        },
    },
]


def get_provider_info() -> dict[str, Any]:
    """The provider-info dict Airflow reads from the ``apache_airflow_provider`` entry point."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        own_version = version("conveyor-hub")
    except PackageNotFoundError:  # running from a source tree that is not installed
        own_version = "0"
    return {
        "package-name": "conveyor-hub",
        "name": "Conveyor",
        "description": "Conveyor integration hub: ERP/MES/WMS connections, hooks, operators, "
        "DAGs and parking events.",
        "versions": [own_version],
        "connection-types": CONNECTION_TYPES,
        "hook-class-names": [HOOK],
    }
