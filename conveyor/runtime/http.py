"""The one HTTP stack of every HTTP-speaking connector (REST, Kingdee, Yonyou, SAP through zeep):
pooled ``requests`` sessions, timeouts on every call, and the one place where HTTP failures are
classified.

``session_for(settings)`` makes the ``requests.Session`` of a connector, which the worker's
threads share (HTTP connectors are ``thread_safe``): an ``HTTPAdapter`` whose pool is sized to
the worker's concurrency (``set_pool_size``), ``max_retries=0`` (the delivery worker decides
about retrying, from the ledger), TLS verified by default (``ca_bundle``: a CA file or folder;
``client_cert``/``client_key``: a client certificate), proxies from the environment
(``trust_env``). ``HttpClient`` wraps one for a connector: ``post_json``, ``get``,
``zeep_transport`` (zeep posts on the same session) and ``close`` (closes the pooled
connections). Settings it reads: ``timeout_s`` (read timeout, default 10 s), ``connect_timeout_s``
(default: ``timeout_s``), ``ca_bundle``, ``client_cert``, ``client_key``, ``verify_tls``.

How failures are classified (``conveyor.errors``)::

    not sent: DNS failure, connection refused, connect timeout, proxy or TLS failure
                                                  → TransientError
    possibly sent: read timeout, connection closed after the request was written, an answer cut
    off or not parseable, HTTP 502/504            → AmbiguousDeliveryError (look up first)
    HTTP 429/503                                  → TransientError(retry_after_s=Retry-After)
    HTTP 408, other 5xx                           → TransientError
    other 4xx                                     → RejectedError with the answer's text

Every text that ends up in an error passes through ``conveyor.redact`` (answers may echo the
request, ``Authorization`` header included).
"""

from __future__ import annotations

import email.utils
import json
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from conveyor.errors import (
    AmbiguousDeliveryError,
    ConveyorError,
    TransientError,
    classify_http_status,
)
from conveyor.redact import safe_text

USER_AGENT = "conveyor-hub"
DEFAULT_TIMEOUT_S = 10.0
MAX_ANSWER_BYTES = 64 << 20
"""Largest answer read (``max_answer_bytes``): a page of a big query is a few megabytes; an
answer that does not end is a broken or hostile server, refused before it fills the memory."""
HTTP_SETTINGS_SCHEMA: dict[str, Any] = {
    "timeout_s": {"type": "number", "exclusiveMinimum": 0},
    "connect_timeout_s": {"type": "number", "exclusiveMinimum": 0},
    "ca_bundle": {"type": "string"},
    "client_cert": {"type": "string"},
    "client_key": {"type": "string"},
    "verify_tls": {"type": "boolean"},
    "max_answer_bytes": {"type": "integer", "minimum": 1024},
}
"""The settings this layer reads, for connectors to merge into their ``config_schema``."""

_pool_size = 4


def set_pool_size(size: int) -> None:
    """Size the connection pools of sessions made from now on (the worker's concurrency)."""
    global _pool_size
    _pool_size = max(1, int(size))


@dataclass(frozen=True)
class HttpSettings:
    """What one connection's HTTP layer is made of (read from a connector's settings)."""

    timeout_s: float = DEFAULT_TIMEOUT_S
    connect_timeout_s: float | None = None
    ca_bundle: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    verify_tls: bool = True
    max_answer_bytes: int = MAX_ANSWER_BYTES

    @classmethod
    def of(cls, settings: Mapping[str, Any]) -> HttpSettings:
        """The HTTP settings among a connector's settings (others are ignored)."""
        return cls(
            timeout_s=float(settings.get("timeout_s", DEFAULT_TIMEOUT_S)),
            connect_timeout_s=(
                float(settings["connect_timeout_s"]) if "connect_timeout_s" in settings else None
            ),
            ca_bundle=settings.get("ca_bundle"),
            client_cert=settings.get("client_cert"),
            client_key=settings.get("client_key"),
            verify_tls=bool(settings.get("verify_tls", True)),
            max_answer_bytes=int(settings.get("max_answer_bytes", MAX_ANSWER_BYTES)),
        )

    @property
    def timeout(self) -> tuple[float, float]:
        """``(connect, read)`` as requests takes it."""
        return (self.connect_timeout_s or self.timeout_s, self.timeout_s)

    @property
    def verify(self) -> str | bool | None:
        """``verify`` of every request: the configured bundle wins over the environment's
        (requests lets ``REQUESTS_CA_BUNDLE`` override a session's own ``verify``)."""
        if not self.verify_tls:
            return False
        return self.ca_bundle


def _new_session(settings: HttpSettings) -> requests.Session:
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=_pool_size, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.trust_env = True  # HTTP(S)_PROXY, NO_PROXY, REQUESTS_CA_BUNDLE
    if not settings.verify_tls:
        session.verify = False
    elif settings.ca_bundle:
        session.verify = settings.ca_bundle
    if settings.client_cert:
        session.cert = (
            (settings.client_cert, settings.client_key)
            if settings.client_key
            else settings.client_cert
        )
    session.headers["User-Agent"] = USER_AGENT
    return session


def session_for(settings: HttpSettings | Mapping[str, Any]) -> requests.Session:
    """A configured session: pooled (``set_pool_size``), no retries, TLS verified (``ca_bundle``,
    client certificate), proxies from the environment. Its user closes it."""
    chosen = settings if isinstance(settings, HttpSettings) else HttpSettings.of(settings)
    return _new_session(chosen)


def retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date), None if absent."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _not_sent(exc: requests.RequestException) -> bool:
    """True when the request certainly did not reach the server."""
    if isinstance(exc, requests.ConnectTimeout | requests.exceptions.ProxyError):
        return True
    if isinstance(exc, requests.exceptions.SSLError | requests.exceptions.InvalidURL):
        return True
    if isinstance(exc, requests.ConnectionError) and not isinstance(exc, requests.ReadTimeout):
        from urllib3.exceptions import MaxRetryError, NewConnectionError

        cause = exc.args[0] if exc.args else None
        # with no retries, urllib3 reports a failed connect (refused, DNS) as exhausted retries
        # whose reason is the connect error; an aborted exchange comes through as ProtocolError
        return isinstance(cause, MaxRetryError) and isinstance(cause.reason, NewConnectionError)
    return False


def classify(exc: requests.RequestException, *, name: str, what: str, sends: bool) -> ConveyorError:
    """The error a ``requests`` failure means. ``sends``: the request changes the target (a
    posting), so a failure after it may have gone out is ambiguous; a lookup is just transient."""
    text = safe_text(f"{type(exc).__name__}: {exc}", 500)
    error: TransientError
    if _not_sent(exc):
        kind = "connect timeout" if isinstance(exc, requests.ConnectTimeout) else "not sent"
        error = TransientError(f"{name}: {what}: {kind}: {text}")
    elif not sends:
        error = TransientError(f"{name}: {what} failed: {text}")
    elif isinstance(exc, requests.ReadTimeout):
        error = AmbiguousDeliveryError(f"{name}: {what}: no answer in time after sending: {text}")
    else:
        return AmbiguousDeliveryError(f"{name}: {what}: the answer was lost after sending: {text}")
    # unreachable or silent until the timeout: the target as a whole is likely down (an answer
    # cut off is not: the target was there, and it cost no wait)
    error.no_answer = _not_sent(exc) or isinstance(exc, requests.Timeout)
    return error


def raise_for_status(response: requests.Response, *, name: str, what: str) -> None:
    """Raise the classified error of a non-2xx/3xx answer (its text redacted and clipped)."""
    if response.status_code < 400:
        return
    error = classify_http_status(
        response.status_code,
        response.text,
        retry_after_s=retry_after(response.headers.get("Retry-After")),
    )
    if error is not None:
        error.args = (f"{name}: {what}: {error}",)
        raise error


def loads_answer(content: bytes | str) -> Any:
    """The JSON of an answer, numbers as ``Decimal``; ``ValueError`` when it is not JSON — also
    when it nests deeper than the parser's stack (a broken or hostile server's answer), which
    Python's parser reports as a ``RecursionError``."""
    try:
        return json.loads(content, parse_float=Decimal)
    except RecursionError:
        raise ValueError("the answer nests deeper than any real answer does") from None


def answer_int(value: Any, *, name: str, what: str) -> int:
    """An integer the server answered (a page count, a row id); anything else in its place is
    a malformed answer, transient like any unreadable answer to a read."""
    try:
        return int(value)
    except (TypeError, ValueError):
        raise TransientError(
            f"{name}: {what}: the answer holds {safe_text(value, 80)} where an integer belongs"
        ) from None


class HttpClient:
    """One connector's HTTP: its pooled session, timeouts and fixed headers (thread-safe)."""

    def __init__(
        self,
        name: str,
        settings: HttpSettings | Mapping[str, Any],
        *,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.settings = (
            settings if isinstance(settings, HttpSettings) else HttpSettings.of(settings)
        )
        self.headers = dict(headers or {})
        self._session: requests.Session | None = None
        self._session_lock = threading.Lock()

    @property
    def session(self) -> requests.Session:
        """The session (made on first use)."""
        if self._session is None:
            with self._session_lock:
                if self._session is None:
                    self._session = session_for(self.settings)
        return self._session

    @property
    def closed(self) -> bool:
        """True when this client holds no session (never used, or closed)."""
        return self._session is None

    def request(
        self,
        method: str,
        url: str,
        *,
        sends: bool,
        what: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> requests.Response:
        """One exchange, its answer read whole; transport failures classified (``classify``)."""
        merged = {**self.headers, **(headers or {})}
        try:
            response = self.session.request(
                method,
                url,
                data=body,
                headers=merged,
                timeout=self.settings.timeout,
                verify=self.settings.verify,
                allow_redirects=False,
                stream=True,
            )
            self._read_within_limit(response, what=what, sends=sends)
            return response
        except requests.RequestException as exc:
            raise classify(exc, name=self.name, what=what, sends=sends) from None

    def _read_within_limit(self, response: requests.Response, *, what: str, sends: bool) -> None:
        """Read the answer's body, refusing it past ``max_answer_bytes`` (ambiguous after a
        posting: the target may have acted; transient otherwise)."""
        limit = self.settings.max_answer_bytes
        content = bytearray()
        for chunk in response.iter_content(64 * 1024):
            content += chunk
            if len(content) > limit:
                response.close()
                error = AmbiguousDeliveryError if sends else TransientError
                raise error(
                    f"{self.name}: {what}: the answer is over {limit:,} bytes "
                    "(max_answer_bytes): refused unread"
                )
        response._content = bytes(content)
        response._content_consumed = True  # type: ignore[attr-defined]

    def post_json(
        self,
        url: str,
        document: Any,
        *,
        what: str = "send",
        headers: Mapping[str, str] | None = None,
        method: str = "POST",
        encoder: Any = None,
    ) -> requests.Response:
        """Post ``document`` as JSON; a 2xx/3xx answer, else the classified error."""
        body = json.dumps(document, default=encoder, ensure_ascii=False).encode()
        response = self.request(
            method,
            url,
            sends=True,
            what=what,
            body=body,
            headers={"Content-Type": "application/json", **(headers or {})},
        )
        raise_for_status(response, name=self.name, what=what)
        return response

    def get(
        self,
        url: str,
        *,
        what: str = "lookup",
        headers: Mapping[str, str] | None = None,
        missing: tuple[int, ...] = (404,),
    ) -> requests.Response | None:
        """GET ``url``; None when the answer's status is in ``missing``, else as ``post_json``."""
        response = self.request("GET", url, sends=False, what=what, headers=headers)
        if response.status_code in missing:
            return None
        raise_for_status(response, name=self.name, what=what)
        return response

    def answer_json(self, response: requests.Response, *, what: str = "send") -> Any:
        """The JSON of a posting's answer; an unparseable one is ambiguous (it did act)."""
        if not response.content:
            return None
        try:
            return loads_answer(response.content)
        except ValueError as exc:
            raise AmbiguousDeliveryError(
                f"{self.name}: {what}: the answer is not JSON: {safe_text(response.text, 200)}"
            ) from exc

    def zeep_transport(self, **options: Any) -> Any:
        """A zeep ``Transport`` posting on this client's session and timeouts (SOAP targets)."""
        from zeep.transports import Transport

        return Transport(  # type: ignore[no-untyped-call,unused-ignore]
            session=self.session,
            timeout=self.settings.timeout[0],
            operation_timeout=self.settings.timeout_s,
            **options,
        )

    def close(self) -> None:
        """Close the session's pooled connections (a later call opens a new session)."""
        with self._session_lock:
            session, self._session = self._session, None
        if session is not None:
            session.close()
