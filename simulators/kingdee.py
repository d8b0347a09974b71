"""Kingdee K/3 Cloud (金蝶云星空) WebAPI simulator, to the facts in DIALECTS.md.

Serves ``POST {base}/k3cloud/Kingdee.BOS.WebApi.ServicesStub.<Service>.<Operation>.common.kdsvc``
with both body styles (named ``{"formid", "data"}`` / ``{"data"}`` and positional
``{"parameters": [...]}``):

- ``AuthService``: ``ValidateUser``, ``LoginByAppSecret``, ``LoginBySign`` (sign checked with
  :func:`connectors.kingdee_auth.login_sign`); the session rides in the ``kdservice-sessionid``
  cookie (or header) and expires after ``session_ttl_s`` idle seconds. Signed requests ("API auth
  2.0" headers) are checked with :func:`connectors.kingdee_auth.signed_headers`.
- ``DynamicFormService``: ``ExecuteBillQuery`` and ``BillQuery`` (FieldKeys, a FilterString subset,
  OrderString, StartRow, Limit ≤ 2,000, TopRowCount; errors come back *inside* the array),
  ``Save``, ``BatchSave``, ``Submit``, ``Audit``, ``UnAudit``, ``Delete``, ``View``.

Forms: ``PRD_MO`` (production orders, with ``PRD_PPBOM`` component lists), ``PRD_PickMtrl``,
``PRD_ReturnMtrl``, ``PRD_INSTOCK``, ``STK_TransferDirect``, ``STK_Inventory`` (on-hand stock) and
``BD_MATERIAL`` (the material master, query only: seeded from the master data's materials with a
Kingdee number; tests change it with ``upsert_material``/``delete_material``).
Stock moves on audit (or on save with ``IsAutoSubmitAndAudit``): picks remove, returns and receipts
add, transfers move. Message texts follow the real server where they are known (DIALECTS.md);
the others are this simulator's own wording.

Run: ``python -m simulators.kingdee --port 8090 [--seed-orders 2500] [--refuse-negative] ...``
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hmac
import json
import re
import uuid
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

from connectors.kingdee_auth import login_sign, signed_headers
from simulators._erp import (
    JSON,
    ErpSimulator,
    NegativeStock,
    SeedOrder,
    SimRequest,
    SimResponse,
    SimServer,
    StockKey,
    common_arguments,
    common_options,
    generate_orders,
    json_response,
    load_json_file,
    run_until_stopped,
    start,
    to_decimal,
)

SERVICE_PREFIX = "/k3cloud/kingdee.bos.webapi.servicesstub."
SERVICE_SUFFIX = ".common.kdsvc"
SESSION_COOKIE = "kdservice-sessionid"
SESSION_LOST = "会话信息已丢失，请重新登录"
NEGATIVE_STOCK = "出现负库存，库存更新不成功。"
STOCK_UPDATE_FAILED = "更新库存出现异常情况，更新库存不成功！"
MAX_LIMIT = 2000

# MsgCode values of the ResponseStatus envelope.
MSG_OK = 0
MSG_SESSION_LOST = 1
MSG_BAD_QUERY = 4  # unknown form or a filter the server cannot parse
MSG_UNKNOWN_FIELD = 9
MSG_VALIDATION = 11

DATE_FORMAT = "%Y-%m-%dT%H:%M:%S"


class KingdeeError(Exception):
    """An error answered in the ResponseStatus envelope."""

    def __init__(self, msg_code: int, message: str, field_name: str | None = None) -> None:
        super().__init__(message)
        self.msg_code = msg_code
        self.message = message
        self.field_name = field_name


# ---------------------------------------------------------------------------------------------
# Forms


@dataclass(frozen=True)
class Form:
    """A bill form: its header and entry fields (key → type) and what saving it requires."""

    form_id: str
    prefix: str
    bill_type: str
    entity: str | None
    header: Mapping[str, str]
    entry: Mapping[str, str] = field(default_factory=dict)
    required_header: Mapping[str, str] = field(default_factory=dict)  # key → display name
    required_entry: Mapping[str, str] = field(default_factory=dict)
    positive: tuple[str, ...] = ()  # entry quantities that must be > 0
    movement: str = "none"  # out | in | move | none
    quantity: str = ""
    writable: bool = True
    entity_name: str = "明细"


# Fields every bill carries. Types: text, int, decimal, date, ref (base data, {"FNumber": …}).
BILL_HEADER = {
    "FID": "int",
    "FBillNo": "text",
    "FDate": "date",
    "FDocumentStatus": "text",
    "FCreateDate": "date",
    "FModifyDate": "date",
    "FApproveDate": "date",
    "FDescription": "text",
    "FNote": "text",
}
ENTRY_COMMON = {"FSeq": "int"}

FORMS: dict[str, Form] = {
    "PRD_MO": Form(
        "PRD_MO",
        "MO",
        "SCDD01_SYS",
        "FTreeEntity",
        {**BILL_HEADER, "FBillType": "ref", "FPrdOrgId": "ref", "FWorkShopID": "ref"},
        {
            **ENTRY_COMMON,
            "FMaterialId": "ref",
            "FQty": "decimal",
            "FUnitId": "ref",
            "FBaseUnitQty": "decimal",
            "FLot": "ref",
            "FPlanStartDate": "date",
            "FPlanFinishDate": "date",
            "FStatus": "text",
            "FStockId": "ref",
            "FBomId": "ref",
        },
        required_header={"FPrdOrgId": "生产组织"},
        required_entry={"FMaterialId": "物料编码", "FQty": "数量", "FUnitId": "单位"},
        positive=("FQty",),
    ),
    "PRD_PPBOM": Form(
        "PRD_PPBOM",
        "PPBOM",
        "SCYLQD01_SYS",
        "FEntity",
        {
            **BILL_HEADER,
            "FPrdOrgId": "ref",
            "FMOBillNO": "text",
            "FMOEntrySeq": "int",
            "FMaterialID": "ref",
            "FQty": "decimal",
        },
        {
            **ENTRY_COMMON,
            "FMaterialID2": "ref",
            "FMustQty": "decimal",
            "FUnitID": "ref",
            "FStockID": "ref",
        },
        writable=False,
    ),
    "PRD_PickMtrl": Form(
        "PRD_PickMtrl",
        "SCLLD",
        "SCLLD01_SYS",
        "FEntity",
        {**BILL_HEADER, "FBillType": "ref", "FStockOrgId": "ref", "FPrdOrgId": "ref"},
        {
            **ENTRY_COMMON,
            "FMaterialId": "ref",
            "FUnitID": "ref",
            "FAppQty": "decimal",
            "FActualQty": "decimal",
            "FStockId": "ref",
            "FLot": "ref",
            "FStockStatusId": "ref",
            "FMoBillNo": "text",
            "FMoEntrySeq": "int",
            "FOwnerTypeId": "text",
            "FOwnerId": "ref",
        },
        required_header={"FStockOrgId": "发料组织", "FPrdOrgId": "生产组织"},
        required_entry={
            "FMaterialId": "物料编码",
            "FStockId": "仓库",
            "FActualQty": "实发数量",
            "FUnitID": "单位",
        },
        positive=("FActualQty",),
        movement="out",
        quantity="FActualQty",
    ),
    "PRD_ReturnMtrl": Form(
        "PRD_ReturnMtrl",
        "SCTLD",
        "SCTLD01_SYS",
        "FEntity",
        {**BILL_HEADER, "FBillType": "ref", "FStockOrgId": "ref", "FPrdOrgId": "ref"},
        {
            **ENTRY_COMMON,
            "FMaterialId": "ref",
            "FUnitID": "ref",
            "FAPPQty": "decimal",
            "FQty": "decimal",
            "FStockId": "ref",
            "FLot": "ref",
            "FMoBillNo": "text",
            "FReturnType": "text",
        },
        required_header={"FStockOrgId": "收料组织"},
        required_entry={
            "FMaterialId": "物料编码",
            "FStockId": "仓库",
            "FQty": "实退数量",
            "FUnitID": "单位",
        },
        positive=("FQty",),
        movement="in",
        quantity="FQty",
    ),
    "PRD_INSTOCK": Form(
        "PRD_INSTOCK",
        "SCRKD",
        "SCRKD01_SYS",
        "FEntity",
        {**BILL_HEADER, "FBillType": "ref", "FStockOrgId": "ref", "FPrdOrgId": "ref"},
        {
            **ENTRY_COMMON,
            "FMaterialId": "ref",
            "FUnitID": "ref",
            "FInStockType": "text",
            "FMoBillNo": "text",
            "FMustQty": "decimal",
            "FRealQty": "decimal",
            "FStockId": "ref",
            "FLot": "ref",
            "FStockStatusId": "ref",
            "FProduceDate": "date",
        },
        required_header={"FStockOrgId": "入库组织"},
        required_entry={
            "FMaterialId": "物料编码",
            "FStockId": "仓库",
            "FRealQty": "实收数量",
            "FUnitID": "单位",
        },
        positive=("FRealQty",),
        movement="in",
        quantity="FRealQty",
    ),
    "STK_TransferDirect": Form(
        "STK_TransferDirect",
        "ZJDB",
        "ZJDB01_SYS",
        "FBillEntry",
        {**BILL_HEADER, "FBillTypeID": "ref", "FStockOrgId": "ref", "FStockOutOrgId": "ref"},
        {
            **ENTRY_COMMON,
            "FMaterialId": "ref",
            "FUnitID": "ref",
            "FQty": "decimal",
            "FSrcStockId": "ref",
            "FDestStockId": "ref",
            "FLot": "ref",
            "FDestLot": "ref",
        },
        required_header={"FStockOrgId": "调入库存组织"},
        required_entry={
            "FMaterialId": "物料编码",
            "FSrcStockId": "调出仓库",
            "FDestStockId": "调入仓库",
            "FQty": "调拨数量",
            "FUnitID": "单位",
        },
        positive=("FQty",),
        movement="move",
        quantity="FQty",
    ),
    "STK_Inventory": Form(
        "STK_Inventory",
        "",
        "",
        None,
        {
            "FID": "int",
            "FMaterialId": "ref",
            "FStockId": "ref",
            "FLot": "ref",
            "FStockOrgId": "ref",
            "FBaseQty": "decimal",
            "FQty": "decimal",
            "FBaseUnitId": "ref",
            "FStockUnitId": "ref",
            "FStockStatusId": "ref",
        },
        writable=False,
    ),
    "BD_MATERIAL": Form(
        "BD_MATERIAL",
        "",
        "",
        None,
        {
            "FMATERIALID": "int",
            "FNumber": "text",
            "FName": "text",
            "FSpecification": "text",
            "FBaseUnitId": "ref",
            "FMaterialGroup": "ref",
            "FUseOrgId": "ref",
            "FDocumentStatus": "text",
            "FForbidStatus": "text",
            "FCreateDate": "date",
            "FModifyDate": "date",
        },
        writable=False,
    ),
}

MATERIAL_REFS = ("FMaterialId", "FMaterialID", "FMaterialID2")
STOCK_REFS = ("FStockId", "FSrcStockId", "FDestStockId", "FStockID")
ORG_REFS = ("FStockOrgId", "FPrdOrgId", "FStockOutOrgId")


def _ref_number(value: Any) -> str:
    """The FNumber of a base-data reference ({"FNumber": …}, {"FNUMBER": …} or a bare value)."""
    if isinstance(value, Mapping):
        for name in ("FNumber", "FNUMBER", "FNumber ", "Number"):
            if name in value and value[name] is not None:
                return str(value[name]).strip()
        return ""
    return "" if value is None else str(value).strip()


def _date_text(value: Any) -> str:
    """Dates as the server answers them (``2026-01-05T08:00:00``, with milliseconds when set)."""
    if value is None or value == "":
        return ""
    if isinstance(value, datetime):
        text = value.isoformat(timespec="milliseconds")
        return text[:-4] if text.endswith(".000") else text
    text = str(value).strip().replace("/", "-")
    try:
        return _date_text(datetime.fromisoformat(text))
    except ValueError:
        return text


def _base_id(kind: str, number: str) -> int:
    """A stable internal id for a base-data number (what a bare ref field answers)."""
    return 100000 + zlib.crc32(f"{kind}:{number}".encode()) % 900000 if number else 0


# ---------------------------------------------------------------------------------------------
# Field access and filters


@dataclass(frozen=True)
class FieldAccess:
    kind: str  # text, int, decimal, date
    get: Callable[[Mapping[str, Any], Mapping[str, Any] | None], Any]
    on_entry: bool


def _field_access(form: Form, key: str, names: Callable[[str, str], str]) -> FieldAccess:
    """How to read ``key`` (``FBillNo``, ``FTreeEntity_FEntryId``, ``FMaterialId.FNumber``) from a
    (document, entry) pair; unknown keys raise MsgCode 9 like the server."""
    lowered = key.strip().lower()
    header = {k.lower(): (k, t) for k, t in form.header.items()}
    entry = {k.lower(): (k, t) for k, t in form.entry.items()}
    if form.entity is not None:
        entity = form.entity.lower()
        if lowered == f"{entity}_fentryid":
            return FieldAccess("int", lambda d, e: (e or {}).get("FEntryID", 0), True)
        if lowered == f"{entity}_fseq":
            return FieldAccess("int", lambda d, e: (e or {}).get("FSeq", 0), True)
    base, _, attribute = lowered.partition(".")
    for table, on_entry in ((header, False), (entry, True)):
        if base in table:
            name, kind = table[base]
            access = _typed_access(name, kind, attribute, on_entry, names)
            if access is not None:
                return access
    raise KingdeeError(MSG_UNKNOWN_FIELD, f"元数据中标识为{key.strip()}的字段不存在", key.strip())


def _typed_access(
    name: str, kind: str, attribute: str, on_entry: bool, names: Callable[[str, str], str]
) -> FieldAccess | None:
    """Access to one declared field (``attribute``: "", "fnumber" or "fname", lowercased)."""

    def raw(d: Mapping[str, Any], e: Mapping[str, Any] | None) -> Any:
        source = e if on_entry else d
        return None if source is None else source.get(name)

    if kind == "ref":
        getters: dict[str, tuple[str, Callable[[Mapping[str, Any], Any], Any]]] = {
            "fnumber": ("text", lambda d, e: _ref_number(raw(d, e))),
            "fname": ("text", lambda d, e: names(name, _ref_number(raw(d, e)))),
            # A bare base-data field answers the internal id, as on the server.
            "": ("int", lambda d, e: _base_id(name, _ref_number(raw(d, e)))),
        }
        chosen = getters.get(attribute)
        return None if chosen is None else FieldAccess(chosen[0], chosen[1], on_entry)
    if attribute:
        return None
    if kind == "decimal":
        return FieldAccess("decimal", lambda d, e: to_decimal(raw(d, e)) or Decimal(0), on_entry)
    if kind == "int":
        return FieldAccess("int", lambda d, e: int(raw(d, e) or 0), on_entry)
    if kind == "date":
        return FieldAccess("date", lambda d, e: _date_text(raw(d, e)), on_entry)
    return FieldAccess("text", lambda d, e: "" if raw(d, e) is None else raw(d, e), on_entry)


_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<num>-?\d+(?:\.\d+)?)|(?P<op>>=|<=|<>|!=|=|>|<)"
    r"|(?P<punct>[(),])|(?P<word>[A-Za-z_][A-Za-z0-9_.]*))"
)

Row = tuple[Mapping[str, Any], Mapping[str, Any] | None]
Predicate = Callable[[Row], bool]


def _syntax_error(near: str) -> KingdeeError:
    return KingdeeError(MSG_BAD_QUERY, f"过滤条件FilterString语法错误：“{near}”附近有语法错误。")


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    position = 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise _syntax_error(text[position:].strip()[:20])
        kind = match.lastgroup or ""
        tokens.append((kind, match.group(kind)))
        position = match.end()
    return tokens


def _comparable(kind: str, value: Any) -> Any:
    if kind in ("decimal", "int"):
        number = to_decimal(value)
        if number is None:
            raise _syntax_error(str(value))
        return number
    if kind == "date":
        if value == "":
            return datetime.min
        try:
            return datetime.fromisoformat(str(value).strip().replace("/", "-"))
        except ValueError as exc:
            raise KingdeeError(
                MSG_BAD_QUERY, f"从字符串转换日期和/或时间时，转换失败：{value}"
            ) from exc
    return str(value)


class _FilterParser:
    """``expr := term (or term)*``, ``term := factor (and factor)*``, ``factor := ( expr ) |
    FIELD op literal | FIELD [not] in ( literal, … )`` — the subset the hub needs."""

    def __init__(self, text: str, resolve: Callable[[str], FieldAccess]) -> None:
        self.tokens = _tokenize(text)
        self.position = 0
        self.resolve = resolve
        self.fields: list[FieldAccess] = []

    def peek(self) -> tuple[str, str]:
        return self.tokens[self.position] if self.position < len(self.tokens) else ("end", "")

    def take(self) -> tuple[str, str]:
        token = self.peek()
        self.position += 1
        return token

    def expect(self, kind: str, value: str | None = None) -> tuple[str, str]:
        token = self.take()
        if token[0] != kind or (value is not None and token[1].lower() != value):
            raise _syntax_error(token[1] or "结尾")
        return token

    def parse(self) -> Predicate:
        predicate = self.expr()
        if self.peek()[0] != "end":
            raise _syntax_error(self.peek()[1])
        return predicate

    def expr(self) -> Predicate:
        parts = [self.term()]
        while self.peek()[0] == "word" and self.peek()[1].lower() == "or":
            self.take()
            parts.append(self.term())
        return parts[0] if len(parts) == 1 else (lambda row: any(p(row) for p in parts))

    def term(self) -> Predicate:
        parts = [self.factor()]
        while self.peek()[0] == "word" and self.peek()[1].lower() == "and":
            self.take()
            parts.append(self.factor())
        return parts[0] if len(parts) == 1 else (lambda row: all(p(row) for p in parts))

    def literal(self, kind: str) -> Any:
        category, text = self.take()
        if category == "str":
            return _comparable(kind, text[1:-1].replace("''", "'"))
        if category == "num":
            return _comparable(kind, text)
        raise _syntax_error(text or "结尾")

    def factor(self) -> Predicate:
        kind, text = self.peek()
        if kind == "punct" and text == "(":
            self.take()
            inner = self.expr()
            self.expect("punct", ")")
            return inner
        if kind != "word" or text.lower() in ("and", "or", "in", "not"):
            raise _syntax_error(text or "结尾")
        self.take()
        access = self.resolve(text)
        self.fields.append(access)
        op_kind, op = self.take()
        negate = False
        if op_kind == "word" and op.lower() == "not":
            negate = True
            op_kind, op = self.take()
        if op_kind == "word" and op.lower() == "in":
            self.expect("punct", "(")
            values = [self.literal(access.kind)]
            while self.peek() == ("punct", ","):
                self.take()
                values.append(self.literal(access.kind))
            self.expect("punct", ")")
            chosen = set(values)
            return lambda row: (_comparable(access.kind, access.get(*row)) in chosen) != negate
        if op_kind != "op" or negate:
            raise _syntax_error(op or "结尾")
        value = self.literal(access.kind)
        compare: dict[str, Callable[[Any, Any], bool]] = {
            "=": lambda a, b: bool(a == b),
            "<>": lambda a, b: bool(a != b),
            "!=": lambda a, b: bool(a != b),
            ">": lambda a, b: bool(a > b),
            ">=": lambda a, b: bool(a >= b),
            "<": lambda a, b: bool(a < b),
            "<=": lambda a, b: bool(a <= b),
        }
        check = compare[op]

        def predicate(row: Row) -> bool:
            current = access.get(*row)
            if access.kind == "date" and current == "":
                return False
            return check(_comparable(access.kind, current), value)

        return predicate


# ---------------------------------------------------------------------------------------------
# Envelopes


def response_status(
    errors: Sequence[Mapping[str, Any]] = (),
    successes: Sequence[Mapping[str, Any]] = (),
    msg_code: int = MSG_OK,
) -> dict[str, Any]:
    status: dict[str, Any] = {
        "IsSuccess": not errors,
        "Errors": list(errors),
        "SuccessEntitys": list(successes),
        "SuccessMessages": [],
        "MsgCode": msg_code,
    }
    if errors:
        status = {"ErrorCode": 500, **status}
    return status


def error_item(message: str, field_name: str | None = None, index: int = 0) -> dict[str, Any]:
    return {"FieldName": field_name, "Message": message, "DIndex": index}


def error_result(error: KingdeeError) -> dict[str, Any]:
    status = response_status([error_item(error.message, error.field_name)], msg_code=error.msg_code)
    return {"Result": {"ResponseStatus": status}}


# ---------------------------------------------------------------------------------------------
# The simulator


@dataclass
class _Session:
    acct_id: str
    username: str
    expires_at: float


class KingdeeSimulator(ErpSimulator):
    """A K/3 Cloud data centre: one account, one API user, the forms above, stock, sessions."""

    name = "kingdee"

    def __init__(
        self,
        *,
        acct_id: str = "65a1b2c3d4e5f6",
        username: str = "integ_user",
        password: str = "integ_pass",  # noqa: S107 - the simulator's demo credential
        app_id: str = "300001_AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcY",
        app_secret: str = "0123456789abcdef0123456789abcdef",  # noqa: S107
        session_ttl_s: float = 1800.0,
        signature_max_skew_s: float | None = 900.0,
        released_status: str = "3",
        seed_orders: int = 0,
        seed: int = 0,
        orders_file: str | Path | None = None,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self.acct_id = acct_id
        self.username = username
        self.password = password
        self.app_id = app_id
        self.app_secret = app_secret
        self.session_ttl_s = session_ttl_s
        self.signature_max_skew_s = signature_max_skew_s
        self.released_status = released_status
        self.sessions: dict[str, _Session] = {}
        self.materials = self.master.column("materials", "kingdee_number")
        self.stocks = self.master.column("locations", "kingdee_stock")
        self.orgs = self.master.column("locations", "kingdee_stock_org")
        self._names: dict[str, str] = {}
        for row in self.master.materials:
            if row.get("kingdee_number"):
                self._names["m:" + row["kingdee_number"]] = row.get("description", "")
        for row in self.master.locations:
            if row.get("kingdee_stock"):
                self._names["s:" + row["kingdee_stock"]] = row.get("description", "")
        if not self.store.all("doc:BD_MATERIAL"):
            self.seed_materials(self.master.materials)
        if seed_orders and not self.store.all("doc:PRD_MO"):
            self.seed_orders(generate_orders(seed_orders, self.master, seed))
        if orders_file is not None:
            self.upsert_orders(list(load_json_file(orders_file)))

    # -- names and documents -----------------------------------------------------------------

    def _name_of(self, field_key: str, number: str) -> str:
        if field_key in MATERIAL_REFS:
            return self._names.get("m:" + number, number)
        if field_key in STOCK_REFS:
            return self._names.get("s:" + number, number)
        return number

    def _docs(self, form: Form) -> list[dict[str, Any]]:
        if form.form_id == "STK_Inventory":
            return self._inventory_docs()
        docs = list(self.store.all("doc:" + form.form_id).values())
        docs.sort(key=lambda doc: int(doc.get("FID") or doc.get("FMATERIALID") or 0))
        return docs

    def _put(self, form_id: str, doc: Mapping[str, Any]) -> None:
        self.store.put("doc:" + form_id, str(doc["FID"]), dict(doc))

    def _inventory_docs(self) -> list[dict[str, Any]]:
        units = {
            row["kingdee_number"]: self.master.unit_code("kingdee", row.get("base_uom", ""))
            for row in self.master.materials
            if row.get("kingdee_number")
        }
        docs: list[dict[str, Any]] = []
        for index, (key, quantity) in enumerate(self.stock.rows(), start=1):
            org, stock, material, lot = key
            unit = {"FNumber": units.get(material, "")}
            docs.append(
                {
                    "FID": index,
                    "FStockOrgId": {"FNumber": org},
                    "FStockId": {"FNumber": stock},
                    "FMaterialId": {"FNumber": material},
                    "FLot": {"FNumber": lot},
                    "FBaseQty": quantity,
                    "FQty": quantity,
                    "FBaseUnitId": unit,
                    "FStockUnitId": unit,
                    "FStockStatusId": {"FNumber": "KCZT01_SYS"},
                }
            )
        return docs

    def documents_view(self, query: Mapping[str, str]) -> JSON:
        wanted = query.get("form")
        return {
            form_id: self._docs(form)
            for form_id, form in FORMS.items()
            if form.writable and (wanted is None or wanted == form_id)
        }

    def orders_view(self) -> JSON:
        return self._docs(FORMS["PRD_MO"])

    # -- material master ---------------------------------------------------------------------

    def seed_materials(self, rows: Sequence[Mapping[str, str]]) -> None:
        """``BD_MATERIAL`` from rows shaped like ``materials.csv`` (those with a
        ``kingdee_number``): audited, not forbidden, the base unit in Kingdee's code."""
        with self.store.batch():
            for row in rows:
                if row.get("kingdee_number"):
                    self.upsert_material(
                        row["kingdee_number"],
                        name=row.get("description", ""),
                        base_unit=self.master.unit_code("kingdee", row.get("base_uom", "")),
                        group=row.get("group", ""),
                    )

    def _material(self, number: str) -> dict[str, Any] | None:
        for doc in self.store.all("doc:BD_MATERIAL").values():
            if doc.get("FNumber") == number:
                return dict(doc)
        return None

    def upsert_material(
        self,
        number: str,
        *,
        name: str | None = None,
        base_unit: str | None = None,
        group: str | None = None,
    ) -> dict[str, Any]:
        """Create or change a material (as a user in the ERP would); ``FModifyDate`` moves."""
        now = self._now_text()
        doc = self._material(number)
        if doc is None:
            doc = {
                "FMATERIALID": self.numbering.next_value("materialid", 100001),
                "FNumber": number,
                "FName": "",
                "FSpecification": "",
                "FBaseUnitId": {"FNumber": ""},
                "FMaterialGroup": {"FNumber": ""},
                "FUseOrgId": {"FNumber": "100"},
                "FDocumentStatus": "C",
                "FForbidStatus": "A",
                "FCreateDate": now,
            }
        if name is not None:
            doc["FName"] = name
        if base_unit is not None:
            doc["FBaseUnitId"] = {"FNumber": base_unit}
        if group is not None:
            doc["FMaterialGroup"] = {"FNumber": group}
        doc["FModifyDate"] = now
        self.store.put("doc:BD_MATERIAL", str(doc["FMATERIALID"]), doc)
        return doc

    def delete_material(self, number: str) -> bool:
        """Delete a material; False when there is none with ``number``."""
        doc = self._material(number)
        if doc is None:
            return False
        self.store.delete("doc:BD_MATERIAL", str(doc["FMATERIALID"]))
        return True

    # -- orders ------------------------------------------------------------------------------

    def _now_text(self) -> str:
        return _date_text(self.modify_clock.now())

    def seed_orders(self, orders: Sequence[SeedOrder]) -> None:
        """Released production orders (audited, FStatus = ``released_status``) and their
        component lists, from neutral generated orders."""
        with self.store.batch():
            for order in orders:
                product = order.product
                unit = {"FNumber": self.master.unit_code("kingdee", product.get("base_uom", ""))}
                mo = self._new_order(
                    {
                        "FBillNo": f"MO{order.number}",
                        "FDate": _date_text(order.start.replace(hour=0)),
                        "FPrdOrgId": {"FNumber": order.location.get("kingdee_stock_org", "")},
                        "FWorkShopID": {"FNumber": "BM000001"},
                        "FDescription": "",
                        "FTreeEntity": [
                            {
                                "FMaterialId": {"FNumber": product.get("kingdee_number", "")},
                                "FQty": order.quantity,
                                "FUnitId": unit,
                                "FBaseUnitQty": order.quantity,
                                "FLot": {"FNumber": ""},
                                "FPlanStartDate": _date_text(order.start),
                                "FPlanFinishDate": _date_text(order.finish),
                                "FStockId": {"FNumber": order.location.get("kingdee_stock", "")},
                                "FBomId": {"FNumber": f"{product.get('kingdee_number', '')}_V1.0"},
                            }
                        ],
                    }
                )
                self._put("PRD_MO", mo)
                ppbom = {
                    "FID": self.numbering.next_value("fid", 100001),
                    "FBillNo": self.numbering.number("PPBOM"),
                    "FDocumentStatus": "C",
                    "FDate": mo["FDate"],
                    "FCreateDate": mo["FModifyDate"],
                    "FModifyDate": mo["FModifyDate"],
                    "FPrdOrgId": mo["FPrdOrgId"],
                    "FMOBillNO": mo["FBillNo"],
                    "FMOEntrySeq": 1,
                    "FMaterialID": {"FNumber": product.get("kingdee_number", "")},
                    "FQty": order.quantity,
                    "FEntity": [
                        {
                            "FEntryID": self.numbering.next_value("entryid", 100001),
                            "FSeq": seq,
                            "FMaterialID2": {"FNumber": part.material.get("kingdee_number", "")},
                            "FMustQty": part.quantity,
                            "FUnitID": {
                                "FNumber": self.master.unit_code(
                                    "kingdee", part.material.get("base_uom", "")
                                )
                            },
                            "FStockID": {"FNumber": order.location.get("kingdee_stock", "")},
                        }
                        for seq, part in enumerate(order.components, start=1)
                    ],
                }
                self._put("PRD_PPBOM", ppbom)

    def _new_order(self, model: Mapping[str, Any]) -> dict[str, Any]:
        now = self._now_text()
        doc: dict[str, Any] = {
            "FID": self.numbering.next_value("fid", 100001),
            "FBillType": {"FNumber": "SCDD01_SYS"},
            "FDocumentStatus": "C",
            "FCreateDate": now,
            "FApproveDate": now,
        }
        doc.update({k: v for k, v in model.items() if k != "FTreeEntity"})
        doc["FBillNo"] = str(model.get("FBillNo") or self.numbering.number("MO"))
        doc["FDate"] = _date_text(model.get("FDate") or now[:10])
        doc["FModifyDate"] = now
        doc["FTreeEntity"] = self._order_entries([], model.get("FTreeEntity") or [])
        return doc

    def _order_entries(
        self, old: Sequence[Mapping[str, Any]], new: Sequence[Mapping[str, Any]]
    ) -> list[dict[str, Any]]:
        by_seq = {int(entry.get("FSeq", 0)): entry for entry in old}
        entries: list[dict[str, Any]] = []
        for seq, given in enumerate(new, start=1):
            number = int(given.get("FSeq") or seq)
            previous = by_seq.get(number, {})
            entry = {"FStatus": self.released_status, **previous, **given}
            entry["FSeq"] = number
            entry["FEntryID"] = previous.get("FEntryID") or self.numbering.next_value(
                "entryid", 100001
            )
            for date_key in ("FPlanStartDate", "FPlanFinishDate"):
                if entry.get(date_key):
                    entry[date_key] = _date_text(entry[date_key])
            entries.append(entry)
        return entries

    def upsert_orders(self, orders: list[Any]) -> JSON:
        """Release or change production orders (``PRD_MO`` models keyed by ``FBillNo``); every
        change moves ``FModifyDate`` forward so the next poll sees it."""
        existing = {doc["FBillNo"]: doc for doc in self._docs(FORMS["PRD_MO"])}
        answered: list[dict[str, Any]] = []
        with self.store.batch():
            for model in orders:
                if not isinstance(model, Mapping):
                    raise ValueError(f"an order must be a JSON object, got {model!r}")
                current = existing.get(str(model.get("FBillNo", "")))
                if current is None:
                    doc = self._new_order(model)
                else:
                    doc = dict(current)
                    doc.update({k: v for k, v in model.items() if k not in ("FTreeEntity", "FID")})
                    if "FTreeEntity" in model:
                        doc["FTreeEntity"] = self._order_entries(
                            current.get("FTreeEntity", []), model["FTreeEntity"]
                        )
                    if "FDate" in model:
                        doc["FDate"] = _date_text(model["FDate"])
                    doc["FModifyDate"] = self._now_text()
                self._put("PRD_MO", doc)
                existing[doc["FBillNo"]] = doc
                answered.append(
                    {
                        "FID": doc["FID"],
                        "FBillNo": doc["FBillNo"],
                        "FModifyDate": doc["FModifyDate"],
                    }
                )
        return answered

    # -- HTTP --------------------------------------------------------------------------------

    def handle_api(self, request: SimRequest) -> SimResponse:
        path = request.path.lower()
        if request.method != "POST" or not (
            path.startswith(SERVICE_PREFIX) and path.endswith(SERVICE_SUFFIX)
        ):
            return SimResponse(404, b"Not Found", "text/plain")
        service, _, operation = request.path[len(SERVICE_PREFIX) : -len(SERVICE_SUFFIX)].partition(
            "."
        )
        try:
            body = request.json() or {}
        except ValueError:
            return json_response(
                error_result(KingdeeError(MSG_BAD_QUERY, "请求参数不是合法的JSON"))
            )
        if service == "AuthService":
            return self._login(request, operation, body)
        if service != "DynamicFormService":
            return SimResponse(404, b"Not Found", "text/plain")
        handler = {
            "ExecuteBillQuery": self._execute_bill_query,
            "BillQuery": self._bill_query,
            "Save": self._save,
            "BatchSave": self._batch_save,
            "Submit": self._submit,
            "Audit": self._audit,
            "UnAudit": self._unaudit,
            "Delete": self._delete,
            "View": self._view,
        }.get(operation)
        if handler is None:
            return SimResponse(404, b"Not Found", "text/plain")
        denied = self._authorise(request)
        if denied is not None:
            wrapped = operation in ("ExecuteBillQuery", "BillQuery")
            return json_response(
                self._wrap_query_error(operation, denied) if wrapped else error_result(denied)
            )
        formid, data = self._form_and_data(body)
        try:
            return json_response(handler(formid, data))
        except KingdeeError as error:
            if operation in ("ExecuteBillQuery", "BillQuery"):
                return json_response(self._wrap_query_error(operation, error))
            return json_response(error_result(error))

    @staticmethod
    def _wrap_query_error(operation: str, error: KingdeeError) -> JSON:
        # The server answers a failed query *inside* the result array.
        result = error_result(error)
        return [[result]] if operation == "ExecuteBillQuery" else [result]

    @staticmethod
    def _form_and_data(body: Any) -> tuple[str, dict[str, Any]]:
        """(formid, data) from either body style; ``data`` may be an object or JSON text."""
        formid = ""
        data: Any = {}
        if isinstance(body, Mapping) and "parameters" in body:
            parameters = list(body["parameters"] or [])
            if len(parameters) >= 2:
                formid, data = str(parameters[0]), parameters[1]
            elif parameters:
                data = parameters[0]
        elif isinstance(body, Mapping):
            formid = str(body.get("formid") or body.get("FormId") or "")
            data = body.get("data", {})
        if isinstance(data, str):
            try:
                data = json.loads(data, parse_float=Decimal) if data.strip() else {}
            except ValueError as exc:
                raise KingdeeError(MSG_BAD_QUERY, f"data参数不是合法的JSON：{exc}") from exc
        if not isinstance(data, Mapping):
            data = {}
        formid = formid or str(data.get("FormId") or data.get("formid") or "")
        return formid, dict(data)

    # -- authentication ----------------------------------------------------------------------

    def _login(self, request: SimRequest, operation: str, body: Any) -> SimResponse:
        fields = {
            "ValidateUser": ["acctid", "username", "password", "lcid"],
            "LoginByAppSecret": ["acctid", "username", "appid", "appsecret", "lcid"],
            "LoginBySign": ["acctid", "username", "appid", "timestamp", "sign", "lcid"],
        }.get(operation)
        if fields is None:
            return SimResponse(404, b"Not Found", "text/plain")
        values: dict[str, str] = {}
        if isinstance(body, Mapping) and "parameters" in body:
            for name, value in zip(fields, list(body["parameters"] or []), strict=False):
                values[name] = "" if value is None else str(value)
        elif isinstance(body, Mapping):
            lowered = {str(k).lower(): v for k, v in body.items()}
            for name in fields:
                value = lowered.get(name)
                values[name] = "" if value is None else str(value)
        failure: str | None = None
        if values.get("acctid") != self.acct_id:
            failure = "数据中心不存在或已被禁用，请联系管理员！"
        elif values.get("username") != self.username:
            failure = "用户名或密码错误！"
        elif operation == "ValidateUser":
            if not hmac.compare_digest(values.get("password", ""), self.password):
                failure = "用户名或密码错误！"
        elif values.get("appid") != self.app_id:
            failure = "第三方系统登录授权验证失败：应用ID不存在或未启用！"
        elif operation == "LoginByAppSecret":
            if not hmac.compare_digest(values.get("appsecret", ""), self.app_secret):
                failure = "第三方系统登录授权验证失败：应用密钥错误！"
        else:
            expected = login_sign(
                self.acct_id,
                self.username,
                self.app_id,
                self.app_secret,
                values.get("timestamp", ""),
            )
            if not hmac.compare_digest(values.get("sign", "").lower(), expected):
                failure = "第三方系统登录授权验证失败：签名错误！"
            elif not self._fresh(values.get("timestamp", "")):
                failure = "第三方系统登录授权验证失败：时间戳已过期！"
        if failure is not None:
            return json_response(self._login_answer(None, failure))
        session_id = uuid.uuid4().hex[:24]
        self.sessions[session_id] = _Session(
            self.acct_id, self.username, self.now() + self.session_ttl_s
        )
        response = json_response(self._login_answer(session_id, None, values.get("lcid")))
        response.headers.append(("Set-Cookie", f"{SESSION_COOKIE}={session_id}; path=/"))
        response.headers.append(
            ("Set-Cookie", f"ASP.NET_SessionId={uuid.uuid4().hex[:24]}; path=/; HttpOnly")
        )
        return response

    def _login_answer(
        self, session_id: str | None, message: str | None, lcid: str | None = None
    ) -> dict[str, Any]:
        context = None
        if session_id is not None:
            context = {
                "UserLocale": "zh-CN",
                "LogLocale": "zh-CN",
                "DBid": self.acct_id,
                "DatabaseType": 3,
                "SessionId": session_id,
                "UseLanguages": [{"LocaleId": 2052, "LocaleName": "中文(简体)", "Alias": "CN"}],
                "UserId": 100001,
                "UserName": self.username,
                "CustomName": "Conveyor",
                "DisplayVersion": "8.2.0.0",
                "DataCenterName": "Conveyor 模拟账套",
                "UserToken": str(uuid.uuid4()),
                "CurrentOrganizationInfo": {"ID": 1, "AcctOrgType": "1", "Name": "模拟组织"},
                "IsCH_ZH_AutoTrans": False,
                "ClientType": 32,
            }
        return {
            "Message": message,
            "MessageCode": "CheckPasswordPolicy",
            "LoginResultType": 1 if session_id else 0,
            "Context": context,
            "KDSVCSessionId": session_id,
            "FormId": None,
            "RedirectFormParam": None,
            "FormInputObject": None,
            "ErrorStackTrace": None,
            "Lcid": int(lcid) if lcid and lcid.isdigit() else 0,
            "AccessToken": None,
            "CustomParam": {},
            "KdAccessResult": None,
            "IsSuccessByAPI": session_id is not None,
        }

    def _fresh(self, timestamp: str) -> bool:
        if self.signature_max_skew_s is None:
            return True
        try:
            stamp = float(timestamp)
        except ValueError:
            return False
        if stamp > 1e11:  # milliseconds
            stamp /= 1000
        return abs(self.now() - stamp) <= self.signature_max_skew_s

    def _authorise(self, request: SimRequest) -> KingdeeError | None:
        """None when the call carries a live session or valid API-auth-2.0 signature."""
        if "x-api-signature" in request.headers:
            problem = self._check_signature(request)
            if problem is None:
                return None
            return KingdeeError(MSG_SESSION_LOST, problem)
        session_id = request.cookies().get(SESSION_COOKIE) or request.headers.get(SESSION_COOKIE)
        session = self.sessions.get(session_id or "")
        if session is None or session.expires_at < self.now():
            self.sessions.pop(session_id or "", None)
            return KingdeeError(MSG_SESSION_LOST, SESSION_LOST)
        session.expires_at = self.now() + self.session_ttl_s  # idle timeout, like IIS
        return None

    def _check_signature(self, request: SimRequest) -> str | None:
        headers = request.headers
        app_id = headers.get("x-kd-appkey", "")
        if app_id != self.app_id:
            return "API签名验证失败：应用ID不存在或未启用"
        try:
            appdata = base64.b64decode(headers.get("x-kd-appdata", ""), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return "API签名验证失败：X-Kd-Appdata无法解析"
        parts = appdata.split(",")
        if len(parts) != 4:
            return "API签名验证失败：X-Kd-Appdata无法解析"
        acct_id, username, lcid, org_num = parts
        timestamp = headers.get("x-api-timestamp", "")
        nonce = headers.get("x-api-nonce", "")
        try:
            expected = signed_headers(
                request.path,
                app_id,
                self.app_secret,
                acct_id,
                username,
                lcid,
                org_num,
                timestamp,
                nonce,
            )
        except ValueError:
            return "API签名验证失败：应用ID格式错误"
        for name in ("X-Api-Signature", "X-Kd-Signature", "X-Api-ClientID"):
            if not hmac.compare_digest(headers.get(name.lower(), ""), expected[name]):
                return f"API签名验证失败：{name}不正确"
        if acct_id != self.acct_id:
            return "数据中心不存在或已被禁用，请联系管理员！"
        if username != self.username:
            return "API签名验证失败：用户不存在或未授权"
        if not self._fresh(timestamp):
            return "API签名验证失败：请求时间戳已过期"
        return None

    # -- queries -----------------------------------------------------------------------------

    def _form(self, formid: str) -> Form:
        form = FORMS.get(formid)
        if form is None:
            match = [f for key, f in FORMS.items() if key.lower() == formid.lower()]
            if not match:
                raise KingdeeError(MSG_BAD_QUERY, f"业务对象“{formid}”不存在")
            form = match[0]
        return form

    def _query(self, formid: str, data: Mapping[str, Any]) -> tuple[list[str], list[list[Any]]]:
        form = self._form(str(data.get("FormId") or formid))
        keys = [key.strip() for key in str(data.get("FieldKeys") or "").split(",") if key.strip()]
        if not keys:
            raise KingdeeError(MSG_BAD_QUERY, "FieldKeys不能为空")

        def resolve(key: str) -> FieldAccess:
            return _field_access(form, key, self._name_of)

        columns = [resolve(key) for key in keys]
        parser = _FilterParser(str(data.get("FilterString") or ""), resolve)
        predicate = parser.parse() if parser.tokens else None
        orders: list[tuple[FieldAccess, bool]] = []
        for part in str(data.get("OrderString") or "").split(","):
            words = part.split()
            if not words:
                continue
            if len(words) > 2 or (len(words) == 2 and words[1].lower() not in ("asc", "desc")):
                raise KingdeeError(MSG_BAD_QUERY, f"OrderString语法错误：{part.strip()}")
            orders.append((resolve(words[0]), len(words) == 2 and words[1].lower() == "desc"))
        per_entry = form.entity is not None and any(
            access.on_entry for access in [*columns, *parser.fields, *(a for a, _ in orders)]
        )
        rows: list[Row] = []
        for doc in self._docs(form):
            entries = doc.get(form.entity, []) if per_entry and form.entity else [None]
            for entry in entries or []:
                row: Row = (doc, entry)
                if predicate is None or predicate(row):
                    rows.append(row)
        for access, descending in reversed(orders):
            rows.sort(key=_sort_key(access), reverse=descending)
        top = int(to_decimal(data.get("TopRowCount")) or 0)
        if top > 0:
            rows = rows[:top]
        start_row = max(0, int(to_decimal(data.get("StartRow")) or 0))
        limit = int(to_decimal(data.get("Limit")) or 0)
        limit = MAX_LIMIT if limit <= 0 or limit > MAX_LIMIT else limit
        page = rows[start_row : start_row + limit]
        return keys, [[access.get(*row) for access in columns] for row in page]

    def _execute_bill_query(self, formid: str, data: Mapping[str, Any]) -> JSON:
        return self._query(formid, data)[1]

    def _bill_query(self, formid: str, data: Mapping[str, Any]) -> JSON:
        keys, rows = self._query(formid, data)
        return [dict(zip(keys, row, strict=True)) for row in rows]

    # -- saving ------------------------------------------------------------------------------

    def _normalise(self, form: Form, model: Mapping[str, Any]) -> dict[str, Any]:
        doc: dict[str, Any] = {}
        for key, value in model.items():
            kind = form.header.get(key)
            if kind == "date":
                doc[key] = _date_text(value)
            elif kind == "ref":
                doc[key] = {"FNumber": _ref_number(value)}
            elif kind == "decimal":
                doc[key] = to_decimal(value)
            else:
                doc[key] = value
        if form.entity is not None and form.entity in model:
            entries: list[dict[str, Any]] = []
            for given in model.get(form.entity) or []:
                entry: dict[str, Any] = {}
                for key, value in (given or {}).items():
                    kind = form.entry.get(key)
                    if kind == "ref":
                        entry[key] = {"FNumber": _ref_number(value)}
                    elif kind == "decimal":
                        entry[key] = to_decimal(value)
                    elif kind == "date":
                        entry[key] = _date_text(value)
                    else:
                        entry[key] = value
                entries.append(entry)
            doc[form.entity] = entries
        return doc

    def _validate(self, form: Form, doc: Mapping[str, Any], index: int) -> list[dict[str, Any]]:
        """Every error of one bill (all carry the bill's DIndex)."""
        errors: list[dict[str, Any]] = []
        for key, label in form.required_header.items():
            value = doc.get(key)
            missing = (
                _ref_number(value) == ""
                if form.header.get(key) == "ref"
                else value
                in (
                    None,
                    "",
                )
            )
            if missing:
                errors.append(error_item(f"字段“{label}”是必填项", key, index))
        for key in ORG_REFS:
            number = _ref_number(doc.get(key)) if key in doc else ""
            if number and number not in self.orgs:
                errors.append(
                    error_item(f"字段“{key}”的值“{number}”对应的组织不存在或未启用", key, index)
                )
        entries = doc.get(form.entity, []) if form.entity else []
        if form.entity and form.required_entry and not entries:
            errors.append(
                error_item(
                    f"单据体实体【{form.entity_name}】至少需要录入一行分录", form.entity, index
                )
            )
        for row, entry in enumerate(entries or [], start=1):
            prefix = f"单据体实体【{form.entity_name}】第【{row}】行分录，"
            for key, label in form.required_entry.items():
                value = entry.get(key)
                missing = (
                    _ref_number(value) == ""
                    if form.entry.get(key) == "ref"
                    else value in (None, "")
                )
                if missing:
                    errors.append(error_item(f"{prefix}【{label}】字段必录", key, index))
            for key in form.positive:
                quantity = entry.get(key)
                if isinstance(quantity, Decimal) and quantity <= 0:
                    label = form.required_entry.get(key, key)
                    errors.append(error_item(f"{prefix}【{label}】必须大于0", key, index))
            for key in MATERIAL_REFS:
                number = _ref_number(entry.get(key)) if key in entry else ""
                if number and number not in self.materials:
                    errors.append(
                        error_item(
                            f"{prefix}字段“物料编码”的值“{number}”在基础资料中不存在或未审核",
                            key,
                            index,
                        )
                    )
            for key in STOCK_REFS:
                number = _ref_number(entry.get(key)) if key in entry else ""
                if number and number not in self.stocks:
                    errors.append(
                        error_item(
                            f"{prefix}字段“仓库”的值“{number}”在基础资料中不存在或未审核",
                            key,
                            index,
                        )
                    )
        return errors

    def _moves(
        self, form: Form, doc: Mapping[str, Any], sign: int
    ) -> list[tuple[StockKey, Decimal]]:
        """Stock changes of auditing (sign +1) or un-auditing (sign -1) a bill."""
        moves: list[tuple[StockKey, Decimal]] = []
        if form.movement == "none" or not form.entity:
            return moves
        org = _ref_number(doc.get("FStockOrgId"))
        out_org = _ref_number(doc.get("FStockOutOrgId")) or org
        for entry in doc.get(form.entity, []):
            quantity = to_decimal(entry.get(form.quantity)) or Decimal(0)
            material = _ref_number(entry.get("FMaterialId"))
            lot = _ref_number(entry.get("FLot"))
            if form.movement == "out":
                moves.append(
                    ((org, _ref_number(entry.get("FStockId")), material, lot), -quantity * sign)
                )
            elif form.movement == "in":
                moves.append(
                    ((org, _ref_number(entry.get("FStockId")), material, lot), quantity * sign)
                )
            else:
                dest_lot = _ref_number(entry.get("FDestLot")) or lot
                source = (out_org, _ref_number(entry.get("FSrcStockId")), material, lot)
                target = (org, _ref_number(entry.get("FDestStockId")), material, dest_lot)
                moves.append((source, -quantity * sign))
                moves.append((target, quantity * sign))
        return moves

    def _apply_stock(
        self, form: Form, doc: Mapping[str, Any], sign: int, index: int
    ) -> list[dict[str, Any]]:
        try:
            self.stock.apply(self._moves(form, doc, sign), self.refuse_negative)
        except NegativeStock as short:
            org, stock, material, lot = short.key
            detail = (
                f"{STOCK_UPDATE_FAILED}物料编码“{material}”，仓库“{stock}”，批号“{lot}”，"
                f"库存组织“{org}”：可用库存{short.available}，本次需要{short.wanted}"
            )
            return [error_item(detail, None, index), error_item(NEGATIVE_STOCK, None, index)]
        return []

    def _save_one(
        self, form: Form, model: Any, index: int, options: Mapping[str, Any]
    ) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        if not isinstance(model, Mapping):
            return None, [error_item("Model必须是JSON对象", None, index)]
        incoming = self._normalise(form, model)
        fid = int(to_decimal(model.get("FID")) or 0)
        now = self._now_text()
        if fid:
            current = self.store.get("doc:" + form.form_id, str(fid))
            if current is None:
                return None, [error_item(f"单据内码“{fid}”对应的单据不存在", "FID", index)]
            if current.get("FDocumentStatus") not in ("A", "D", "Z"):
                return None, [
                    error_item(
                        f"单据“{current['FBillNo']}”已提交或已审核，不允许修改", "FID", index
                    )
                ]
            doc = {**current, **{k: v for k, v in incoming.items() if k != "FID"}}
            if form.entity and form.entity in incoming:
                doc[form.entity] = self._entries(
                    current.get(form.entity, []), incoming[form.entity]
                )
        else:
            doc = {**incoming, "FDocumentStatus": "A", "FCreateDate": now}
            doc.setdefault("FDate", now[:10] + "T00:00:00")
            if form.entity:
                doc[form.entity] = self._entries([], incoming.get(form.entity, []))
        errors = self._validate(form, doc, index)
        bill_no = str(doc.get("FBillNo") or "")
        if not fid and bill_no and any(d.get("FBillNo") == bill_no for d in self._docs(form)):
            errors.append(error_item(f"单据编号“{bill_no}”已经存在，不允许重复", "FBillNo", index))
        if errors:
            return None, errors
        auto = _flag(options.get("IsAutoSubmitAndAudit"))
        if auto:
            errors = self._apply_stock(form, doc, +1, index)
            if errors:
                return None, errors  # the whole save rolls back, like the server's transaction
            doc["FDocumentStatus"] = "C"
            doc["FApproveDate"] = now
        if not fid:
            doc["FID"] = self.numbering.next_value("fid", 100001)
            doc["FBillNo"] = bill_no or self.numbering.number(form.prefix)
        doc["FModifyDate"] = now
        self._put(form.form_id, doc)
        return doc, []

    def _entries(
        self, old: Sequence[Mapping[str, Any]], new: Sequence[Mapping[str, Any]]
    ) -> list[dict[str, Any]]:
        known = {int(entry.get("FEntryID", 0)): entry for entry in old}
        entries: list[dict[str, Any]] = []
        for seq, given in enumerate(new, start=1):
            entry_id = int(to_decimal(given.get("FEntryID")) or 0)
            previous = known.get(entry_id, {})
            entry = {**previous, **given}
            entry["FEntryID"] = previous.get("FEntryID") or self.numbering.next_value(
                "entryid", 100001
            )
            entry["FSeq"] = seq
            entries.append(entry)
        return entries

    def _need_return(self, form: Form, doc: Mapping[str, Any], data: Mapping[str, Any]) -> JSON:
        wanted = data.get("NeedReturnFields") or []
        if isinstance(wanted, str):
            wanted = [part.strip() for part in wanted.split(",") if part.strip()]
        answer: dict[str, Any] = {}
        for key in wanted:
            try:
                access = _field_access(form, str(key), self._name_of)
            except KingdeeError:
                continue
            if access.on_entry and form.entity:
                answer[str(key)] = [access.get(doc, e) for e in doc.get(form.entity, [])]
            else:
                answer[str(key)] = access.get(doc, None)
        return answer

    def _writable(self, formid: str) -> Form:
        form = self._form(formid)
        if not form.writable:
            raise KingdeeError(MSG_BAD_QUERY, f"业务对象“{form.form_id}”不支持保存")
        return form

    def _save(self, formid: str, data: Mapping[str, Any]) -> JSON:
        form = self._writable(formid)
        doc, errors = self._save_one(form, data.get("Model"), 0, data)
        if doc is None:
            status = response_status(errors, msg_code=MSG_VALIDATION)
            return {
                "Result": {"ResponseStatus": status, "Id": "", "Number": "", "NeedReturnData": [{}]}
            }
        success = {"Id": doc["FID"], "Number": doc["FBillNo"], "DIndex": 0}
        return {
            "Result": {
                "ResponseStatus": response_status(successes=[success]),
                "Id": doc["FID"],
                "Number": doc["FBillNo"],
                "NeedReturnData": [self._need_return(form, doc, data)],
            }
        }

    def _batch_save(self, formid: str, data: Mapping[str, Any]) -> JSON:
        form = self._writable(formid)
        models = data.get("Model")
        if not isinstance(models, list):
            models = [models]
        errors: list[dict[str, Any]] = []
        successes: list[dict[str, Any]] = []
        returned: list[Any] = []
        # Each bill is its own transaction: good bills are saved whatever happens to the others.
        for index, model in enumerate(models):
            doc, problems = self._save_one(form, model, index, data)
            if doc is None:
                errors.extend(problems)
                continue
            successes.append({"Id": doc["FID"], "Number": doc["FBillNo"], "DIndex": index})
            returned.append(self._need_return(form, doc, data))
        status = response_status(errors, successes, MSG_VALIDATION if errors else MSG_OK)
        return {"Result": {"ResponseStatus": status, "NeedReturnData": returned or [{}]}}

    # -- operations on saved bills -----------------------------------------------------------

    def _targets(
        self, form: Form, data: Mapping[str, Any]
    ) -> list[tuple[str, dict[str, Any] | None]]:
        docs = self._docs(form)
        by_number = {d["FBillNo"]: d for d in docs}
        by_id = {str(d["FID"]): d for d in docs}
        targets: list[tuple[str, dict[str, Any] | None]] = []
        numbers = data.get("Numbers") or []
        if isinstance(numbers, str):
            numbers = [n for n in numbers.split(",") if n]
        for number in numbers:
            targets.append((str(number), by_number.get(str(number))))
        ids = data.get("Ids") or ""
        for fid in [p.strip() for p in str(ids).split(",") if p.strip()]:
            targets.append((fid, by_id.get(fid)))
        return targets

    def _operate(
        self,
        formid: str,
        data: Mapping[str, Any],
        allowed: tuple[str, ...],
        verb: str,
        act: Callable[[Form, dict[str, Any], int], list[dict[str, Any]]],
    ) -> JSON:
        form = self._writable(formid)
        targets = self._targets(form, data)
        if not targets:
            raise KingdeeError(MSG_VALIDATION, "Numbers和Ids不能同时为空")
        errors: list[dict[str, Any]] = []
        successes: list[dict[str, Any]] = []
        for index, (asked, doc) in enumerate(targets):
            if doc is None:
                errors.append(error_item(f"单据“{asked}”不存在", None, index))
                continue
            if doc.get("FDocumentStatus") not in allowed:
                errors.append(
                    error_item(
                        f"单据“{doc['FBillNo']}”的状态（{doc.get('FDocumentStatus')}）不允许{verb}",
                        None,
                        index,
                    )
                )
                continue
            problems = act(form, doc, index)
            if problems:
                errors.extend(problems)
                continue
            successes.append({"Id": doc["FID"], "Number": doc["FBillNo"], "DIndex": index})
        status = response_status(errors, successes, MSG_VALIDATION if errors else MSG_OK)
        return {"Result": {"ResponseStatus": status}}

    def _set_status(self, form: Form, doc: dict[str, Any], status: str) -> None:
        doc["FDocumentStatus"] = status
        doc["FModifyDate"] = self._now_text()
        if status == "C":
            doc["FApproveDate"] = doc["FModifyDate"]
        self._put(form.form_id, doc)

    def _submit(self, formid: str, data: Mapping[str, Any]) -> JSON:
        def act(form: Form, doc: dict[str, Any], index: int) -> list[dict[str, Any]]:
            self._set_status(form, doc, "B")
            return []

        return self._operate(formid, data, ("A", "D", "Z"), "提交", act)

    def _audit(self, formid: str, data: Mapping[str, Any]) -> JSON:
        def act(form: Form, doc: dict[str, Any], index: int) -> list[dict[str, Any]]:
            problems = self._apply_stock(form, doc, +1, index)
            if not problems:
                self._set_status(form, doc, "C")
            return problems

        return self._operate(formid, data, ("B",), "审核", act)

    def _unaudit(self, formid: str, data: Mapping[str, Any]) -> JSON:
        def act(form: Form, doc: dict[str, Any], index: int) -> list[dict[str, Any]]:
            problems = self._apply_stock(form, doc, -1, index)
            if not problems:
                self._set_status(form, doc, "D")
            return problems

        return self._operate(formid, data, ("C",), "反审核", act)

    def _delete(self, formid: str, data: Mapping[str, Any]) -> JSON:
        def act(form: Form, doc: dict[str, Any], index: int) -> list[dict[str, Any]]:
            self.store.delete("doc:" + form.form_id, str(doc["FID"]))
            return []

        return self._operate(formid, data, ("A", "D", "Z"), "删除", act)

    def _view(self, formid: str, data: Mapping[str, Any]) -> JSON:
        form = self._form(formid)
        number = str(data.get("Number") or "")
        fid = str(data.get("Id") or "")
        for doc in self._docs(form):
            if (number and doc.get("FBillNo") == number) or (fid and str(doc["FID"]) == fid):
                shown = {
                    "Id": doc["FID"],
                    "BillNo": doc.get("FBillNo"),
                    "DocumentStatus": doc.get("FDocumentStatus"),
                    **doc,
                }
                return {"Result": {"ResponseStatus": None, "Result": shown}}
        raise KingdeeError(MSG_VALIDATION, f"单据“{number or fid}”不存在")


def _sort_key(access: FieldAccess) -> Callable[[Row], Any]:
    return lambda row: _comparable(access.kind, access.get(*row))


def _flag(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)


# ---------------------------------------------------------------------------------------------
# Serving


def serve(host: str = "127.0.0.1", port: int = 0, **options: Any) -> SimServer:
    """A started Kingdee simulator server (``.url``, ``.shutdown()``, context manager); options
    go to :class:`KingdeeSimulator`."""
    return start(KingdeeSimulator(**options), host, port)


class KingdeeTarget:
    """The Kingdee simulator as ``conveyor simulate kingdee`` runs it (the ``conveyor.simulators``
    shape): built from the shared ``simulators.Options``; Kingdee's own settings come in
    ``Options.extra`` (``session_ttl_s``, ``refuse_negative``, ``seed_orders``, ``state``,
    ``released_status``, ``orders_file``, ``master_data``, ``materials`` and any other
    :class:`KingdeeSimulator` option; numbers given as text are read as numbers)."""

    NUMBERS: ClassVar[dict[str, type]] = {
        "session_ttl_s": float,
        "seed_orders": int,
        "seed": int,
        "signature_max_skew_s": float,
    }
    FLAGS: ClassVar[tuple[str, ...]] = ("refuse_negative",)

    def __init__(self, server: SimServer) -> None:
        self.server = server
        self._served = False

    @classmethod
    def from_options(cls, options: Any) -> KingdeeTarget:
        """A bound (not yet serving) simulator from ``simulators.Options``."""
        extra: dict[str, Any] = {}
        for name, value in dict(options.extra or {}).items():
            name = str(name).replace("-", "_")
            if name in cls.NUMBERS and isinstance(value, str):
                value = cls.NUMBERS[name](value)
            elif name in cls.FLAGS and isinstance(value, str):
                value = value.strip().lower() in ("1", "true", "yes", "on")
            extra[name] = value
        faults = {
            "latency_ms": int(options.latency_ms),
            "fail_rate": float(options.fail_rate),
            "drop_answer_rate": float(options.drop_answer_rate),
            "seed": options.seed,
        }
        extra.setdefault("seed", options.seed or 0)
        simulator = KingdeeSimulator(faults=faults, **extra)
        host = str(extra.pop("host", "127.0.0.1"))
        return cls(SimServer((host, int(options.port)), simulator))

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:40123``."""
        return self.server.url

    @property
    def simulator(self) -> KingdeeSimulator:
        """The simulated data centre (tests reach its state directly)."""
        sim = self.server.simulator
        assert isinstance(sim, KingdeeSimulator)
        return sim

    def start(self) -> KingdeeTarget:
        """Serve on a background thread."""
        self._served = True
        self.server.start()
        return self

    def serve_forever(self) -> None:
        """Serve on this thread until ``stop``."""
        self._served = True
        self.server.serve_forever(poll_interval=0.2)

    def stop(self) -> None:
        """Stop serving and release the state."""
        if self._served:  # shutdown() waits for a serving loop: only ask one that ran
            self.server.shutdown()
        else:
            self.server.server_close()
            self.server.simulator.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m simulators.kingdee", description="Kingdee K/3 Cloud WebAPI simulator"
    )
    common_arguments(parser)
    parser.add_argument("--session-ttl-s", type=float, default=1800.0)
    parser.add_argument("--released-status", default="3", help="FStatus of released orders")
    args = parser.parse_args(argv)
    server = serve(
        args.host,
        args.port,
        session_ttl_s=args.session_ttl_s,
        released_status=args.released_status,
        **common_options(args),
    )
    return run_until_stopped(server)


if __name__ == "__main__":
    raise SystemExit(main())
