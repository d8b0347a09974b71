"""B2MML / ISA-95 XML: the ``b2mml`` connector (production orders out to an MES as
``ProcessProductionSchedule`` V0600 or ``ProcessOperationsSchedule`` V07) and the ``b2mml``
document format (performance documents in, ``connectors.b2mml.reader``), which file drops, the
AMQP consumer and the HTTP API find in the ``conveyor.formats`` entry-point group.

Settings: ``version`` (``V0600`` default, or ``V0701``); where documents go — ``url`` (POSTed as
``application/xml`` through ``conveyor.runtime.http``, with its timeouts and TLS settings) or
``out_dir`` (written under a temporary name and renamed; an existing file is never overwritten);
``lookup_url`` (HTTP: ``{key}`` is replaced by the hub's key, URL-quoted; 404 means absent);
``xsd_dir`` (the official schemas: every document is validated, in and out); ``max_document_bytes``.
Secret: ``token`` (sent as ``Authorization: Bearer``), read only through ``secret()``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote

from lxml import etree

from connectors.b2mml.writer import VERSION_NAMESPACES, DocumentError, schedule
from connectors.b2mml.xml import safe_parser, schema_for
from conveyor.connector import Connector, SendResult
from conveyor.errors import ConfigError, RejectedError
from conveyor.paths import confined
from conveyor.runtime.http import (
    HTTP_SETTINGS_SCHEMA,
    HttpClient,
    loads_answer,
    raise_for_status,
)

__all__ = ["B2mmlConnector"]

SCHEDULE_DOCUMENTS = {"V0600": "ProductionSchedule", "V0701": "OperationsSchedule"}


def file_name(key: str) -> str:
    """The file name of the document for the hub's ``key``: quoted, so it never names a folder
    (``/``, ``..``) and two keys never share a name."""
    return quote(key, safe="-_.@+=") + ".xml"


def _reference(response: Any) -> str | None:
    """The MES's number for a document: ``id`` of a JSON answer, else the ``Location`` header."""
    if "json" in response.headers.get("Content-Type", ""):
        try:
            answer = loads_answer(response.content)
        except ValueError:
            answer = None
        if isinstance(answer, dict) and answer.get("id"):
            return str(answer["id"])
    location = response.headers.get("Location")
    return str(location) if location else None


class B2mmlConnector(Connector):
    """Production orders to an MES in B2MML (see the module docstring)."""

    kind = "b2mml"
    capabilities = frozenset({"send", "lookup"})
    thread_safe = True
    config_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "version": {"enum": ["V0600", "V0701", "V07"]},
            "url": {"type": "string", "pattern": "^https?://"},
            "lookup_url": {"type": "string", "pattern": "^https?://"},
            "out_dir": {"type": "string", "minLength": 1},
            "xsd_dir": {"type": "string", "minLength": 1},
            "max_document_bytes": {"type": "integer", "minimum": 1},
            "material_uses": {"type": "object", "additionalProperties": {"type": "string"}},
            "token": {"type": "string", "secret": True},
            **HTTP_SETTINGS_SCHEMA,
        },
        "oneOf": [{"required": ["url"]}, {"required": ["out_dir"]}],
    }

    def __init__(
        self, name: str, settings: Mapping[str, Any] | None = None, *, connection: str | None = None
    ) -> None:
        super().__init__(name, settings, connection=connection)
        version = str(self.settings.get("version", "V0600"))
        self.version = "V0701" if version == "V07" else version
        self.namespace = VERSION_NAMESPACES[self.version]
        self.out_dir = Path(self.settings["out_dir"]) if "out_dir" in self.settings else None
        self._http: HttpClient | None = None
        if self.out_dir is None and not self.settings.get("lookup_url"):
            self.narrow_capabilities("lookup")

    # ------------------------------------------------------------------ documents
    def render(self, document: Mapping[str, Any]) -> bytes:
        """The XML for one mapped ``production_order``, validated when ``xsd_dir`` is set."""
        body = schedule(document, self.version)
        compiled = schema_for(self.settings, self.namespace, SCHEDULE_DOCUMENTS[self.version])
        if compiled is not None:
            tree = etree.fromstring(body, safe_parser())
            if not compiled.validate(tree):
                raise DocumentError(
                    f"{self.name}: the schedule breaks the B2MML schema: {compiled.error_log}"
                )
        return body

    @property
    def http(self) -> HttpClient:
        """The HTTP client (made on first use; the token read through ``secret()``)."""
        if self._http is None:
            headers = {"Content-Type": "application/xml; charset=utf-8"}
            token = self.secret("token")
            if token:
                headers["Authorization"] = f"Bearer {token}"
            self._http = HttpClient(self.name, self.settings, headers=headers)
        return self._http

    # ------------------------------------------------------------------ outbound
    def send(
        self,
        document: Mapping[str, Any],
        *,
        message_type: str,
        key: str,
        idempotency_key: str | None = None,
    ) -> SendResult:
        """Deliver the schedule for one ``production_order`` to the MES (folder or HTTP)."""
        if message_type != "production_order":
            raise RejectedError(f"{self.name}: b2mml sends production orders, not {message_type}")
        body = self.render(document)
        if self.out_dir is not None:
            return self._write(body, key)
        headers = {"X-Conveyor-Key": key}
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        response = self.http.request(
            "POST", str(self.settings["url"]), sends=True, what="send", body=body, headers=headers
        )
        raise_for_status(response, name=self.name, what="send")
        return SendResult(external_ref=_reference(response) or key)

    def _write(self, body: bytes, key: str) -> SendResult:
        assert self.out_dir is not None
        if not self.out_dir.is_dir():
            raise ConfigError(f"{self.name}: out_dir {self.out_dir} is not a folder")
        name = file_name(key)
        try:
            final = confined(self.out_dir, name)
        except ValueError as exc:
            raise RejectedError(f"{self.name}: key {key!r} cannot name a file: {exc}") from None
        temporary = confined(self.out_dir, f".{uuid.uuid4().hex}.tmp")
        with open(temporary, "wb") as handle:
            handle.write(body)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            # link, not rename: a rename would replace a document already delivered
            os.link(temporary, final)
        except FileExistsError:
            return SendResult(external_ref=name, already_present=True)
        finally:
            temporary.unlink(missing_ok=True)
        return SendResult(external_ref=name)

    def lookup(self, *, message_type: str, key: str) -> SendResult | None:
        """The document for ``key``: a file of that name, or what ``lookup_url`` answers."""
        if self.out_dir is not None:
            path = confined(self.out_dir, file_name(key))
            return (
                SendResult(external_ref=path.name, already_present=True) if path.exists() else None
            )
        url = str(self.settings["lookup_url"]).replace("{key}", quote(key, safe=""))
        response = self.http.get(url)
        if response is None:
            return None
        return SendResult(external_ref=_reference(response) or key, already_present=True)

    def close(self) -> None:
        """Close the HTTP session."""
        if self._http is not None:
            self._http.close()
