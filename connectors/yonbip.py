"""YonBIP / YonSuite open API connector (用友 YonBIP), to the interface facts in DIALECTS.md.

- Token: ``GET {auth_url}/iuap-api-auth/open-auth/selfAppAuth/getAccessToken`` with ``appKey``,
  ``timestamp`` (ms) and the HMAC ``signature`` (``connectors.yonyou_auth``); the token is cached
  until its ``expire`` (less a margin) and fetched again after an auth error (the call is then
  repeated once).
- Calls: ``{url}/yonbip/...?access_token=…`` answering ``{"code", "message", "data"}``; ``200`` is
  success, anything else an error carried in a 200 answer.
- Saves (material out, product in, transfer) on configurable paths (they vary by edition), every
  one with a ``resubmitCheckKey`` derived from the hub's key (32 hex characters, deterministic),
  so YonBIP itself refuses a second posting of the same document (``idempotency_key``).
- Stream ``production_order``: ``productionorder/list`` paged, filtered on ``pubts`` (inclusive)
  and ordered by it; the cursor is ``pubts|id`` so orders changed in the same instant are neither
  lost nor repeated; components come from ``productionorder/detail``.
- ``snapshot()``: ``QueryCurrentStocksByCondition``.

Settings: ``url`` (gateway), ``auth_url`` (default ``url``), ``token_path``, ``save_paths``
(message type → path), ``page_size``, ``order_status`` (the released status filter),
``start_pubts`` (where the first poll starts), ``org``,
``stock_query`` (extra conditions), ``auth_error_codes``, ``duplicate_markers``, and the HTTP
settings of ``conveyor.runtime.http``. Secrets ``APP_KEY`` and ``APP_SECRET`` through
``secret()`` only.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar
from urllib.parse import urlencode

import requests

from connectors.yonyou_auth import access_token_params
from conveyor import redact
from conveyor.connector import Connector, RawRecord, SendResult, Stream
from conveyor.errors import (
    AmbiguousDeliveryError,
    ConfigError,
    ConveyorError,
    RejectedError,
    TransientError,
)
from conveyor.messages import json_default
from conveyor.redact import safe_text
from conveyor.runtime.http import (
    HTTP_SETTINGS_SCHEMA,
    HttpClient,
    answer_int,
    loads_answer,
    raise_for_status,
)

TOKEN_PATH = "/iuap-api-auth/open-auth/selfAppAuth/getAccessToken"  # noqa: S105 - a URL path
DEFAULT_SAVE_PATHS: dict[str, str] = {
    "material_consumption": "/yonbip/scm/materialout/single/save",
    "production_output": "/yonbip/scm/storeprorecord/single/save",
    "stock_transfer": "/yonbip/scm/storetransfer/save",
}
ORDER_LIST_PATH = "/yonbip/mfg/productionorder/list"
ORDER_DETAIL_PATH = "/yonbip/mfg/productionorder/detail"
STOCK_PATH = "/yonbip/scm/stock/QueryCurrentStocksByCondition"
OK = "200"
TOKEN_OK = "00000"  # noqa: S105 - an answer code
RESUBMIT_KEY_LENGTH = 32
TOKEN_MARGIN_S = 60.0


def resubmit_check_key(key: str) -> str:
    """The ``resubmitCheckKey`` of the hub's key: 32 hex characters of its SHA-256 (the same on
    every attempt and every replay, so YonBIP refuses a second save of the document)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:RESUBMIT_KEY_LENGTH]


class YonBIPConnector(Connector):
    """YonBIP open API: production orders in, stock documents out, current stock."""

    kind = "yonbip"
    thread_safe = True  # the token is guarded by a lock; the session pool is shared
    capabilities: ClassVar[frozenset[str]] = frozenset(
        {"poll", "send", "idempotency_key", "snapshot", "health"}
    )
    streams: ClassVar[tuple[Stream, ...]] = (
        Stream(
            "production_order",
            "production_order",
            source="productionorder/list + detail",
            cursor_field="pubts + id",
            description="released production orders with their components",
        ),
    )
    config_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "required": ["url"],
        "additionalProperties": False,
        "properties": {
            "url": {"type": "string", "pattern": "^https?://"},
            "auth_url": {"type": "string", "pattern": "^https?://"},
            "token_path": {"type": "string", "pattern": "^/"},
            "save_paths": {
                "type": "object",
                "additionalProperties": {"type": "string", "pattern": "^/"},
            },
            "page_size": {"type": "integer", "minimum": 1, "maximum": 500},
            "order_status": {"type": ["string", "null"]},
            "start_pubts": {"type": "string", "pattern": "^\\d{4}-\\d{2}-\\d{2}"},
            "org": {"type": "string"},
            "stock_query": {"type": "object"},
            "auth_error_codes": {"type": "array", "items": {"type": "string"}},
            "duplicate_markers": {"type": "array", "items": {"type": "string"}},
            **HTTP_SETTINGS_SCHEMA,
            "app_key": {"type": "string", "secret": True},
            "app_secret": {"type": "string", "secret": True},
        },
    }

    def __init__(
        self, name: str, settings: Mapping[str, Any] | None = None, *, connection: str | None = None
    ) -> None:
        super().__init__(name, settings, connection=connection)
        s = self.settings
        self.url: str = s["url"].rstrip("/")
        self.auth_url: str = str(s.get("auth_url") or self.url).rstrip("/")
        self.token_path: str = s.get("token_path", TOKEN_PATH)
        self.save_paths: dict[str, str] = {**DEFAULT_SAVE_PATHS, **(s.get("save_paths") or {})}
        self.page_size: int = int(s.get("page_size", 100))
        self.order_status: str | None = s.get("order_status", "1")
        self.start_pubts: str = s.get("start_pubts", "")
        self.org: str | None = s.get("org")
        self.stock_query: dict[str, Any] = dict(s.get("stock_query") or {})
        self.auth_error_codes = frozenset(s.get("auth_error_codes") or ["310036", "401"])
        self.duplicate_markers: tuple[str, ...] = tuple(
            s.get("duplicate_markers") or ["resubmitCheckKey", "重复提交"]
        )
        self.http = HttpClient(name, s, headers={"Accept": "application/json"})
        self._token: str | None = None
        self._token_until = 0.0
        self._token_lock = threading.Lock()

    # ---- token
    def _credentials(self) -> tuple[str, str]:
        return self.required_secret("app_key"), self.required_secret("app_secret")

    def access_token(self, *, refresh: bool = False) -> str:
        """The cached access token (a new one when it is near its ``expire`` or ``refresh``)."""
        with self._token_lock:
            if not refresh and self._token and time.monotonic() < self._token_until:
                return self._token
            app_key, app_secret = self._credentials()
            params = access_token_params(app_key, app_secret, int(time.time() * 1000))
            url = f"{self.auth_url}{self.token_path}?{urlencode(params)}"
            response = self.http.request("GET", url, sends=False, what="getAccessToken")
            raise_for_status(response, name=self.name, what="getAccessToken")
            answer = self._parse(response, what="getAccessToken", sends=False)
            data = answer.get("data")
            if (
                str(answer.get("code")) != TOKEN_OK
                or not isinstance(data, Mapping)
                or not data.get("access_token")
            ):
                # a wrong key or signature will not heal by itself
                raise ConfigError(
                    f"system {self.name!r}: getAccessToken refused: "
                    f"{answer.get('code')} {safe_text(answer.get('message'), 200)}"
                )
            try:
                expire = float(data.get("expire") or 7200)
            except (TypeError, ValueError):
                expire = 7200.0
            self._token = str(data["access_token"])
            redact.remember(self._token)  # it rides in URLs that error texts may quote
            self._token_until = time.monotonic() + max(0.0, expire - TOKEN_MARGIN_S)
            return self._token

    # ---- one call
    def _parse(self, response: requests.Response, *, what: str, sends: bool) -> dict[str, Any]:
        """The answer's envelope; what is not one (an HTML page from a proxy, cut-off JSON) is
        ambiguous after a posting and transient otherwise."""
        error: type[TransientError] = AmbiguousDeliveryError if sends else TransientError
        try:
            answer = loads_answer(response.content.decode("utf-8-sig"))
        except (ValueError, UnicodeDecodeError):
            raise error(
                f"{self.name}: {what}: the answer is not JSON (HTTP {response.status_code}): "
                f"{safe_text(response.text, 200)}"
            ) from None
        if not isinstance(answer, dict) or "code" not in answer:
            raise error(
                f"{self.name}: {what}: the answer has no code/message envelope: "
                f"{safe_text(answer, 200)}"
            )
        return answer

    def call(self, method: str, path: str, body: Any = None, *, what: str, sends: bool) -> Any:
        """One business call: the ``data`` of a ``code`` 200 answer; an auth error fetches a new
        token and repeats the call once; other codes raise a classified error."""
        for attempt in (1, 2):
            token = self.access_token(refresh=attempt == 2)
            separator = "&" if "?" in path else "?"
            url = f"{self.url}{path}{separator}{urlencode({'access_token': token})}"
            payload = (
                None
                if body is None
                else json.dumps(body, default=json_default, ensure_ascii=False).encode()
            )
            response = self.http.request(
                method,
                url,
                sends=sends,
                what=what,
                body=payload,
                headers={"Content-Type": "application/json"} if payload is not None else None,
            )
            if response.status_code == 401 and attempt == 1:
                continue
            raise_for_status(response, name=self.name, what=what)
            answer = self._parse(response, what=what, sends=sends)
            code = str(answer.get("code"))
            if code == OK:
                return answer.get("data")
            if code in self.auth_error_codes and attempt == 1:
                continue
            raise _CodeError(code, str(answer.get("message") or ""), answer.get("data"))
        raise TransientError(f"{self.name}: {what}: the access token was refused twice")

    def _error(self, error: _CodeError, what: str) -> ConveyorError:
        text = f"{self.name}: {what}: YonBIP {error.code}: {safe_text(error.message, 500)}"
        if error.code in self.auth_error_codes:
            return TransientError(text)
        return RejectedError(text)

    # ---- outbound
    def send(
        self,
        document: Mapping[str, Any],
        *,
        message_type: str,
        key: str,
        idempotency_key: str | None = None,
    ) -> SendResult:
        """Save one document with ``resubmitCheckKey`` from the hub's key; a save YonBIP refuses
        as a repeat of that key is the document it already has."""
        path = self.save_paths.get(message_type)
        if path is None:
            raise ConfigError(
                f"system {self.name!r}: no save path for {message_type} "
                f"(save_paths: {', '.join(sorted(self.save_paths))})"
            )
        check_key = resubmit_check_key(key)
        inner = document.get("data") if isinstance(document.get("data"), Mapping) else document
        data = {**dict(inner), "resubmitCheckKey": check_key}  # type: ignore[arg-type]
        if self.org and not data.get("org"):
            data["org"] = self.org
        what = f"save {key}"
        try:
            saved = self.call("POST", path, {"data": data}, what=what, sends=True)
        except _CodeError as error:
            if any(marker in error.message for marker in self.duplicate_markers):
                return self._already_saved(error, check_key)
            raise self._error(error, what) from None
        return SendResult(self._ref(saved, what), detail={"resubmitCheckKey": check_key})

    def _ref(self, data: Any, what: str) -> str:
        """The document number of a save's ``data``; a success without one is not a delivery."""
        if isinstance(data, Mapping):
            for field in ("code", "id"):
                if data.get(field) not in (None, ""):
                    return str(data[field])
        raise AmbiguousDeliveryError(
            f"{self.name}: {what}: success without a document number: {safe_text(data, 200)}"
        )

    def _already_saved(self, error: _CodeError, check_key: str) -> SendResult:
        ref = None
        if isinstance(error.data, Mapping):
            ref = error.data.get("code") or error.data.get("id")
        return SendResult(
            None if ref in (None, "") else str(ref),
            already_present=True,
            detail={"resubmitCheckKey": check_key, "answer": safe_text(error.message, 200)},
        )

    # ---- inbound
    def poll(self, stream: str, cursor: str | None) -> Iterator[RawRecord]:
        """Production orders changed since ``cursor`` (``pubts|id``), oldest first, each with its
        components from ``detail`` and the cursor after it."""
        self.stream(stream)
        since_ts, since_id = _split_cursor(cursor)
        since_ts = since_ts or self.start_pubts  # the first poll starts at the configured stamp
        page = 1
        seen: set[str] = set()
        orders: list[Mapping[str, Any]] = []
        while True:
            body: dict[str, Any] = {"pageIndex": page, "pageSize": self.page_size}
            conditions: list[dict[str, Any]] = []
            if since_ts:
                conditions.append({"field": "pubts", "op": "egt", "value1": since_ts})
            if self.order_status is not None:
                conditions.append({"field": "status", "op": "eq", "value1": self.order_status})
            if conditions:
                body["simpleVOs"] = conditions
            data = self._read("POST", ORDER_LIST_PATH, body, what="productionorder/list")
            records = data.get("recordList") if isinstance(data, Mapping) else None
            if not isinstance(records, list):
                raise TransientError(
                    f"{self.name}: productionorder/list: no recordList: {safe_text(data, 200)}"
                )
            for record in records:
                if isinstance(record, Mapping) and str(record.get("id")) not in seen:
                    seen.add(str(record.get("id")))  # a list row per product line: one order
                    orders.append(record)
            page_count = answer_int(
                data.get("pageCount") or 0, name=self.name, what="productionorder/list pageCount"
            )
            if not records or page >= page_count:
                break
            page += 1
        orders.sort(key=lambda r: (str(r.get("pubts") or ""), _id_order(r.get("id"))))
        for order in orders:
            stamp, order_id = str(order.get("pubts") or ""), str(order.get("id"))
            if (stamp, _id_order(order_id)) <= (since_ts, _id_order(since_id)):
                continue  # at the cursor's instant: only ids after the cursor's
            detail = self._read(
                "GET",
                f"{ORDER_DETAIL_PATH}?{urlencode({'id': order_id})}",
                None,
                what=f"productionorder/detail {order_id}",
            )
            yield RawRecord(data=detail, cursor=f"{stamp}|{order_id}")

    def _read(self, method: str, path: str, body: Any, *, what: str) -> Any:
        try:
            return self.call(method, path, body, what=what, sends=False)
        except _CodeError as error:
            raise self._error(error, what) from None

    # ---- reconciliation
    def snapshot(self) -> Iterator[RawRecord]:
        """Current stock rows of ``QueryCurrentStocksByCondition`` (``org`` and ``stock_query``
        as conditions)."""
        body = dict(self.stock_query)
        if self.org and "org" not in body:
            body["org"] = self.org
        rows = self._read("POST", STOCK_PATH, body, what="QueryCurrentStocksByCondition")
        if isinstance(rows, Mapping):  # some editions page it like the lists
            rows = rows.get("recordList") or []
        if not isinstance(rows, list):
            raise TransientError(f"{self.name}: current stock: not a list: {safe_text(rows, 200)}")
        for line, row in enumerate(rows, start=1):
            yield RawRecord(data=row, line=line)

    def check(self) -> str:
        """Fetch an access token: proves the gateway, the app key and the signature."""
        self.access_token(refresh=True)
        return f"{self.name}: access token from {self.auth_url}"

    def close(self) -> None:
        """Give back the pooled connections."""
        self.http.close()


class _CodeError(Exception):
    """A non-200 ``code`` of a YonBIP answer (classified by the caller, which knows the call)."""

    def __init__(self, code: str, message: str, data: Any) -> None:
        super().__init__(f"{code} {message}")
        self.code = code
        self.message = message
        self.data = data


def _split_cursor(cursor: str | None) -> tuple[str, str]:
    if not cursor:
        return "", ""
    stamp, _, order_id = cursor.partition("|")
    return stamp, order_id


def _id_order(value: Any) -> tuple[int, str]:
    """Ids compare as numbers when they are (YonBIP ids are long integers)."""
    text = "" if value is None else str(value)
    return (int(text), text) if text.isdigit() else (-1, text)
