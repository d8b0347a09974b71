"""A generic SOAP connector on zeep: calls one operation of a WSDL per outbound document.

Settings (``systems.<name>.settings``; no secrets here):

- ``wsdl`` — a file path or an ``http(s)`` URL (required). It is parsed once per process and kept
  (fetched WSDLs also in zeep's ``SqliteCache`` under ``wsdl_cache``, default
  ``.conveyor/wsdl-cache.db`` of the project): never fetched per call;
- ``url`` — the endpoint, when it differs from the WSDL's ``soap:address``;
- ``operation`` — what ``send`` calls with the document's fields as its parameters;
- ``ref_field`` — the answer's field holding the document number (``send`` returns it);
- ``auth`` — ``none``, ``basic`` (secrets ``USERNAME``, ``PASSWORD``) or ``wsse`` (a WS-Security
  username token from the same secrets); a client certificate is ``client_cert``/``client_key``;
- ``transient_faults`` — patterns of fault texts that mean "try again later" (defaults: busy,
  time-outs, no free work process, resource shortages);
- ``max_answer_bytes`` — the largest answer read (default 16 MiB);
- HTTP settings of ``conveyor.runtime.http``: ``timeout_s``, ``connect_timeout_s``,
  ``ca_bundle``, ``client_cert``, ``client_key``, ``verify_tls``.

Parameter names are matched to the WSDL, not spelled per style: a document written with RFC names
(``GOODSMVT_HEADER``/``REF_DOC_NO``) calls an mc-style service (``GoodsmvtHeader``/``RefDocNo``)
as well, because names are compared without case and underscores; a list becomes an ``item``
table. Answers come back with RFC names (``MESSAGE_V1``) whatever the style.

XML is parsed with DTDs, entities and external fetches forbidden, within lxml's size limits.
Failures: transport ones are classified by ``conveyor.runtime.http``; a SOAP fault is transient
when its text matches ``transient_faults``, else terminal with the fault text; an answer that is
not XML (a proxy's HTML login page) is ambiguous for a posting, transient for a read. A failed
call keeps the request and the answer it got, redacted and clipped, on the error (``exchange``)
and in its text, so the parked reason shows what was sent.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

import requests

from conveyor.connector import Connector, SendResult
from conveyor.errors import (
    AmbiguousDeliveryError,
    ConfigError,
    ConveyorError,
    RejectedError,
    TransientError,
    classify_http_status,
)
from conveyor.paths import project_dir
from conveyor.redact import safe_text
from conveyor.runtime.http import HTTP_SETTINGS_SCHEMA, HttpClient, classify

DEFAULT_TRANSIENT_FAULTS = (
    r"busy",
    r"time[ -]?out|timed out|TIME_OUT",
    r"no free (work|dialog) process",
    r"RESOURCE_FAILURE|resource shortage|overload",
    r"temporarily unavailable|try again",
)
MAX_ANSWER_BYTES = 16 << 20
EXCHANGE_CHARS = 700
"""How much of a failed call's request and answer is kept on the parked record (each)."""

_documents: dict[str, Any] = {}
_documents_lock = threading.Lock()


def norm(name: str) -> str:
    """A name compared across SOAP styles: ``GOODSMVT_HEADER`` ≡ ``GoodsmvtHeader``."""
    return name.replace("_", "").replace("-", "").lower()


def rfc_name(name: str) -> str:
    """The RFC (UPPER_SNAKE) spelling of a name in either style: ``MessageV1`` → ``MESSAGE_V1``."""
    if "_" in name or name.isupper():
        return name.upper()
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).upper()


def safe_settings() -> Any:
    """zeep settings that refuse DTDs, entities and external fetches, within size limits."""
    from zeep import Settings

    return Settings(
        strict=True,
        forbid_dtd=True,
        forbid_entities=True,
        forbid_external=True,
        xml_huge_tree=False,
    )


def _transport_class() -> Any:
    from zeep.transports import Transport

    class SafeTransport(Transport):  # type: ignore[misc,unused-ignore]
        """zeep's transport on the connector's session: its (connect, read) timeouts and TLS,
        an answer size limit, and the last exchange kept for error texts."""

        def __init__(self, client: HttpClient, limit: int, **options: Any) -> None:
            super().__init__(  # type: ignore[no-untyped-call]
                session=client.session,
                timeout=client.settings.timeout[0],
                operation_timeout=client.settings.timeout_s,
                **options,
            )
            self.client = client
            self.limit = limit
            self.last = threading.local()

        def _load_remote_data(self, url: str) -> bytes:
            # zeep's own fetch would let REQUESTS_CA_BUNDLE override the configured ca_bundle
            response = self.session.get(
                url,
                timeout=self.client.settings.timeout,
                verify=self.client.settings.verify,
                allow_redirects=False,
                stream=True,
            )
            with response:
                response.raise_for_status()
                body: bytes = response.raw.read(self.limit + 1, decode_content=True)
            if len(body) > self.limit:
                raise _TooLarge(f"the WSDL is over {self.limit} bytes")
            return body

        def post(self, address: str, message: bytes | str, headers: Any) -> Any:
            self.last.request = message
            self.last.response = None
            response = self.session.post(
                address,
                data=message,
                headers=headers,
                timeout=self.client.settings.timeout,
                verify=self.client.settings.verify,
                allow_redirects=False,
                stream=True,
            )
            body = response.raw.read(self.limit + 1, decode_content=True)
            if len(body) > self.limit:
                response.close()
                raise _TooLarge(f"the answer is over {self.limit} bytes")
            self.last.response = body
            if response.status_code >= 400 and (
                response.status_code != 500 or not _looks_like_xml(body)
            ):
                # not a SOAP fault (which comes with 500 and XML): a gateway's or proxy's page
                raise _HttpStatus(response.status_code, body)
            response._content = body
            response._content_consumed = True  # type: ignore[union-attr,unused-ignore]
            return response

    return SafeTransport


class _TooLarge(Exception):
    pass


class _HttpStatus(Exception):
    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"HTTP {status}")
        self.status_code = status
        self.content = body


def _looks_like_xml(body: bytes) -> bool:
    start = body.lstrip()[:100].lower()
    return start.startswith(b"<") and not start.startswith((b"<html", b"<!doctype html"))


def load_wsdl(source: str, transport: Any, cache_path: str | None) -> Any:
    """The parsed WSDL of ``source`` (a path or URL), parsed once per process; a fetched one is
    also kept in zeep's ``SqliteCache`` so a new process does not fetch it again."""
    from zeep.wsdl import Document

    with _documents_lock:
        found = _documents.get(source)
        if found is not None:
            return found
        if source.startswith(("http://", "https://")) and cache_path:
            from zeep.cache import SqliteCache

            Path(cache_path).parent.mkdir(parents=True, exist_ok=True)
            transport.cache = SqliteCache(path=cache_path, timeout=None)  # type: ignore[no-untyped-call]
        elif not Path(source).is_file():
            raise ConfigError(f"WSDL {source!r} is neither a file nor an http(s) URL")
        document = Document(source, transport, settings=safe_settings())
        _documents[source] = document
        return document


def forget_wsdls() -> None:
    """Drop the parsed WSDLs of this process (tests, the benchmark's cold load)."""
    with _documents_lock:
        _documents.clear()


def _shape(value: Any, xsd_type: Any) -> Any:
    """``value`` (RFC names, lists for tables) as the WSDL's type ``xsd_type`` spells it."""
    elements = _elements(xsd_type)
    if isinstance(value, Mapping):
        if not elements:
            return dict(value)
        by_norm = {norm(name): (name, element) for name, element in elements}
        shaped: dict[str, Any] = {}
        for key, item in value.items():
            match = by_norm.get(norm(str(key)))
            if match is None:
                raise RejectedError(f"the service has no parameter or field {key!r}")
            name, element = match
            if item is None or (item == "" and not _elements(element.type)):
                continue
            shaped[name] = _shape(item, element.type)
        return shaped
    if isinstance(value, list | tuple):
        if len(elements) == 1 and elements[0][0] == "item":
            row_type = elements[0][1].type
            return {"item": [_shape(row, row_type) for row in value]}
        return [_shape(row, xsd_type) for row in value]
    if isinstance(value, Decimal):
        return value
    return value


def _elements(xsd_type: Any) -> list[tuple[str, Any]]:
    try:
        return list(xsd_type.elements)
    except AttributeError:
        return []


def rfc_value(value: Any) -> Any:
    """A zeep answer as plain data with RFC names: tables (``item`` lists) as lists, absent
    fields left out."""
    from zeep.helpers import serialize_object

    return _rfc(serialize_object(value, target_cls=dict))  # type: ignore[no-untyped-call]


def _rfc(value: Any) -> Any:
    if isinstance(value, Mapping):
        if list(value) == ["item"]:
            rows = value["item"] or []
            return [_rfc(row) for row in rows]
        return {rfc_name(str(k)): _rfc(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_rfc(v) for v in value]
    return value


class SoapConnector(Connector):
    """Calls SOAP operations through zeep (see the module docstring)."""

    kind = "soap"
    thread_safe = False
    """A stateful SOAP conversation (SAP's ``sap-contextid``) lives in the session's cookies: the
    worker gives each thread its own instance; the parsed WSDL is shared by all of them."""
    capabilities: ClassVar[frozenset[str]] = frozenset({"send", "health"})
    base_properties: ClassVar[dict[str, Any]] = {
        "wsdl": {"type": "string", "minLength": 1},
        "url": {"type": "string", "pattern": "^https?://"},
        "wsdl_cache": {"type": "string"},
        "service": {"type": "string"},
        "port": {"type": "string"},
        "auth": {"enum": ["none", "basic", "wsse"]},
        "transient_faults": {"type": "array", "items": {"type": "string"}},
        "max_answer_bytes": {"type": "integer", "minimum": 1024},
        **HTTP_SETTINGS_SCHEMA,
        "username": {"type": "string", "secret": True},
        "password": {"type": "string", "secret": True},
    }
    config_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "required": ["wsdl", "operation"],
        "additionalProperties": False,
        "properties": {
            **base_properties,
            "operation": {"type": "string"},
            "ref_field": {"type": "string"},
        },
    }

    def __init__(
        self, name: str, settings: Mapping[str, Any] | None = None, *, connection: str | None = None
    ) -> None:
        super().__init__(name, settings, connection=connection)
        s = self.settings
        self.http = HttpClient(name, s)
        self.transient_faults = [
            re.compile(p, re.IGNORECASE)
            for p in s.get("transient_faults", DEFAULT_TRANSIENT_FAULTS)
        ]
        self.max_answer_bytes = int(s.get("max_answer_bytes", MAX_ANSWER_BYTES))
        self._client: Any = None
        self._service: Any = None
        self._operations: dict[str, str] = {}

    # ---- the client
    @property
    def client(self) -> Any:
        """The zeep client (made on first use: the WSDL is read then, not at import)."""
        if self._client is None:
            from zeep import Client

            transport = _transport_class()(self.http, self.max_answer_bytes)
            wsdl = self.settings["wsdl"]
            cache = self.settings.get("wsdl_cache") or str(
                project_dir() / ".conveyor" / "wsdl-cache.db"
            )
            try:
                document = load_wsdl(wsdl, transport, cache)
            except ConveyorError:
                raise
            except requests.RequestException as exc:
                raise classify(exc, name=self.name, what="load the WSDL", sends=False) from None
            except Exception as exc:  # DTDs, entities, broken XML: the WSDL is refused
                raise ConfigError(
                    f"system {self.name!r}: WSDL {wsdl!r} refused: "
                    f"{type(exc).__name__}: {safe_text(exc, 300)}"
                ) from None
            client = Client(  # type: ignore[no-untyped-call]
                document,
                transport=transport,
                wsse=self._wsse(),
                settings=safe_settings(),
                service_name=self.settings.get("service"),
                port_name=self.settings.get("port"),
            )
            self._auth(transport)
            service = client.service
            if self.settings.get("url"):
                binding = next(iter(document.bindings))
                service = client.create_service(binding, self.settings["url"])  # type: ignore[no-untyped-call]
            self._operations = {norm(op): op for op in service._binding._operations}
            self._client, self._service = client, service
        return self._client

    def _auth(self, transport: Any) -> None:
        if self.settings.get("auth") == "basic":
            user, password = self.secret("username"), self.secret("password")
            if not user or password is None:
                raise ConfigError(f"system {self.name!r}: basic auth needs USERNAME, PASSWORD")
            transport.session.auth = (user, password)

    def _wsse(self) -> Any:
        if self.settings.get("auth") != "wsse":
            return None
        from zeep.wsse.username import UsernameToken

        user, password = self.secret("username"), self.secret("password")
        if not user or password is None:
            raise ConfigError(f"system {self.name!r}: wsse auth needs USERNAME, PASSWORD")
        return UsernameToken(user, password)  # type: ignore[no-untyped-call]

    def operation_name(self, function: str) -> str:
        """The WSDL's operation for ``function`` in any spelling (``BAPI_X`` ≡ ``BapiX``)."""
        self.client  # noqa: B018 - reads the WSDL
        found = self._operations.get(norm(function))
        if found is None:
            known = ", ".join(sorted(self._operations.values()))
            raise ConfigError(f"system {self.name!r}: the WSDL has no {function} (it has {known})")
        return found

    # ---- calling
    def call(self, function: str, params: Mapping[str, Any], *, sends: bool) -> dict[str, Any]:
        """Call ``function`` with ``params`` (RFC names; lists are tables); the answer with RFC
        names. ``sends``: the call changes the target (ambiguity rules of ``runtime.http``)."""
        operation_name = self.operation_name(function)
        operation = getattr(self._service, operation_name)
        binding_op = self._service._binding._operations[operation_name]
        shaped = _shape(dict(params), binding_op.input.body.type)
        what = f"{function}"
        from zeep.exceptions import Fault, TransportError, XMLParseError, XMLSyntaxError

        transport = self.client.transport
        try:
            answer = operation(**shaped)
        except Fault as fault:
            text = f"SOAP fault {fault.code or ''}: {fault.message}".strip()
            error: ConveyorError
            if any(p.search(str(fault.message or "")) for p in self.transient_faults):
                error = TransientError(f"{self.name}: {what}: {safe_text(text, 500)}")
            else:
                error = RejectedError(f"{self.name}: {what}: {safe_text(text, 500)}")
            raise self._with_exchange(error, transport) from None
        except (TransportError, _HttpStatus) as exc:
            if exc.status_code < 400:  # zeep's word for an answer that is not XML
                message = f"{self.name}: {what}: the answer is not readable SOAP: {exc}"
                error = AmbiguousDeliveryError(message) if sends else TransientError(message)
                raise self._with_exchange(error, transport) from None
            error = classify_http_status(exc.status_code, _text(exc.content)) or TransientError(
                f"HTTP {exc.status_code}"
            )
            error.args = (f"{self.name}: {what}: {error}",)
            raise self._with_exchange(error, transport) from None
        except (XMLSyntaxError, XMLParseError, _TooLarge) as exc:
            message = f"{self.name}: {what}: the answer is not readable SOAP: {exc}"
            error = AmbiguousDeliveryError(message) if sends else TransientError(message)
            raise self._with_exchange(error, transport) from None
        except requests.RequestException as exc:
            raise classify(exc, name=self.name, what=what, sends=sends) from None
        except ConveyorError:
            raise
        except Exception as exc:  # DTD/entity refusals and other lxml/zeep refusals of answers
            message = f"{self.name}: {what}: answer refused: {type(exc).__name__}: {exc}"
            error = AmbiguousDeliveryError(message) if sends else TransientError(message)
            raise self._with_exchange(error, transport) from None
        result = rfc_value(answer)
        return result if isinstance(result, dict) else {"RESULT": result}

    def _with_exchange(self, error: ConveyorError, transport: Any) -> ConveyorError:
        """``error`` with the request and the answer of the failed call, redacted and clipped,
        in its text and as ``error.exchange``."""
        request = getattr(transport.last, "request", None)
        response = getattr(transport.last, "response", None)
        exchange = {
            "request": safe_text(_text(request), EXCHANGE_CHARS) if request else "",
            "response": safe_text(_text(response), EXCHANGE_CHARS) if response else "",
        }
        error.exchange = exchange  # type: ignore[attr-defined]
        error.args = (
            f"{error.args[0] if error.args else error} | request: {exchange['request']} "
            f"| response: {exchange['response']}",
        )
        return error

    # ---- the contract
    def send(
        self,
        document: Mapping[str, Any],
        *,
        message_type: str,
        key: str,
        idempotency_key: str | None = None,
    ) -> SendResult:
        """Call ``operation`` with the document's fields; the ``ref_field`` of the answer."""
        answer = self.call(self.settings["operation"], document, sends=True)
        ref_field = self.settings.get("ref_field")
        ref = answer.get(rfc_name(ref_field)) if ref_field else None
        return SendResult(None if ref is None else str(ref), detail={"answer": answer})

    def check(self) -> str:
        """Read the WSDL and name its operations (no call is made)."""
        self.client  # noqa: B018 - reads the WSDL
        return f"WSDL read: {len(self._operations)} operations"

    def close(self) -> None:
        """Close the session's connections."""
        self.http.close()
        self._client = self._service = None


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)
