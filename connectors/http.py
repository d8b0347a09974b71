"""A generic REST/HTTP connector: posts outbound documents as JSON (one at a time, or many in one
array), looks them up by the hub's key.

Settings (``systems.<name>.settings`` in ``conveyor.yaml``; no secrets here):

- ``url`` — where documents are posted; may use ``{message_type}`` (required);
- ``method`` — ``POST`` (default) or ``PUT``;
- ``batch_url`` — when set the connector can ``send_batch``: a JSON array of
  ``{"key": …, "document": …}`` (plus ``idempotency_key`` for targets that take one) is posted
  there, answered with a list of per-document results ``{"key": …, "id": …}`` or
  ``{"key": …, "status": 422, "error": "…"}`` (matched by key, else by position);
- ``lookup_url`` — a URL template with ``{key}`` (URL-quoted) and ``{message_type}``; when set the
  connector can ``lookup``: 200 means the target has the document, 404 that it has not;
- ``ref_field`` — dotted path of the document number in the JSON answer (default ``id``); the
  ``Location`` header is used when the answer has none;
- ``key_header`` — header carrying the hub's business key (default ``X-Conveyor-Key``);
- ``idempotency_header`` — when set (e.g. ``Idempotency-Key``) the target deduplicates by it, and
  the connector declares the ``idempotency_key`` capability;
- ``headers`` — extra non-secret headers;
- HTTP settings of ``conveyor.runtime.http``: ``timeout_s`` (default 10 s),
  ``connect_timeout_s``, ``ca_bundle``, ``client_cert``, ``client_key``, ``verify_tls``;
- ``auth`` — ``bearer`` (secret ``TOKEN``) or ``basic`` (secrets ``USERNAME``, ``PASSWORD``),
  read from ``CONVEYOR_<CONNECTION>_<FIELD>`` and never logged.

The HTTP itself — pooled sessions, timeouts, TLS, proxies and the classification of every failure
(transient, ambiguous, rejected) — is ``conveyor.runtime.http``, shared by every HTTP connector.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar
from urllib.parse import quote

import requests

from conveyor.connector import BatchItem, Connector, ItemResult, SendResult
from conveyor.errors import (
    AmbiguousDeliveryError,
    ConfigError,
    ConveyorError,
    RejectedError,
    classify_http_status,
)
from conveyor.messages import json_default
from conveyor.redact import safe_text
from conveyor.runtime.http import HTTP_SETTINGS_SCHEMA, HttpClient

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def _check_header(name: str, value: str) -> None:
    """Refuse header names that are not tokens and values that could end the header."""
    if not _TOKEN.fullmatch(name):
        raise ValueError(f"invalid header name {name!r}")
    if "\r" in value or "\n" in value or "\0" in value:
        raise ValueError(f"invalid value for header {name}")


def _dig(data: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(data, Mapping) or part not in data:
            return None
        data = data[part]
    return data


class RestConnector(Connector):
    """Posts documents to a REST endpoint (see the module docstring)."""

    kind = "rest"
    thread_safe = True  # a requests session and its pool serve the worker's threads together
    capabilities: ClassVar[frozenset[str]] = frozenset(
        {"send", "send_batch", "lookup", "idempotency_key", "health"}
    )
    config_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "required": ["url"],
        "additionalProperties": False,
        "properties": {
            "url": {"type": "string", "pattern": "^https?://"},
            "method": {"enum": ["POST", "PUT"]},
            "batch_url": {"type": "string", "pattern": "^https?://"},
            "lookup_url": {"type": "string", "pattern": "^https?://"},
            "ref_field": {"type": "string"},
            "key_header": {"type": "string"},
            "idempotency_header": {"type": "string"},
            "headers": {"type": "object", "additionalProperties": {"type": "string"}},
            "auth": {"enum": ["none", "bearer", "basic"]},
            **HTTP_SETTINGS_SCHEMA,
            "token": {"type": "string", "secret": True},
            "username": {"type": "string", "secret": True},
            "password": {"type": "string", "secret": True},
        },
    }

    def __init__(
        self, name: str, settings: Mapping[str, Any] | None = None, *, connection: str | None = None
    ) -> None:
        super().__init__(name, settings, connection=connection)
        s = self.settings
        self.url: str = s["url"]
        self.method: str = s.get("method", "POST")
        self.batch_url: str | None = s.get("batch_url")
        self.lookup_url: str | None = s.get("lookup_url")
        self.ref_field: str = s.get("ref_field", "id")
        self.key_header: str = s.get("key_header", "X-Conveyor-Key")
        self.idempotency_header: str | None = s.get("idempotency_header")
        self.http = HttpClient(name, s)
        self._headers: dict[str, str] | None = None
        if self.batch_url is None:
            self.narrow_capabilities("send_batch")
        if self.lookup_url is None:
            self.narrow_capabilities("lookup")
        if self.idempotency_header is None:
            self.narrow_capabilities("idempotency_key")

    def _fixed_headers(self) -> dict[str, str]:
        """Headers of every request: settings, auth (made on first use: a missing secret is a
        ``ConfigError`` before anything is sent)."""
        if self._headers is None:
            headers = {"Accept": "application/json"}
            headers.update(self.settings.get("headers") or {})
            auth = self.settings.get("auth", "none")
            if auth == "bearer":
                token = self.secret("token")
                if not token:
                    raise ConfigError(f"system {self.name!r}: bearer auth needs a TOKEN secret")
                headers["Authorization"] = f"Bearer {token}"
            elif auth == "basic":
                user, password = self.secret("username"), self.secret("password")
                if not user or password is None:
                    raise ConfigError(f"system {self.name!r}: basic auth needs USERNAME, PASSWORD")
                token = base64.b64encode(f"{user}:{password}".encode()).decode()
                headers["Authorization"] = f"Basic {token}"
            for name, value in headers.items():
                _check_header(name, value)
            self._headers = headers
        return self._headers

    def send(
        self,
        document: Mapping[str, Any],
        *,
        message_type: str,
        key: str,
        idempotency_key: str | None = None,
    ) -> SendResult:
        """Post one document; its reference from the answer (``ref_field`` or ``Location``)."""
        headers = {**self._fixed_headers(), self.key_header: key}
        _check_header(self.key_header, key)
        if self.idempotency_header and idempotency_key:
            _check_header(self.idempotency_header, idempotency_key)
            headers[self.idempotency_header] = idempotency_key
        response = self.http.post_json(
            self.url.format(message_type=message_type),
            document,
            what=f"send {key}",
            headers=headers,
            method=self.method,
            encoder=json_default,
        )
        return SendResult(self._ref_of(response, f"send {key}"), already_present=False)

    def send_batch(self, items: Sequence[BatchItem]) -> list[ItemResult]:
        """Post ``items`` as one JSON array to ``batch_url``; one result per document."""
        if self.batch_url is None:
            raise NotImplementedError(f"{self.name} has no batch_url")
        if not items:
            return []
        body = []
        for item in items:
            entry: dict[str, Any] = {"key": item.key, "document": item.document}
            if self.idempotency_header and item.idempotency_key:
                entry["idempotency_key"] = item.idempotency_key
            body.append(entry)
        what = f"send_batch of {len(items)}"
        response = self.http.post_json(
            self.batch_url.format(message_type=items[0].message_type),
            body,
            what=what,
            headers=self._fixed_headers(),
            method=self.method,
            encoder=json_default,
        )
        answer = self.http.answer_json(response, what=what)
        if not isinstance(answer, list):
            raise AmbiguousDeliveryError(
                f"{self.name}: {what}: the answer is not a list of results: "
                f"{safe_text(answer, 200)}"
            )
        by_key = {
            str(entry.get("key")): entry
            for entry in answer
            if isinstance(entry, Mapping) and entry.get("key") is not None
        }
        results = []
        for position, item in enumerate(items):
            found: Any = by_key.get(item.key)
            if found is None and not by_key and position < len(answer):
                found = answer[position]  # a target that answers in order, without keys
            results.append(self._item_result(item.key, found))
        return results

    def _item_result(self, key: str, entry: Any) -> ItemResult:
        if not isinstance(entry, Mapping):  # the target did not say: ask it before re-posting
            return ItemResult(
                key,
                error=AmbiguousDeliveryError(f"{self.name}: no result for {key} in the answer"),
            )
        status = int(entry.get("status") or 0)
        if entry.get("error") is not None or status >= 400:
            text = str(entry.get("error") or entry.get("message") or "")
            error: ConveyorError = classify_http_status(status, text) or RejectedError(
                safe_text(text, 500)
            )
            error.args = (f"{self.name}: send {key}: {error}",)
            return ItemResult(key, error=error)
        ref = _dig(entry, self.ref_field)
        return ItemResult(key, result=SendResult(None if ref is None else str(ref)))

    def lookup(self, *, message_type: str, key: str) -> SendResult | None:
        """GET ``lookup_url``: the target's document for ``key``, or None on 404."""
        if self.lookup_url is None:
            raise NotImplementedError(f"{self.name} has no lookup_url")
        url = self.lookup_url.format(key=quote(key, safe=""), message_type=message_type)
        response = self.http.get(url, what=f"lookup {key}", headers=self._fixed_headers())
        if response is None:
            return None
        return SendResult(self._ref_of(response, f"lookup {key}"), already_present=True)

    def check(self) -> str:
        """GET the lookup URL of a key nobody uses: any answer proves the target is reachable."""
        url = (self.lookup_url or self.url).format(
            key="conveyor-health-check", message_type="health"
        )
        response = self.http.request(
            "GET", url, sends=False, what="check", headers=self._fixed_headers()
        )
        return f"{self.name}: HTTP {response.status_code} from {url}"

    def _ref_of(self, response: requests.Response, what: str) -> str | None:
        found = _dig(self.http.answer_json(response, what=what), self.ref_field)
        if found is None:
            location = response.headers.get("Location")
            return str(location) if location is not None else None
        return str(found)

    def close(self) -> None:
        """Give back the pooled connections."""
        self.http.close()
