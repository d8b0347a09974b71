"""Yonyou U8 OpenAPI connector (用友 U8 through the OpenAPI gateway), to DIALECTS.md.

- Token: ``GET /system/token?from_account&app_key&app_secret`` → ``token.id``; kept until a
  configured age (``token_max_age_s``) and fetched again after an auth error (the call is then
  repeated once).
- Every write needs a trade id (``GET /system/tradeid``). The trade id of a document is kept per
  hub key until the document is settled, so a retry of the *same* document reuses it and U8 itself
  refuses a second posting (``tradeid`` already used); different documents never share one. With
  ``tradeid_file`` the trade ids outlive the process (and the connector declares
  ``idempotency_key``).
- Writes: ``POST /api/<resource>/add?from_account&to_account&app_key&token&tradeid[&sync=1]`` for
  ``materialout``, ``productin`` and ``transvouch``, the body wrapped in the resource name; without
  ``sync`` the answer's result URL is polled. Answers carry ``errcode``/``errmsg``.
- The hub's key rides in a voucher field (``key_field``, default the voucher ``code``); a lost
  answer is checked with ``GET /api/<resource>/get?id=<code>`` before anything is posted again.
- ``snapshot()``: ``currentstock/batch_get`` paged by ``page_index``/``rows_per_page``.

Settings: ``url``, ``from_account``, ``to_account``, ``sync``, ``resources`` (message type →
resource), ``key_field``, ``key_max_length``, ``token_max_age_s``, ``result_timeout_s``,
``rows_per_page``, ``tradeid_file`` and the HTTP settings of ``conveyor.runtime.http``. Secrets
``APP_KEY`` and ``APP_SECRET`` through ``secret()`` only.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlencode

import requests

from conveyor import redact
from conveyor.connector import Connector, RawRecord, SendResult
from conveyor.errors import (
    AmbiguousDeliveryError,
    ConfigError,
    ConveyorError,
    NeedsCheckError,
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

OK = "0"
DEFAULT_RESOURCES: dict[str, str] = {
    "material_consumption": "materialout",
    "production_output": "productin",
    "stock_transfer": "transvouch",
}
DEFAULT_CODES: dict[str, list[str]] = {
    "auth": ["20002"],
    "tradeid_used": ["30002"],
    "tradeid_invalid": ["30001"],
    "not_found": ["40400"],
    "duplicate_code": ["40002"],
}


def voucher_code(key: str, max_length: int = 30) -> str:
    """The voucher field value carrying the hub's ``key``: the key itself when it fits, else a
    deterministic shortened form (its start and a SHA-256 digest)."""
    if len(key) <= max_length:
        return key
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]
    return f"{key[: max(0, max_length - 17)]}~{digest}"[-max_length:]


class TradeIds:
    """The trade id of each unsettled document by hub key: in memory, and in a small SQLite file
    when ``path`` is given (so a restarted worker still reuses it). Thread-safe."""

    def __init__(self, path: str | None = None) -> None:
        self._lock = threading.Lock()
        self._memory: dict[str, str] = {}
        self._db: sqlite3.Connection | None = None
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS tradeids (key TEXT PRIMARY KEY, tradeid TEXT NOT NULL)"
            )

    @property
    def durable(self) -> bool:
        """True when the trade ids are kept in a file."""
        return self._db is not None

    def get(self, key: str) -> str | None:
        """The trade id kept for ``key``."""
        with self._lock:
            if self._db is not None:
                row = self._db.execute(
                    "SELECT tradeid FROM tradeids WHERE key = ?", (key,)
                ).fetchone()
                return None if row is None else str(row[0])
            return self._memory.get(key)

    def put(self, key: str, trade_id: str) -> None:
        """Keep ``trade_id`` for ``key`` until the document is settled."""
        with self._lock:
            if self._db is not None:
                self._db.execute(
                    "INSERT OR REPLACE INTO tradeids (key, tradeid) VALUES (?, ?)", (key, trade_id)
                )
            else:
                self._memory[key] = trade_id

    def drop(self, key: str) -> None:
        """Forget ``key``'s trade id (the document was posted, or refused for good)."""
        with self._lock:
            if self._db is not None:
                self._db.execute("DELETE FROM tradeids WHERE key = ?", (key,))
            else:
                self._memory.pop(key, None)

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None


class _U8Error(Exception):
    """A non-zero ``errcode`` (classified by the caller, which knows the call)."""

    def __init__(self, errcode: str, errmsg: str) -> None:
        super().__init__(f"{errcode} {errmsg}")
        self.errcode = errcode
        self.errmsg = errmsg


class YonyouU8Connector(Connector):
    """U8 OpenAPI: material out, product in and transfer vouchers; current stock."""

    kind = "yonyou_u8"
    thread_safe = True  # token and trade ids are guarded by locks; the session pool is shared
    capabilities: ClassVar[frozenset[str]] = frozenset(
        {"send", "lookup", "idempotency_key", "snapshot", "health"}
    )
    config_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "required": ["url", "from_account", "to_account"],
        "additionalProperties": False,
        "properties": {
            "url": {"type": "string", "pattern": "^https?://"},
            "from_account": {"type": "string", "minLength": 1},
            "to_account": {"type": "string", "minLength": 1},
            "sync": {"type": "boolean"},
            "resources": {"type": "object", "additionalProperties": {"type": "string"}},
            "key_field": {"type": ["string", "null"]},
            "key_max_length": {"type": "integer", "minimum": 8},
            "token_max_age_s": {"type": "number", "exclusiveMinimum": 0},
            "result_timeout_s": {"type": "number", "exclusiveMinimum": 0},
            "rows_per_page": {"type": "integer", "minimum": 1},
            "tradeid_file": {"type": "string"},
            "errcodes": {
                "type": "object",
                "additionalProperties": {"type": "array", "items": {"type": "string"}},
            },
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
        self.from_account: str = s["from_account"]
        self.to_account: str = s["to_account"]
        self.sync: bool = bool(s.get("sync", True))
        self.resources: dict[str, str] = {**DEFAULT_RESOURCES, **(s.get("resources") or {})}
        self.key_field: str | None = s.get("key_field", "code")
        self.key_max_length: int = int(s.get("key_max_length", 30))
        self.token_max_age_s: float = float(s.get("token_max_age_s", 3600))
        self.result_timeout_s: float = float(s.get("result_timeout_s", 30))
        self.rows_per_page: int = int(s.get("rows_per_page", 100))
        self.codes = {
            name: frozenset((s.get("errcodes") or {}).get(name) or default)
            for name, default in DEFAULT_CODES.items()
        }
        self.http = HttpClient(name, s, headers={"Accept": "application/json"})
        self.tradeids = TradeIds(s.get("tradeid_file"))
        self._token: str | None = None
        self._token_until = 0.0
        self._token_lock = threading.Lock()
        if self.key_field != "code":  # only the voucher code can be asked for (``get?id=``)
            self.narrow_capabilities("lookup")
        if not self.tradeids.durable:  # trade ids die with the process: not a promise to make
            self.narrow_capabilities("idempotency_key")

    # ---- token and trade ids
    def _credentials(self) -> tuple[str, str]:
        return self.required_secret("app_key"), self.required_secret("app_secret")

    def token(self, *, refresh: bool = False) -> str:
        """The cached token (a new one past ``token_max_age_s``, its own expiry, or ``refresh``)."""
        with self._token_lock:
            if not refresh and self._token and time.monotonic() < self._token_until:
                return self._token
            app_key, app_secret = self._credentials()
            query = {"from_account": self.from_account, "app_key": app_key}
            answer = self._get_json(
                f"{self.url}/system/token?{urlencode({**query, 'app_secret': app_secret})}",
                what="token",
            )
            token = answer.get("token")
            if str(answer.get("errcode")) != OK or not isinstance(token, Mapping):
                raise ConfigError(  # a wrong account, key or secret does not heal by itself
                    f"system {self.name!r}: U8 token refused: {answer.get('errcode')} "
                    f"{safe_text(answer.get('errmsg'), 200)}"
                )
            if token.get("id") in (None, ""):  # a gateway's answer cut short: ask again later
                raise TransientError(
                    f"{self.name}: token: the answer has no token id: {safe_text(answer, 200)}"
                )
            age = self.token_max_age_s
            with contextlib.suppress(TypeError, ValueError):  # no usable expiry: the age rules
                age = min(age, float(token.get("expiresIn") or age) - 60)
            self._token = str(token["id"])
            redact.remember(self._token)  # it rides in URLs that error texts may quote
            self._token_until = time.monotonic() + max(0.0, age)
            return self._token

    def _query(self, token: str, **more: str) -> str:
        app_key, _ = self._credentials()
        return urlencode(
            {
                "from_account": self.from_account,
                "to_account": self.to_account,
                "app_key": app_key,
                "token": token,
                **more,
            }
        )

    def _new_tradeid(self) -> str:
        for attempt in (1, 2):
            token = self.token(refresh=attempt == 2)
            app_key, _ = self._credentials()
            query = urlencode(
                {"from_account": self.from_account, "app_key": app_key, "token": token}
            )
            answer = self._get_json(f"{self.url}/system/tradeid?{query}", what="tradeid")
            code = str(answer.get("errcode"))
            trade = answer.get("trade")
            if code == OK and isinstance(trade, Mapping) and trade.get("id"):
                return str(trade["id"])
            if code in self.codes["auth"] and attempt == 1:
                continue
            raise TransientError(
                f"{self.name}: tradeid: {code} {safe_text(answer.get('errmsg'), 200)}"
            )
        raise TransientError(f"{self.name}: tradeid: the token was refused twice")

    # ---- answers
    def _parse(self, response: requests.Response, *, what: str, sends: bool) -> dict[str, Any]:
        """The answer as a JSON object with ``errcode``; anything else (an HTML page from a proxy,
        cut-off JSON) is ambiguous after a posting and transient otherwise."""
        raise_for_status(response, name=self.name, what=what)
        error: type[TransientError] = AmbiguousDeliveryError if sends else TransientError
        try:
            answer = loads_answer(response.content.decode("utf-8-sig"))
        except (ValueError, UnicodeDecodeError):
            raise error(
                f"{self.name}: {what}: the answer is not JSON (HTTP {response.status_code}): "
                f"{safe_text(response.text, 200)}"
            ) from None
        if not isinstance(answer, dict) or "errcode" not in answer:
            raise error(f"{self.name}: {what}: the answer has no errcode: {safe_text(answer, 200)}")
        return answer

    def _get_json(self, url: str, *, what: str, sends: bool = False) -> dict[str, Any]:
        response = self.http.request("GET", url, sends=sends, what=what)
        return self._parse(response, what=what, sends=sends)

    def _read(self, resource: str, operation: str, what: str, **params: str) -> dict[str, Any]:
        """A read call (token refreshed once on an auth error); the answer when ``errcode`` is
        0, else ``_U8Error``."""
        for attempt in (1, 2):
            token = self.token(refresh=attempt == 2)
            answer = self._get_json(
                f"{self.url}/api/{resource}/{operation}?{self._query(token, **params)}", what=what
            )
            code = str(answer.get("errcode"))
            if code == OK:
                return answer
            if code in self.codes["auth"] and attempt == 1:
                continue
            raise _U8Error(code, str(answer.get("errmsg") or ""))
        raise TransientError(f"{self.name}: {what}: the token was refused twice")

    # ---- outbound
    def _resource(self, message_type: str) -> str:
        resource = self.resources.get(message_type)
        if resource is None:
            raise ConfigError(
                f"system {self.name!r}: no U8 voucher for {message_type} "
                f"(resources: {', '.join(sorted(self.resources))})"
            )
        return resource

    def _body(self, document: Mapping[str, Any], resource: str, key: str) -> dict[str, Any]:
        voucher = document.get(resource)
        voucher = dict(voucher) if isinstance(voucher, Mapping) else dict(document)
        if self.key_field:
            header = voucher.get("header")
            if isinstance(header, Mapping):
                voucher["header"] = {
                    **header,
                    self.key_field: voucher_code(key, self.key_max_length),
                }
            else:
                voucher[self.key_field] = voucher_code(key, self.key_max_length)
        return {resource: voucher}

    def send(
        self,
        document: Mapping[str, Any],
        *,
        message_type: str,
        key: str,
        idempotency_key: str | None = None,
    ) -> SendResult:
        """Post one voucher with the document's trade id (reused on a retry of this document);
        its number from the answer (or the result URL)."""
        resource = self._resource(message_type)
        body = json.dumps(
            self._body(document, resource, key), default=json_default, ensure_ascii=False
        ).encode()
        what = f"{resource}/add {key}"
        trade_id = self.tradeids.get(key)
        if trade_id is None:
            trade_id = self._new_tradeid()
            self.tradeids.put(key, trade_id)
        for attempt in (1, 2):
            token = self.token(refresh=attempt == 2)
            more = {"tradeid": trade_id, **({"sync": "1"} if self.sync else {})}
            response = self.http.request(
                "POST",
                f"{self.url}/api/{resource}/add?{self._query(token, **more)}",
                sends=True,
                what=what,
                body=body,
                headers={"Content-Type": "application/json"},
            )
            answer = self._parse(response, what=what, sends=True)
            code = str(answer.get("errcode"))
            if code in self.codes["auth"] and attempt == 1:
                continue  # refused before the trade id was looked at: the same one again
            if code == OK and "url" in answer and "id" not in answer:
                answer = self._await_result(str(answer["url"]), answer, what)
                code = str(answer.get("errcode"))
            return self._settle(answer, code, resource, message_type, key, what)
        raise TransientError(f"{self.name}: {what}: the token was refused twice")

    def _settle(
        self,
        answer: Mapping[str, Any],
        code: str,
        resource: str,
        message_type: str,
        key: str,
        what: str,
    ) -> SendResult:
        """What a write's final answer means for the document and its trade id."""
        text = f"{self.name}: {what}: U8 {code}: {safe_text(answer.get('errmsg'), 500)}"
        if code == OK:
            ref = answer.get("code") or answer.get("id")
            if ref in (None, ""):
                raise AmbiguousDeliveryError(f"{self.name}: {what}: no voucher number in {answer}")
            self.tradeids.drop(key)
            return SendResult(str(ref), detail={"id": str(answer.get("id") or "")})
        if code in self.codes["tradeid_used"] or code in self.codes["duplicate_code"]:
            # an earlier attempt of this document got through: find what it left
            return self._earlier_attempt(message_type, key, text)
        if code in self.codes["tradeid_invalid"]:
            self.tradeids.drop(key)  # nothing was posted with it: a fresh one next time
            raise TransientError(text)
        self.tradeids.drop(key)  # refused for good: a replay after a fix needs a fresh trade id
        raise RejectedError(text)

    def _earlier_attempt(self, message_type: str, key: str, text: str) -> SendResult:
        if not self.supports("lookup"):
            raise NeedsCheckError(
                f"{text} — an earlier attempt used this trade id and U8 cannot be asked for the "
                f"voucher by {self.key_field}: check U8 for {key} before replaying"
            )
        found = self.lookup(message_type=message_type, key=key)
        if found is not None:
            self.tradeids.drop(key)
            return found
        self.tradeids.drop(key)  # used but left no voucher: the next attempt takes a fresh one
        raise TransientError(f"{text} — and no voucher for {key}: posting again with a new one")

    def _await_result(self, url: str, pending: Mapping[str, Any], what: str) -> dict[str, Any]:
        """Poll the result URL of an asynchronous write until it answers (within
        ``result_timeout_s``; after that the outcome is unknown: ambiguous)."""
        deadline = time.monotonic() + self.result_timeout_s
        answer: dict[str, Any] = dict(pending)
        while "url" in answer and "id" not in answer and str(answer.get("errcode")) == OK:
            try:
                wait = float(answer.get("ping_after") or 1)
            except (TypeError, ValueError):
                wait = 1.0
            if time.monotonic() + wait > deadline:
                raise AmbiguousDeliveryError(
                    f"{self.name}: {what}: no result within {self.result_timeout_s:g} s at the "
                    f"result URL"
                )
            time.sleep(min(max(wait, 0.1), 5.0))  # never a busy loop, never a long nap
            answer = self._get_json(url, what=f"{what} result", sends=True)
        return answer

    def lookup(self, *, message_type: str, key: str) -> SendResult | None:
        """The voucher whose code carries ``key`` (``<resource>/get?id=``), None when U8 has
        none."""
        resource = self._resource(message_type)
        what = f"{resource}/get {key}"
        try:
            answer = self._read(resource, "get", what, id=voucher_code(key, self.key_max_length))
        except _U8Error as error:
            if error.errcode in self.codes["not_found"]:
                return None
            raise TransientError(
                f"{self.name}: {what}: U8 {error.errcode}: {safe_text(error.errmsg, 300)}"
            ) from None
        voucher = answer.get(resource)
        if not isinstance(voucher, Mapping):
            raise TransientError(f"{self.name}: {what}: no {resource} in {safe_text(answer, 200)}")
        ref = voucher.get("code") or voucher.get("id")
        self.tradeids.drop(key)  # the document is settled: its trade id is no longer needed
        return SendResult(
            None if ref is None else str(ref),
            already_present=True,
            detail={"id": str(voucher.get("id") or "")},
        )

    # ---- reconciliation
    def snapshot(self) -> Iterator[RawRecord]:
        """Current stock rows of ``currentstock/batch_get``, page by page."""
        page, line = 1, 0
        while True:
            try:
                answer = self._read(
                    "currentstock",
                    "batch_get",
                    "currentstock/batch_get",
                    page_index=str(page),
                    rows_per_page=str(self.rows_per_page),
                )
            except _U8Error as error:
                raise self._read_error(error, "currentstock/batch_get") from None
            rows = answer.get("currentstock")
            if not isinstance(rows, list):
                raise TransientError(
                    f"{self.name}: currentstock/batch_get: no rows: {safe_text(answer, 200)}"
                )
            for row in rows:
                line += 1
                yield RawRecord(data=row, line=line)
            pages = answer_int(answer.get("page_count") or 0, name=self.name, what="page_count")
            if not rows or page >= pages:
                return
            page += 1

    def _read_error(self, error: _U8Error, what: str) -> ConveyorError:
        return TransientError(
            f"{self.name}: {what}: U8 {error.errcode}: {safe_text(error.errmsg, 300)}"
        )

    def check(self) -> str:
        """Fetch a token: proves the gateway, the account and the app key."""
        self.token(refresh=True)
        return f"{self.name}: U8 token from {self.url} for account {self.to_account}"

    def close(self) -> None:
        """Give back the pooled connections and the trade id file."""
        self.http.close()
