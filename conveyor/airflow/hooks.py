"""``ConveyorHook``: an Airflow Connection of a ``conveyor_*`` type turned into a system's
connector — settings from the Connection (host → ``url``/``wsdl``, the form's fields from
``extra``) over those of ``conveyor.yaml``, and secrets read by the connector itself through the
runtime's one door, ``conveyor.runtime.secrets.secret(connection, field)``, which inside Airflow
asks ``airflow.sdk.BaseHook.get_connection`` (and falls back to ``CONVEYOR_<ID>_<FIELD>``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import BaseHook

from conveyor.runtime.secrets import secret

if TYPE_CHECKING:
    from conveyor.config import Project, SystemConfig
    from conveyor.connector import Connector

HOST_SETTING = {"conveyor_sap": "wsdl"}
"""Which setting the Connection's host fills (``url`` unless named here)."""
RENAMED = {"login_method": "login"}
"""Form fields whose setting has another name (Kingdee's ``login`` would read as the user)."""


@dataclass(frozen=True)
class ConnectionSettings:
    """What a Connection gives a connector: its settings, and the secrets it holds (names)."""

    conn_id: str
    settings: dict[str, Any] = field(default_factory=dict)
    secrets: list[str] = field(default_factory=list)


def settings_from_connection(
    conn_type: str | None, host: str | None, extra: Mapping[str, Any], schema: Mapping[str, Any]
) -> dict[str, Any]:
    """The non-secret settings a Connection holds, as the connector's ``config_schema`` names
    them: host into ``url`` (``wsdl`` for SAP), every ``extra`` key the schema knows and does not
    mark secret (empty values left out, so ``conveyor.yaml`` or the default applies)."""
    properties = schema.get("properties") or {}
    out: dict[str, Any] = {}
    target = HOST_SETTING.get(conn_type or "", "url")
    if host and target in properties:
        out[target] = host
    for key, value in extra.items():
        name = RENAMED.get(key, key)
        spec = properties.get(name)
        if value in (None, "") or not isinstance(spec, Mapping) or spec.get("secret"):
            continue
        out[name] = value
    return out


class ConveyorHook(BaseHook):
    """Reads a ``conveyor_*`` Connection for one of the project's systems (see the module
    docstring). The Connection id defaults to the system's ``connection`` in ``conveyor.yaml``."""

    conn_name_attr = "conveyor_conn_id"
    default_conn_name = "conveyor_default"
    conn_type = "conveyor_hub"
    hook_name = "Conveyor"
    secret_fields: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        conveyor_conn_id: str | None = None,
        *,
        system: str | None = None,
        project: Project | None = None,
    ) -> None:
        super().__init__()
        self.project = project
        self.system = system
        declared = project.system(system) if project is not None and system else None
        self.conveyor_conn_id = conveyor_conn_id or (
            declared.connection if declared is not None and declared.connection else None
        )
        self.declared = declared

    def get_conn(self) -> ConnectionSettings:
        """The Connection's settings for the system's connector, and which secrets are set."""
        if self.conveyor_conn_id is None:
            return ConnectionSettings(conn_id="", settings={}, secrets=[])
        from conveyor.runtime import registry

        conn = self.get_connection(self.conveyor_conn_id)
        schema: Mapping[str, Any] = {}
        fields: list[str] = []
        if self.declared is not None:
            cls = registry.load(self.declared.connector)
            schema, fields = cls.config_schema, cls.secret_fields()
        settings = settings_from_connection(
            conn.conn_type, conn.host, conn.extra_dejson or {}, schema
        )
        present = [f for f in fields if secret(self.conveyor_conn_id, f) is not None]
        return ConnectionSettings(self.conveyor_conn_id, settings, present)

    def system_config(self) -> SystemConfig:
        """The system as declared, with the Connection's settings filling what it leaves out."""
        if self.declared is None:
            raise ValueError("ConveyorHook: give system= and project= to build a connector")
        from_connection = self.get_conn().settings
        merged = {**from_connection, **self.declared.settings}
        return replace(self.declared, settings=merged, connection=self.conveyor_conn_id)

    def connector(self) -> Connector:
        """The system's connector, configured from ``conveyor.yaml`` and the Connection."""
        from conveyor.runtime import registry

        return registry.create(self.system_config())

    def test_connection(self) -> tuple[bool, str]:
        """The connector's live check (Airflow's "Test" button)."""
        from conveyor.runtime.systems import _live_check

        connector = self.connector()
        if not connector.supports("health"):
            return True, f"{connector.kind}: settings valid (no live check)"
        with connector:
            return _live_check(connector, 10.0)
