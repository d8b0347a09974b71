"""Kingdee K/3 Cloud (金蝶云星空) WebAPI connector, to the facts in DIALECTS.md.

Every call is a JSON ``POST`` to ``{url}/k3cloud/Kingdee.BOS.WebApi.ServicesStub.<Service>.
<Operation>.common.kdsvc`` (named body style), on the runtime's HTTP stack
(``conveyor.runtime.http``). Two ways in, chosen by ``auth``:

- ``session`` — ``AuthService.ValidateUser`` (``login: password``), ``LoginByAppSecret``
  (``login: app_secret``) or ``LoginBySign`` (``login: sign``); the session rides in the
  ``kdservice-sessionid`` cookie. When the server answers ``MsgCode 1`` (会话信息已丢失) the
  connector logs in again and repeats the call once; a write is repeated only for the documents
  a lookup by the hub's key does not find.
- ``signed`` — "API auth 2.0" headers on every call (``connectors.kingdee_auth``), no login.

Inbound: the ``production_order`` stream reads ``PRD_MO`` entries with ``ExecuteBillQuery``
(filter configurable: ``FStatus`` values are unconfirmed), ordered by ``FModifyDate, FID`` and
resumed strictly after the ``(FModifyDate, FID)`` of the last bill read, so bills changed in the
same second are neither lost nor repeated; each record carries its ``PRD_PPBOM`` component lines
(paged with ``StartRow``/``Limit``). ``snapshot()`` reads ``STK_Inventory``; ``material_master()``
reads ``BD_MATERIAL`` (``FModifyDate`` after ``since``, paged by ``FNumber``). An error answered
inside a query's result array is raised, never taken for a data row.

Outbound: documents shaped ``{"FormId", "Model"}`` by ``mappings/kingdee.yaml`` are saved with
``BatchSave`` (one call per form, ``batch_size`` models each; ``send`` saves a batch of one), then
``Submit``/``Audit`` when configured (or ``IsAutoSubmitAndAudit``). Results are mapped back by
``DIndex``. The hub's key is written into ``key_field`` (default the remark ``FDescription``;
``FNote`` for ``STK_TransferDirect``) so that ``lookup`` finds a document after a lost answer.

Answers that are not what the interface promises (an HTML page from a proxy, cut-off JSON, an
envelope without ``IsSuccess``, a success without a bill number) are classified: ambiguous after a
write (looked up before anything is posted again), transient for a read.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import urlsplit

import requests

from connectors import kingdee_auth
from conveyor.connector import BatchItem, Connector, ItemResult, RawRecord, SendResult, Stream
from conveyor.errors import (
    AmbiguousDeliveryError,
    ConfigError,
    ConveyorError,
    RejectedError,
    TransientError,
)
from conveyor.messages import json_default
from conveyor.redact import safe_text
from conveyor.runtime.http import HTTP_SETTINGS_SCHEMA, HttpClient, answer_int, loads_answer

log = logging.getLogger(__name__)

SERVICE = "/k3cloud/Kingdee.BOS.WebApi.ServicesStub.{service}.{operation}.common.kdsvc"
SESSION_COOKIE = "kdservice-sessionid"
MSG_SESSION_LOST = 1
MSG_BAD_QUERY = 4
MSG_UNKNOWN_FIELD = 9
MAX_PAGE = 2000

DEFAULT_FILTER = "FDocumentStatus = 'C' and FStatus in ('3', '4')"
"""Audited orders whose entries are released (3 下达) or started (4 开工): the commonly
documented FStatus values, unconfirmed — hence the per-stream ``filter`` setting."""

FORMS_OF_TYPE: dict[str, tuple[str, ...]] = {
    "material_consumption": ("PRD_PickMtrl", "PRD_ReturnMtrl"),
    "production_output": ("PRD_INSTOCK",),
    "stock_transfer": ("STK_TransferDirect",),
    "stock_adjustment": ("STK_MisDelivery", "STK_MISCELLANEOUS"),
}
"""Where ``lookup`` searches for a message type's documents (a reversal lands on another form)."""

DEFAULT_KEY_FIELDS = {
    "*": "FDescription",
    "STK_TransferDirect": "FNote",
    "STK_MisDelivery": "FNote",
    "STK_MISCELLANEOUS": "FNote",
}

MO_FIELDS = (
    "FID",
    "FBillNo",
    "FDate",
    "FDocumentStatus",
    "FModifyDate",
    "FPrdOrgId.FNumber",
    "FWorkShopID.FNumber",
    "FTreeEntity_FEntryId",
    "FTreeEntity_FSeq",
    "FMaterialId.FNumber",
    "FQty",
    "FUnitId.FNumber",
    "FBaseUnitQty",
    "FLot.FNumber",
    "FPlanStartDate",
    "FPlanFinishDate",
    "FStatus",
    "FStockId.FNumber",
    "FBomId.FNumber",
)
PPBOM_FIELDS = (
    "FMOBillNO",
    "FMOEntrySeq",
    "FEntity_FSeq",
    "FMaterialID2.FNumber",
    "FMustQty",
    "FUnitID.FNumber",
    "FStockID.FNumber",
)
INVENTORY_FIELDS = (
    "FStockOrgId.FNumber",
    "FStockId.FNumber",
    "FMaterialId.FNumber",
    "FLot.FNumber",
    "FBaseQty",
    "FBaseUnitId.FNumber",
    "FStockStatusId.FNumber",
)

MATERIAL_FIELDS = (
    "FNumber",
    "FName",
    "FSpecification",
    "FBaseUnitId.FNumber",
    "FMaterialGroup.FNumber",
    "FDocumentStatus",
    "FForbidStatus",
    "FModifyDate",
)
MATERIAL_COLUMNS = {
    "FNumber": "kingdee_number",
    "FName": "description",
    "FBaseUnitId.FNumber": "base_uom",
}
"""The BD_MATERIAL fields that map to a column of ``master_data/materials.csv``."""


def _nest(keys: Sequence[str], row: Sequence[Any]) -> dict[str, Any]:
    """A query row as the bill's own shape: ``FMaterialId.FNumber`` → ``{"FMaterialId":
    {"FNumber": …}}`` (what the mapping reads, as for a bill's ``Model``)."""
    out: dict[str, Any] = {}
    for key, value in zip(keys, row, strict=True):
        base, dot, attribute = key.partition(".")
        if dot:
            out.setdefault(base, {})[attribute] = value
        else:
            out[key] = value
    return out


def _quote(text: str) -> str:
    """A literal of a FilterString (SQL-like: quotes doubled)."""
    return "'" + str(text).replace("'", "''") + "'"


def _messages(errors: Any) -> str:
    """The texts of a ResponseStatus' ``Errors`` (with their field), joined."""
    texts = []
    for error in errors if isinstance(errors, list) else []:
        if isinstance(error, Mapping):
            message = str(error.get("Message") or "").strip()
            field = error.get("FieldName")
            texts.append(f"{message} ({field})" if field else message)
    return "; ".join(t for t in texts if t) or "no message"


def _status_of(answer: Any) -> Mapping[str, Any] | None:
    """The ``ResponseStatus`` of an answer, wherever the operation put it: ``{"Result":
    {"ResponseStatus"}}``, or the error wrapped in a query's array ``[[{"Result": …}]]``."""
    probe = answer
    while isinstance(probe, list) and len(probe) == 1:
        probe = probe[0]
    if isinstance(probe, Mapping):
        result = probe.get("Result")
        if isinstance(result, Mapping) and isinstance(result.get("ResponseStatus"), Mapping):
            status: Mapping[str, Any] = result["ResponseStatus"]
            return status
    return None


class SessionLost(TransientError):
    """The server no longer knows the session (MsgCode 1): log in again."""


@dataclass(frozen=True)
class _Cursor:
    """Where a poll resumes: strictly after bill ``fid`` modified at ``modified``."""

    modified: str
    fid: int

    def text(self) -> str:
        return json.dumps({"modified": self.modified, "fid": self.fid})

    @classmethod
    def parse(cls, text: str | None) -> _Cursor | None:
        if not text:
            return None
        try:
            data = json.loads(text)
            return cls(str(data["modified"]), int(data["fid"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"not a Kingdee cursor: {text!r} (reset it)") from exc


class KingdeeConnector(Connector):
    """Kingdee K/3 Cloud WebAPI (see the module docstring)."""

    kind = "kingdee"
    thread_safe = True  # one pooled session and one login shared by the worker's threads
    capabilities: ClassVar[frozenset[str]] = frozenset(
        {"poll", "send", "send_batch", "lookup", "snapshot", "master_data", "health"}
    )
    material_columns: ClassVar[Mapping[str, str]] = MATERIAL_COLUMNS
    material_key: ClassVar[str] = "FNumber"
    streams: ClassVar[tuple[Stream, ...]] = (
        Stream(
            "production_order",
            "production_order",
            source="PRD_MO (+ PRD_PPBOM components)",
            cursor_field="FModifyDate + FID",
            description="released, audited production orders, one record per order entry",
        ),
    )
    config_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "required": ["url", "acct_id"],
        "additionalProperties": False,
        "properties": {
            "url": {"type": "string", "pattern": "^https?://"},
            "acct_id": {"type": "string", "minLength": 1},
            "lcid": {"type": "integer", "default": 2052},
            "org": {"type": "string", "description": "organisation number (signed app data)"},
            "auth": {"enum": ["session", "signed"], "default": "session"},
            "login": {"enum": ["password", "app_secret", "sign"], "default": "password"},
            "batch_size": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
            "page_size": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": 2000},
            "key_field": {
                "oneOf": [
                    {"type": "string", "pattern": "^F[A-Za-z0-9_]+$"},
                    {
                        "type": "object",
                        "additionalProperties": {"type": "string", "pattern": "^F[A-Za-z0-9_]+$"},
                    },
                ]
            },
            "streams": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "production_order": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "filter": {"type": "string"},
                            "components": {"enum": ["ppbom", "none"]},
                        },
                    }
                },
            },
            "submit": {"type": "boolean", "default": False},
            "audit": {"type": "boolean", "default": False},
            "auto_submit_audit": {"type": "boolean", "default": False},
            **HTTP_SETTINGS_SCHEMA,
            "username": {"type": "string", "secret": True},
            "password": {"type": "string", "secret": True},
            "app_id": {"type": "string", "secret": True},
            "app_secret": {"type": "string", "secret": True},
        },
    }

    @classmethod
    def required_secrets(cls, settings: Mapping[str, Any]) -> list[str]:
        """USERNAME always; PASSWORD for a password login, APP_ID and APP_SECRET otherwise."""
        if settings.get("auth", "session") == "session" and (
            settings.get("login", "password") == "password"
        ):
            return ["password", "username"]
        return ["app_id", "app_secret", "username"]

    def __init__(
        self, name: str, settings: Mapping[str, Any] | None = None, *, connection: str | None = None
    ) -> None:
        super().__init__(name, settings, connection=connection)
        s = self.settings
        self.base_url: str = s["url"].rstrip("/")
        self.acct_id: str = s["acct_id"]
        self.lcid: int = int(s.get("lcid", 2052))
        self.org: str = str(s.get("org", "0"))
        self.auth: str = s.get("auth", "session")
        self.login_kind: str = s.get("login", "password")
        self.batch_size: int = int(s.get("batch_size", 100))
        self.page_size: int = int(s.get("page_size", MAX_PAGE))
        key_field = s.get("key_field")
        if isinstance(key_field, str):
            self.key_fields = {"*": key_field}
        else:
            self.key_fields = {**DEFAULT_KEY_FIELDS, **(key_field or {})}
        order_stream = (s.get("streams") or {}).get("production_order") or {}
        self.order_filter: str = order_stream.get("filter", DEFAULT_FILTER)
        self.components: str = order_stream.get("components", "ppbom")
        self.auto_submit_audit = bool(s.get("auto_submit_audit", False))
        self.submit = bool(s.get("submit", False)) and not self.auto_submit_audit
        self.audit = bool(s.get("audit", False)) and not self.auto_submit_audit
        self.http = HttpClient(name, s, headers={"Accept": "application/json"})
        self._session_id: str | None = None
        self._session_generation = 0
        self._login_lock = threading.Lock()

    # ------------------------------------------------------------------ the wire
    def _url(self, service: str, operation: str) -> str:
        return self.base_url + SERVICE.format(service=service, operation=operation)

    def _auth_headers(self, url: str) -> tuple[dict[str, str], int]:
        """Headers that authenticate one call, and the session generation they belong to."""
        if self.auth == "signed":
            stamp = str(int(time.time()))
            try:
                headers = kingdee_auth.signed_headers(
                    urlsplit(url).path,
                    self.required_secret("app_id"),
                    self.required_secret("app_secret"),
                    self.acct_id,
                    self.required_secret("username"),
                    self.lcid,
                    self.org,
                    stamp,
                    stamp,
                )
            except ValueError as exc:
                raise ConfigError(f"system {self.name!r}: APP_ID: {exc}") from None
            return headers, 0
        with self._login_lock:
            if self._session_id is None:
                self._login()
            session_id, generation = self._session_id, self._session_generation
        return {"Cookie": f"{SESSION_COOKIE}={session_id}"}, generation

    def _login(self) -> None:
        """Log in (the caller holds the login lock); raises on a refused login."""
        username = self.required_secret("username")
        if self.login_kind == "password":
            operation = "ValidateUser"
            parameters: list[Any] = [
                self.acct_id,
                username,
                self.required_secret("password"),
                self.lcid,
            ]
        elif self.login_kind == "app_secret":
            operation = "LoginByAppSecret"
            parameters = [
                self.acct_id,
                username,
                self.required_secret("app_id"),
                self.required_secret("app_secret"),
                self.lcid,
            ]
        else:
            operation = "LoginBySign"
            app_id, app_secret = self.required_secret("app_id"), self.required_secret("app_secret")
            stamp = str(int(time.time()))
            sign = kingdee_auth.login_sign(self.acct_id, username, app_id, app_secret, stamp)
            parameters = [self.acct_id, username, app_id, stamp, sign, self.lcid]
        url = self._url("AuthService", operation)
        response = self.http.request(
            "POST",
            url,
            sends=False,
            what=f"login ({operation})",
            body=json.dumps({"parameters": parameters}, ensure_ascii=False).encode(),
            headers={"Content-Type": "application/json"},
        )
        answer = self._parse(response, what=f"login ({operation})", writes=False)
        if not isinstance(answer, Mapping) or answer.get("LoginResultType") != 1:
            message = answer.get("Message") if isinstance(answer, Mapping) else answer
            raise ConfigError(
                f"system {self.name!r}: Kingdee refused the login ({operation}): "
                f"{safe_text(message, 300)}"
            )
        session_id = answer.get("KDSVCSessionId") or response.cookies.get(SESSION_COOKIE)
        if not session_id:
            raise TransientError(f"{self.name}: login ({operation}) answered no session id")
        self._session_id = str(session_id)
        self._session_generation += 1

    def _relogin(self, generation: int) -> None:
        """Log in again unless another thread already did since ``generation``."""
        with self._login_lock:
            if self._session_generation == generation:
                self._session_id = None
                self._login()

    def _int(self, value: Any, what: str) -> int:
        return answer_int(value, name=self.name, what=what)

    def _parse(self, response: requests.Response, *, what: str, writes: bool) -> Any:
        """The JSON of an answer; anything else is ambiguous after a write, else transient."""
        from conveyor.runtime.http import raise_for_status

        raise_for_status(response, name=self.name, what=what)
        error = AmbiguousDeliveryError if writes else TransientError
        text = response.text
        try:
            return loads_answer(text)
        except ValueError:
            raise error(
                f"{self.name}: {what}: the answer is not JSON (HTTP {response.status_code}): "
                f"{safe_text(text, 200)}"
            ) from None

    def _call(
        self,
        service: str,
        operation: str,
        data: Mapping[str, Any],
        *,
        formid: str = "",
        writes: bool,
    ) -> Any:
        """One call with its authentication; raises ``SessionLost`` when the server forgot the
        session (after logging in again, so the caller decides whether to repeat)."""
        url = self._url(service, operation)
        what = f"{operation} {formid}".strip()
        body: dict[str, Any] = {"data": data}
        if formid:
            body["formid"] = formid
        headers, generation = self._auth_headers(url)
        response = self.http.request(
            "POST",
            url,
            sends=writes,
            what=what,
            body=json.dumps(body, default=json_default, ensure_ascii=False).encode(),
            headers={"Content-Type": "application/json", **headers},
        )
        answer = self._parse(response, what=what, writes=writes)
        status = _status_of(answer)
        if status is not None and status.get("MsgCode") == MSG_SESSION_LOST:
            if self.auth == "signed":  # a refused signature: the credentials are wrong
                raise ConfigError(
                    f"system {self.name!r}: {what}: signature refused: "
                    f"{safe_text(_messages(status.get('Errors')), 300)}"
                )
            self._relogin(generation)
            raise SessionLost(f"{self.name}: {what}: the session was lost (logged in again)")
        return answer

    # ------------------------------------------------------------------ queries
    def query(
        self,
        form_id: str,
        field_keys: Sequence[str],
        *,
        filter_string: str = "",
        order: str = "",
        start_row: int = 0,
        limit: int = MAX_PAGE,
    ) -> list[list[Any]]:
        """One ``ExecuteBillQuery`` page: rows in ``field_keys`` order. An error the server
        wraps inside the result array is raised, never returned as a row."""
        data = {
            "FormId": form_id,
            "FieldKeys": ",".join(field_keys),
            "FilterString": filter_string,
            "OrderString": order,
            "TopRowCount": 0,
            "StartRow": start_row,
            "Limit": limit,
            "SubSystemId": "",
        }
        what = f"ExecuteBillQuery {form_id}"
        try:
            answer = self._call("DynamicFormService", "ExecuteBillQuery", data, writes=False)
        except SessionLost:
            answer = self._call("DynamicFormService", "ExecuteBillQuery", data, writes=False)
        status = _status_of(answer)
        if status is not None:
            text = safe_text(_messages(status.get("Errors")), 500)
            if status.get("MsgCode") in (MSG_BAD_QUERY, MSG_UNKNOWN_FIELD):
                raise ConfigError(f"system {self.name!r}: {what}: {text}")
            raise TransientError(f"{self.name}: {what}: {text}")
        if not isinstance(answer, list) or not all(
            isinstance(row, list) and len(row) == len(field_keys) for row in answer
        ):
            raise TransientError(
                f"{self.name}: {what}: not an array of {len(field_keys)}-column rows: "
                f"{safe_text(answer, 200)}"
            )
        return answer

    def _pages(
        self, form_id: str, field_keys: Sequence[str], filter_string: str, order: str
    ) -> Iterator[list[list[Any]]]:
        """Every page of a query whose rows do not move while it is read (``StartRow``)."""
        start = 0
        while True:
            page = self.query(
                form_id,
                field_keys,
                filter_string=filter_string,
                order=order,
                start_row=start,
                limit=self.page_size,
            )
            if page:
                yield page
            if len(page) < self.page_size:
                return
            start += len(page)

    # ------------------------------------------------------------------ inbound
    def poll(self, stream: str, cursor: str | None) -> Iterator[RawRecord]:
        """``production_order``: PRD_MO entries changed after ``cursor``, each with its
        components, in (FModifyDate, FID, entry) order; the cursor moves past a bill only with
        its last entry (a crash mid-bill repeats the bill, which the ledger deduplicates)."""
        self.stream(stream)
        after = _Cursor.parse(cursor)
        current = cursor or ""
        while True:
            where = f"({self.order_filter})" if self.order_filter.strip() else ""
            if after is not None:
                moved = (
                    f"(FModifyDate > {_quote(after.modified)} or "
                    f"(FModifyDate = {_quote(after.modified)} and FID > {after.fid}))"
                )
                where = f"{where} and {moved}" if where else moved
            rows = self.query(
                "PRD_MO",
                MO_FIELDS,
                filter_string=where,
                order="FModifyDate,FID,FTreeEntity_FSeq",
                limit=self.page_size,
            )
            full = len(rows) >= self.page_size
            bills: dict[int, list[dict[str, Any]]] = {}
            for row in rows:
                record = _nest(MO_FIELDS, row)
                bills.setdefault(self._int(record["FID"], "PRD_MO FID"), []).append(record)
            if full and len(bills) > 1:
                # the last bill may continue on the next page: read it whole next time
                bills.pop(list(bills)[-1])
            elif full:
                raise ConfigError(
                    f"system {self.name!r}: a PRD_MO bill has more entries than page_size "
                    f"({self.page_size}): raise page_size"
                )
            components = self._components([entries[0]["FBillNo"] for entries in bills.values()])
            for entries in bills.values():
                last = entries[-1]
                after = _Cursor(str(last["FModifyDate"]), self._int(last["FID"], "PRD_MO FID"))
                for position, entry in enumerate(entries):
                    record = self._order_record(entry, components)
                    is_last = position == len(entries) - 1
                    if is_last:
                        current = after.text()
                    yield RawRecord(record, cursor=current, message_type="production_order")
            if not full:
                return

    def _order_record(
        self, row: Mapping[str, Any], components: Mapping[tuple[str, int], list[dict[str, Any]]]
    ) -> dict[str, Any]:
        header_keys = (
            "FID",
            "FBillNo",
            "FDate",
            "FDocumentStatus",
            "FModifyDate",
            "FPrdOrgId",
            "FWorkShopID",
        )
        record: dict[str, Any] = {"FormId": "PRD_MO"}
        record.update({k: row[k] for k in header_keys})
        entry = {k: v for k, v in row.items() if k not in header_keys}
        entry["FSeq"] = entry.pop("FTreeEntity_FSeq")
        entry["FEntryID"] = entry.pop("FTreeEntity_FEntryId")
        record["FTreeEntity"] = entry
        org = (row.get("FPrdOrgId") or {}).get("FNumber", "")
        record["PPBOM"] = [
            {**line, "FPrdOrgId": {"FNumber": org}}
            for line in components.get((str(row["FBillNo"]), int(entry["FSeq"])), [])
        ]
        return record

    def _components(
        self, bill_numbers: Sequence[str]
    ) -> dict[tuple[str, int], list[dict[str, Any]]]:
        """PRD_PPBOM lines of these orders by (order number, order entry), as the real system
        keeps components: in the order's production material list, not the order itself."""
        found: dict[tuple[str, int], list[dict[str, Any]]] = {}
        if self.components == "none":
            return found
        for start in range(0, len(bill_numbers), 500):
            chunk = bill_numbers[start : start + 500]
            if not chunk:
                continue
            where = f"FMOBillNO in ({', '.join(_quote(n) for n in chunk)})"
            for page in self._pages(
                "PRD_PPBOM", PPBOM_FIELDS, where, "FMOBillNO,FMOEntrySeq,FEntity_FSeq"
            ):
                for row in page:
                    line = _nest(PPBOM_FIELDS, row)
                    entry = self._int(line.pop("FMOEntrySeq") or 1, "PRD_PPBOM FMOEntrySeq")
                    key = (str(line.pop("FMOBillNO")), entry)
                    line["FSeq"] = line.pop("FEntity_FSeq")
                    found.setdefault(key, []).append(line)
        return found

    def snapshot(self) -> Iterator[RawRecord]:
        """On-hand stock from ``STK_Inventory``, one raw row per organisation × warehouse ×
        material × lot × stock status (mapped by the ``stock_snapshot`` mapping)."""
        as_of = datetime.now(UTC).isoformat()  # on-hand stock is as of the moment it is read
        line = 0
        for page in self._pages(
            "STK_Inventory",
            INVENTORY_FIELDS,
            "",
            "FStockOrgId.FNumber,FStockId.FNumber,FMaterialId.FNumber",
        ):
            for row in page:
                line += 1
                record = {"FormId": "STK_Inventory", "AsOf": as_of, **_nest(INVENTORY_FIELDS, row)}
                yield RawRecord(record, line=line)

    def material_master(self, since: datetime | None) -> Iterator[dict[str, str]]:
        """``BD_MATERIAL`` rows (``MATERIAL_FIELDS``, as text) modified after ``since`` (the
        server's wall clock, as ``FModifyDate`` is; every row when None), by ``FNumber``."""
        where = ""
        if since is not None:
            precision = "milliseconds" if since.microsecond else "seconds"
            stamp = since.replace(tzinfo=None).isoformat(timespec=precision)
            where = f"FModifyDate > {_quote(stamp)}"
        for page in self._pages("BD_MATERIAL", MATERIAL_FIELDS, where, "FNumber"):
            for row in page:
                yield {
                    key: "" if value is None else str(value)
                    for key, value in zip(MATERIAL_FIELDS, row, strict=True)
                }

    # ------------------------------------------------------------------ outbound
    def _key_field(self, form_id: str) -> str:
        return self.key_fields.get(form_id) or self.key_fields.get("*") or "FDescription"

    def _form_and_model(self, item: BatchItem) -> tuple[str, dict[str, Any]]:
        document = item.document
        form_id = document.get("FormId")
        model = document.get("Model")
        if not isinstance(form_id, str) or not form_id or not isinstance(model, Mapping):
            raise RejectedError(
                f"{self.name}: {item.key}: the outbound document has no FormId and Model "
                f"(is there a kingdee mapping for {item.message_type}?)"
            )
        stamped = dict(model)
        stamped[self._key_field(form_id)] = item.key  # what lookup searches by
        return form_id, stamped

    def send(
        self,
        document: Mapping[str, Any],
        *,
        message_type: str,
        key: str,
        idempotency_key: str | None = None,
    ) -> SendResult:
        """Save one document (a ``BatchSave`` of one); its bill number, or the classified error."""
        (result,) = self.send_batch([BatchItem(document, message_type, key, idempotency_key)])
        if result.error is not None:
            raise result.error
        assert result.result is not None
        return result.result

    def send_batch(self, items: Sequence[BatchItem]) -> list[ItemResult]:
        """Save ``items`` with ``BatchSave`` (per form, ``batch_size`` at a time), submit and
        audit when configured; one result per item, in order."""
        results: dict[int, ItemResult] = {}
        groups: dict[str, list[tuple[int, BatchItem, dict[str, Any]]]] = {}
        for index, item in enumerate(items):
            try:
                form_id, model = self._form_and_model(item)
            except ConveyorError as exc:
                results[index] = ItemResult(item.key, error=exc)
                continue
            groups.setdefault(form_id, []).append((index, item, model))
        for form_id, group in groups.items():
            for start in range(0, len(group), self.batch_size):
                chunk = group[start : start + self.batch_size]
                for (index, _item, _model), result in zip(
                    chunk, self._save_chunk(form_id, chunk), strict=True
                ):
                    results[index] = result
        return [results[i] for i in range(len(items))]

    def _save_chunk(
        self, form_id: str, chunk: Sequence[tuple[int, BatchItem, dict[str, Any]]]
    ) -> list[ItemResult]:
        data: dict[str, Any] = {
            "Model": [model for _i, _item, model in chunk],
            "BatchCount": min(len(chunk), 4),
            "NeedReturnFields": ["FID", "FBillNo"],
            "IsVerifyBaseDataField": True,
            "IsAutoSubmitAndAudit": self.auto_submit_audit,
            "ValidateFlag": True,
            "NumberSearch": True,
        }
        keys = [item.key for _i, item, _m in chunk]
        try:
            answer = self._call(
                "DynamicFormService", "BatchSave", data, formid=form_id, writes=True
            )
        except SessionLost:
            # refused before saving on the real server, but never trusted: look up, then repeat
            # only the documents the form does not have
            found = self._find(form_id, keys)
            missing = [entry for entry in chunk if entry[1].key not in found]
            again: dict[str, ItemResult] = {}
            if missing:
                data = {**data, "Model": [m for _i, _item, m in missing]}
                answer = self._call(
                    "DynamicFormService", "BatchSave", data, formid=form_id, writes=True
                )
                for (_i, item, _m), result in zip(
                    missing,
                    self._batch_results(form_id, [e[1].key for e in missing], answer),
                    strict=True,
                ):
                    again[item.key] = result
            return [
                self._found_result(form_id, key, found[key]) if key in found else again[key]
                for key in keys
            ]
        return self._batch_results(form_id, keys, answer)

    def _batch_results(self, form_id: str, keys: Sequence[str], answer: Any) -> list[ItemResult]:
        """Per-document results of a ``BatchSave`` answer (by ``DIndex``), then Submit/Audit."""
        what = f"BatchSave {form_id}"
        status = _status_of(answer)
        if status is None or not isinstance(status.get("IsSuccess"), bool):
            raise AmbiguousDeliveryError(
                f"{self.name}: {what}: no ResponseStatus.IsSuccess in the answer: "
                f"{safe_text(answer, 200)}"
            )
        errors: dict[int, list[Any]] = {}
        general: list[Any] = []
        for error in status.get("Errors") or []:
            index = error.get("DIndex") if isinstance(error, Mapping) else None
            if isinstance(index, int) and 0 <= index < len(keys):
                errors.setdefault(index, []).append(error)
            else:
                general.append(error)
        numbers: dict[int, str] = {}
        for success in status.get("SuccessEntitys") or []:
            if not isinstance(success, Mapping):
                continue
            index, number = success.get("DIndex"), success.get("Number")
            if isinstance(index, int) and number not in (None, ""):
                numbers[index] = str(number)
        results: list[ItemResult] = []
        for index, key in enumerate(keys):
            if index in numbers and index not in errors:
                results.append(ItemResult(key, result=SendResult(numbers[index])))
            elif index in errors or general:
                text = safe_text(_messages(errors.get(index, general)), 1000)
                results.append(
                    ItemResult(key, error=RejectedError(f"{self.name}: {what}: {key}: {text}"))
                )
            else:  # neither saved with a number nor refused: the answer does not say
                results.append(
                    ItemResult(
                        key,
                        error=AmbiguousDeliveryError(
                            f"{self.name}: {what}: no bill number nor error for {key}"
                        ),
                    )
                )
        if self.submit or self.audit:
            results = self._submit_and_audit(form_id, results)
        return results

    def _submit_and_audit(self, form_id: str, results: list[ItemResult]) -> list[ItemResult]:
        """``Submit`` then ``Audit`` the saved bills; a refusal parks that document with its
        draft's number in the reason (the draft stays in Kingdee for a person to settle)."""
        out = list(results)
        for operation, wanted in (("Submit", self.submit), ("Audit", self.audit)):
            saved = [(i, r) for i, r in enumerate(out) if r.ok and r.result is not None]
            if not wanted or not saved:
                continue
            numbers = [r.result.external_ref for _i, r in saved if r.result is not None]
            refused = self._operate(form_id, operation, [str(n) for n in numbers])
            for position, (i, r) in enumerate(saved):
                if position in refused:
                    ref = r.result.external_ref if r.result is not None else ""
                    out[i] = ItemResult(
                        r.key,
                        error=RejectedError(
                            f"{self.name}: {operation} {form_id}: saved as draft {ref}, but "
                            f"{operation} was refused: {refused[position]}"
                        ),
                    )
        return out

    def _operate(self, form_id: str, operation: str, numbers: Sequence[str]) -> dict[int, str]:
        """``Submit``/``Audit`` bills by number; the refused ones by position, with the text."""
        data = {"CreateOrgId": 0, "Numbers": list(numbers), "Ids": ""}
        try:
            answer = self._call("DynamicFormService", operation, data, formid=form_id, writes=True)
        except SessionLost:  # submitting or auditing twice is refused, never doubled: repeat
            answer = self._call("DynamicFormService", operation, data, formid=form_id, writes=True)
        status = _status_of(answer)
        if status is None or not isinstance(status.get("IsSuccess"), bool):
            raise AmbiguousDeliveryError(
                f"{self.name}: {operation} {form_id}: no ResponseStatus.IsSuccess in the answer"
            )
        refused: dict[int, str] = {}
        for error in status.get("Errors") or []:
            index = error.get("DIndex") if isinstance(error, Mapping) else None
            positions = [index] if isinstance(index, int) else list(range(len(numbers)))
            for position in positions:
                text = safe_text(_messages([error]), 500)
                refused[position] = f"{refused[position]}; {text}" if position in refused else text
        return refused

    def _find(self, form_id: str, keys: Sequence[str]) -> dict[str, tuple[str, str]]:
        """``(bill number, document status)`` of the documents of ``form_id`` carrying these
        hub keys."""
        field = self._key_field(form_id)
        found: dict[str, tuple[str, str]] = {}
        for start in range(0, len(keys), 200):
            chunk = keys[start : start + 200]
            where = f"{field} in ({', '.join(_quote(k) for k in chunk)})"
            for page in self._pages(form_id, (field, "FBillNo", "FDocumentStatus"), where, "FID"):
                for value, number, status in page:
                    found.setdefault(str(value), (str(number), str(status)))
        return found

    def _finish(self, form_id: str, number: str, status: str) -> None:
        """Submit and audit (as configured) a bill found saved by an attempt whose answer was
        lost, so a found draft ends where a posting would have; raises ``RejectedError`` when
        Kingdee refuses."""
        steps = []
        if self.submit and status in ("Z", "A", "D"):
            steps.append("Submit")
        if self.audit and status != "C":
            steps.append("Audit")
        for operation in steps:
            refused = self._operate(form_id, operation, [number])
            if refused:
                raise RejectedError(
                    f"{self.name}: {operation} {form_id}: found saved as draft {number}, but "
                    f"{operation} was refused: {refused[0]}"
                )

    def _found_result(self, form_id: str, key: str, found: tuple[str, str]) -> ItemResult:
        """The result of a document a lookup found (finished as configured)."""
        number, status = found
        try:
            self._finish(form_id, number, status)
        except ConveyorError as exc:
            return ItemResult(key, error=exc)
        return ItemResult(key, result=SendResult(number, already_present=True))

    def lookup(self, *, message_type: str, key: str) -> SendResult | None:
        """The bill carrying the hub's ``key`` in its key field (``ExecuteBillQuery`` over the
        forms of ``message_type``), or None when none has it."""
        forms = FORMS_OF_TYPE.get(message_type)
        if forms is None:
            raise ConfigError(f"system {self.name!r}: no Kingdee form for {message_type!r}")
        for form_id in forms:
            found = self._find(form_id, [key])
            if key in found:
                number, status = found[key]
                self._finish(form_id, number, status)
                return SendResult(number, already_present=True, detail={"form": form_id})
        return None

    # ------------------------------------------------------------------ operations
    def check(self) -> str:
        """A live check: log in (session) or run a one-row signed query."""
        if self.auth == "session":
            with self._login_lock:
                self._session_id = None
                self._login()
            return f"{self.name}: logged in to {self.acct_id} at {self.base_url}"
        self.query("STK_Inventory", ("FMaterialId.FNumber",), limit=1)
        return f"{self.name}: signed query answered by {self.base_url}"

    def close(self) -> None:
        """Give back the pooled connections (the session stays valid on the server until it
        idles out; the next call logs in again)."""
        with self._login_lock:
            self._session_id = None
        self.http.close()
