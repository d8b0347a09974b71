"""Yonyou simulators, to the facts in DIALECTS.md: the **U8 OpenAPI** gateway (on-premises U8) and
the **YonBIP / YonSuite open API** — one module, two modes (``serve(mode="u8" | "yonbip")``).

U8 (:class:`U8Simulator`): ``GET /system/token``, ``GET /system/tradeid`` (one fresh trade id per
write; a reused one is refused), ``POST /api/<resource>/<operation>?from_account&to_account&app_key
&token&tradeid[&sync=1]`` for ``materialout/add``, ``productin/add``, ``transvouch/add`` (body
wrapped in the resource name; without ``sync=1`` the answer is a result URL to poll), and
``GET /api/currentstock/batch_get`` paged by ``page_index``/``rows_per_page``, and
``GET /api/<resource>/get?id=<voucher code>`` (one voucher). Answers carry ``errcode``/``errmsg``.

YonBIP (:class:`YonBIPSimulator`): ``getAccessToken`` on both paths with the HMAC signature
checked by :func:`connectors.yonyou_auth.access_token_signature`; business calls under
``/yonbip/...?access_token=`` answering ``{"code", "message", "data"}``: production orders
(``productionorder/list`` paged, ``detail``), saves of material out / product in / transfer on
configurable paths with ``resubmitCheckKey`` (≤ 32 characters, a repeat refused), and
``QueryCurrentStocksByCondition``.

Error codes and texts not given by DIALECTS.md are this simulator's own wording.

Run: ``python -m simulators.yonyou --mode u8|yonbip --port P [...]``, or
``conveyor simulate yonyou-u8`` / ``conveyor simulate yonbip`` (:class:`U8Server`,
:class:`YonBIPServer`: the shared options, and the simulator's own through ``Options.extra``).
"""

from __future__ import annotations

import argparse
import hmac
import inspect
import json
import math
import socketserver
import threading
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from connectors.yonyou_auth import access_token_signature
from simulators import Options
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

# ---------------------------------------------------------------------------------------------
# U8 OpenAPI

U8_OK = "0"
U8_BAD_APP = "20001"
U8_BAD_TOKEN = "20002"  # noqa: S105 - an error code, not a secret
U8_BAD_ACCOUNT = "20003"
U8_BAD_TRADEID = "30001"
U8_TRADEID_USED = "30002"
U8_INVALID = "40001"
U8_DUPLICATE_CODE = "40002"
U8_SHORT_STOCK = "40003"
U8_NOT_FOUND = "40400"

U8_WRITES = {("materialout", "add"), ("productin", "add"), ("transvouch", "add")}


class _U8Error(Exception):
    def __init__(self, errcode: str, errmsg: str) -> None:
        super().__init__(errmsg)
        self.errcode = errcode
        self.errmsg = errmsg


def _u8(errcode: str, errmsg: str = "", **more: Any) -> SimResponse:
    return json_response({"errcode": errcode, "errmsg": errmsg, **more})


class U8Simulator(ErpSimulator):
    """A U8 OpenAPI gateway in front of one U8 account (``to_account``)."""

    name = "yonyou-u8"

    def __init__(
        self,
        *,
        from_account: str = "conveyor",
        to_account: str = "001",
        app_key: str = "opa-conveyor",
        app_secret: str = "u8-secret",  # noqa: S107 - the simulator's demo credential
        token_ttl_s: float = 7200.0,
        async_delay_s: float = 0.0,
        ping_after_s: int = 1,
        rows_per_page_max: int = 100,
        seed_orders: int = 0,
        seed: int = 0,
        orders_file: str | Path | None = None,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self.from_account = from_account
        self.to_account = to_account
        self.app_key = app_key
        self.app_secret = app_secret
        self.token_ttl_s = token_ttl_s
        self.async_delay_s = async_delay_s
        self.ping_after_s = ping_after_s
        self.rows_per_page_max = rows_per_page_max
        self.tokens: dict[str, float] = {}
        self.materials = self.master.column("materials", "yonyou_code")
        self.warehouses = self.master.column("locations", "yonyou_warehouse")
        # U8's production orders are not part of the OpenAPI calls the hub uses: seeding options
        # are accepted for a uniform command line and ignored.
        del seed_orders, seed, orders_file

    # -- views -------------------------------------------------------------------------------

    def documents_view(self, query: Mapping[str, str]) -> JSON:
        wanted = query.get("resource")
        return {
            resource: list(self.store.all("u8:" + resource).values())
            for resource, _ in sorted(U8_WRITES)
            if wanted is None or wanted == resource
        }

    def orders_view(self) -> JSON:
        return []

    def upsert_orders(self, orders: list[Any]) -> JSON:
        raise ValueError("the U8 simulator holds no production orders")

    # -- HTTP --------------------------------------------------------------------------------

    def handle_api(self, request: SimRequest) -> SimResponse:
        query = request.query
        if request.path == "/system/token":
            return self._token(query)
        try:
            if request.path == "/system/tradeid":
                self._check_token(query)
                trade_id = uuid.uuid4().hex
                self.store.put("u8:trade", trade_id, {"used": False})
                return _u8(U8_OK, trade={"id": trade_id})
            if request.path == "/api/result":
                return self._result(request)
            parts = request.path.strip("/").split("/")
            if len(parts) != 3 or parts[0] != "api":
                return SimResponse(404, b"Not Found", "text/plain")
            resource, operation = parts[1], parts[2]
            self._check_token(query)
            if query.get("to_account", self.to_account) != self.to_account:
                raise _U8Error(U8_BAD_ACCOUNT, f"目标账套[{query.get('to_account')}]不存在")
            if (resource, operation) == ("currentstock", "batch_get"):
                return self._current_stock(query)
            if operation == "get" and (resource, "add") in U8_WRITES:
                return self._get(resource, query.get("id", ""))
            if (resource, operation) not in U8_WRITES:
                raise _U8Error(U8_NOT_FOUND, f"不支持的接口：{resource}/{operation}")
            self._use_tradeid(query.get("tradeid", ""))
            answer = self._write(resource, request, query.get("tradeid", ""))
        except _U8Error as error:
            return _u8(error.errcode, error.errmsg)
        trade_id = query.get("tradeid", "")
        if query.get("sync") == "1":
            return json_response(answer)
        # Asynchronous: committed now, the answer waits at a result URL.
        self.store.put(
            "u8:result", trade_id, {"answer": answer, "ready_at": self.now() + self.async_delay_s}
        )
        return json_response(self._pending(request.base_url, trade_id))

    def _pending(self, base_url: str, trade_id: str) -> dict[str, Any]:
        url = f"{base_url}/api/result?" + urlencode(
            {"from_account": self.from_account, "app_key": self.app_key, "tradeid": trade_id}
        )
        return {
            "errcode": U8_OK,
            "errmsg": "",
            "tradeid": trade_id,
            "ping_after": self.ping_after_s,
            "url": url,
        }

    def _result(self, request: SimRequest) -> SimResponse:
        trade_id = request.query.get("tradeid", "")
        stored = self.store.get("u8:result", trade_id)
        if stored is None:
            raise _U8Error(U8_BAD_TRADEID, f"tradeid({trade_id})没有可查询的结果")
        if float(stored["ready_at"]) > self.now():
            return json_response(self._pending(request.base_url, trade_id))
        return json_response(stored["answer"])

    def _token(self, query: Mapping[str, str]) -> SimResponse:
        if query.get("from_account") != self.from_account:
            return _u8(U8_BAD_ACCOUNT, f"from_account[{query.get('from_account')}]未注册")
        if query.get("app_key") != self.app_key or not hmac.compare_digest(
            query.get("app_secret", ""), self.app_secret
        ):
            return _u8(U8_BAD_APP, "app_key或app_secret不正确")
        token = uuid.uuid4().hex
        self.tokens[token] = self.now() + self.token_ttl_s
        return _u8(U8_OK, token={"id": token, "expiresIn": int(self.token_ttl_s)})

    def _check_token(self, query: Mapping[str, str]) -> None:
        if query.get("from_account") != self.from_account:
            raise _U8Error(U8_BAD_ACCOUNT, f"from_account[{query.get('from_account')}]未注册")
        if query.get("app_key") != self.app_key:
            raise _U8Error(U8_BAD_APP, "app_key不正确")
        token = query.get("token", "")
        expires = self.tokens.get(token)
        if expires is None:
            raise _U8Error(U8_BAD_TOKEN, "token无效，请重新获取token")
        if expires < self.now():
            self.tokens.pop(token, None)
            raise _U8Error(U8_BAD_TOKEN, "token已过期，请重新获取token")

    def _use_tradeid(self, trade_id: str) -> None:
        trade = self.store.get("u8:trade", trade_id) if trade_id else None
        if trade is None:
            raise _U8Error(U8_BAD_TRADEID, f"tradeid({trade_id})无效，请先调用/system/tradeid获取")
        if trade["used"]:
            raise _U8Error(
                U8_TRADEID_USED,
                f"tradeid({trade_id})已被使用，同一tradeid不能重复提交，请重新获取tradeid",
            )
        self.store.put("u8:trade", trade_id, {"used": True})

    # -- vouchers ----------------------------------------------------------------------------

    def _write(self, resource: str, request: SimRequest, trade_id: str) -> dict[str, Any]:
        try:
            body = request.json()
        except ValueError as exc:
            raise _U8Error(U8_INVALID, f"请求内容不是合法的JSON：{exc}") from exc
        if not isinstance(body, Mapping) or not isinstance(body.get(resource), Mapping):
            raise _U8Error(U8_INVALID, f"请求内容必须包在“{resource}”节点中")
        voucher = body[resource]
        header = voucher.get("header") if isinstance(voucher.get("header"), Mapping) else voucher
        lines = voucher.get("body", voucher.get("entry"))
        if not isinstance(lines, list) or not lines:
            raise _U8Error(U8_INVALID, "表体(entry)不能为空")
        code = str(header.get("code") or "")
        if code and any(
            doc["header"].get("code") == code for doc in self.store.all("u8:" + resource).values()
        ):
            raise _U8Error(U8_DUPLICATE_CODE, f"单据号[{code}]重复")
        moves = self._moves(resource, header, lines)
        try:
            self.stock.apply(moves, self.refuse_negative)
        except NegativeStock as short:
            _, warehouse, material, batch = short.key
            raise _U8Error(
                U8_SHORT_STOCK,
                f"存货[{material}]在仓库[{warehouse}]批号[{batch}]的现存量不足"
                f"（现存量{short.available}，本次出库{short.wanted}），不能出库",
            ) from short
        voucher_id = str(self.numbering.next_value("u8:id", 1000000001))
        code = code or self.numbering.number(
            {"materialout": "CLCK", "productin": "CPRK"}.get(resource, "DB")
        )
        saved = {
            "id": voucher_id,
            "tradeid": trade_id,
            "header": {**dict(header), "code": code},
            "body": [dict(line) for line in lines],
        }
        self.store.put("u8:" + resource, voucher_id, saved)
        return {"errcode": U8_OK, "errmsg": "", "id": voucher_id, "tradeid": trade_id, "code": code}

    def _get(self, resource: str, code: str) -> SimResponse:
        """``GET /api/<resource>/get?id=<voucher code>``: one voucher, header and body."""
        for saved in self.store.all("u8:" + resource).values():
            if code and saved["header"].get("code") == code:
                voucher = {**saved["header"], "id": saved["id"], "entry": saved["body"]}
                return json_response({"errcode": U8_OK, "errmsg": "", resource: voucher})
        raise _U8Error(U8_NOT_FOUND, f"单据[{code}]不存在")

    def _warehouse(self, header: Mapping[str, Any], name: str) -> str:
        code = str(header.get(name) or "")
        if not code:
            raise _U8Error(U8_INVALID, f"表头{name}不能为空")
        if code not in self.warehouses:
            raise _U8Error(U8_INVALID, f"仓库编码[{code}]不存在")
        return code

    def _moves(
        self, resource: str, header: Mapping[str, Any], lines: Sequence[Any]
    ) -> list[tuple[StockKey, Decimal]]:
        account = self.to_account
        if resource == "transvouch":
            source, target = self._warehouse(header, "owhcode"), self._warehouse(header, "iwhcode")
        else:
            source = target = self._warehouse(header, "warehousecode")
        moves: list[tuple[StockKey, Decimal]] = []
        for row, line in enumerate(lines, start=1):
            if not isinstance(line, Mapping):
                raise _U8Error(U8_INVALID, f"表体第{row}行格式错误")
            material = str(line.get("inventorycode") or "")
            if material not in self.materials:
                raise _U8Error(U8_INVALID, f"表体第{row}行：存货编码[{material}]不存在")
            quantity = to_decimal(line.get("quantity"))
            if quantity is None or quantity == 0:
                raise _U8Error(U8_INVALID, f"表体第{row}行：数量[{line.get('quantity')}]不合法")
            batch = str(line.get("serial") or line.get("batch") or "")
            if resource == "materialout":
                moves.append(((account, source, material, batch), -quantity))
            elif resource == "productin":
                moves.append(((account, target, material, batch), quantity))
            else:
                moves.append(((account, source, material, batch), -quantity))
                moves.append(((account, target, material, batch), quantity))
        return moves

    def _current_stock(self, query: Mapping[str, str]) -> SimResponse:
        try:
            page_index = max(1, int(query.get("page_index") or 1))
            rows_per_page = int(query.get("rows_per_page") or 20)
        except ValueError as exc:
            raise _U8Error(U8_INVALID, f"分页参数不合法：{exc}") from exc
        rows_per_page = max(1, min(rows_per_page, self.rows_per_page_max))
        rows = [
            {
                "whcode": warehouse,
                "invcode": material,
                "batch": batch,
                "qty": quantity,
                "availqty": quantity,
            }
            for (account, warehouse, material, batch), quantity in self.stock.rows()
            if account == self.to_account
            and all(
                not query.get(name) or query[name] == value
                for name, value in (("whcode", warehouse), ("invcode", material), ("batch", batch))
            )
        ]
        begin = (page_index - 1) * rows_per_page
        return _u8(
            U8_OK,
            page_index=page_index,
            rows_per_page=rows_per_page,
            row_count=len(rows),
            page_count=math.ceil(len(rows) / rows_per_page),
            currentstock=rows[begin : begin + rows_per_page],
        )


# ---------------------------------------------------------------------------------------------
# YonBIP open API

BIP_OK = "200"
BIP_TOKEN_OK = "00000"  # noqa: S105 - an answer code
BIP_ERROR = "999"
BIP_NOT_FOUND = "1002"
BIP_BAD_TOKEN = "310036"  # noqa: S105 - an error code
BIP_BAD_APP = "10001"
BIP_BAD_SIGNATURE = "10002"
BIP_STALE = "10003"
RESUBMIT_KEY_MAX = 32

TOKEN_PATHS = (
    "/iuap-api-auth/open-auth/selfAppAuth/getAccessToken",
    "/iuap-api-auth/open-auth/selfAppAuth/base/v1/getAccessToken",
)
DEFAULT_SAVE_PATHS = {
    "materialout": "/yonbip/scm/materialout/single/save",
    "productin": "/yonbip/scm/storeprorecord/single/save",
    "transfer": "/yonbip/scm/storetransfer/save",
}
# Where each document carries its lines (the detail collection of the save body).
LINE_KEYS = {"materialout": "materOuts", "productin": "storeProRecords", "transfer": "details"}
NUMBER_PREFIXES = {"materialout": "CLCK", "productin": "CPRK", "transfer": "DBD"}
LIST_OPS = ("eq", "neq", "gt", "egt", "lt", "elt", "between", "in")


class _BipError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _bip(data: Any = None, code: str = BIP_OK, message: str = "操作成功") -> SimResponse:
    return json_response({"code": code, "message": message, "data": data})


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S")


class YonBIPSimulator(ErpSimulator):
    """A YonBIP tenant: one self-built app (appKey/appSecret), production orders, three kinds of
    stock document and current stock."""

    name = "yonbip"

    def __init__(
        self,
        *,
        app_key: str = "conveyor-app-key",
        app_secret: str = "conveyor-app-secret",  # noqa: S107 - the simulator's demo credential
        token_ttl_s: int = 7200,
        signature_max_skew_s: float | None = 900.0,
        org: str = "1000",
        released_status: str = "1",
        save_paths: Mapping[str, str] | None = None,
        max_page_size: int = 500,
        seed_orders: int = 0,
        seed: int = 0,
        orders_file: str | Path | None = None,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self.app_key = app_key
        self.app_secret = app_secret
        self.token_ttl_s = token_ttl_s
        self.signature_max_skew_s = signature_max_skew_s
        self.org = org
        self.released_status = released_status
        self.save_paths = {**DEFAULT_SAVE_PATHS, **dict(save_paths or {})}
        self.max_page_size = max_page_size
        self.tokens: dict[str, float] = {}
        self.materials = self.master.column("materials", "yonyou_code")
        self.warehouses = self.master.column("locations", "yonyou_warehouse")
        self._names = {
            row["yonyou_code"]: row.get("description", "")
            for row in self.master.materials
            if row.get("yonyou_code")
        }
        if seed_orders and not self.store.all("bip:order"):
            self.seed_orders(generate_orders(seed_orders, self.master, seed))
        if orders_file is not None:
            self.upsert_orders(list(load_json_file(orders_file)))

    # -- orders ------------------------------------------------------------------------------

    def _unit(self, material: Mapping[str, str]) -> str:
        return self.master.unit_code("yonyou", material.get("base_uom", ""))

    def seed_orders(self, orders: Sequence[SeedOrder]) -> None:
        """Released production orders with their components, from neutral generated orders."""
        dressed = []
        for order in orders:
            warehouse = order.location.get("yonyou_warehouse", "")
            dressed.append(
                {
                    "code": f"SCDD{order.number}",
                    "vouchdate": _stamp(order.start.replace(hour=0)),
                    "orderProduct": [
                        {
                            "lineNo": 10,
                            "productCode": order.product.get("yonyou_code", ""),
                            "quantity": order.quantity,
                            "mainUnitCode": self._unit(order.product),
                            "startDate": _stamp(order.start),
                            "finishDate": _stamp(order.finish),
                            "warehouseCode": warehouse,
                            "orderMaterial": [
                                {
                                    "lineNo": 10 * seq,
                                    "productCode": part.material.get("yonyou_code", ""),
                                    "quantity": part.quantity,
                                    "unitCode": self._unit(part.material),
                                    "warehouseCode": warehouse,
                                }
                                for seq, part in enumerate(order.components, start=1)
                            ],
                        }
                    ],
                }
            )
        self.upsert_orders(dressed)

    def upsert_orders(self, orders: list[Any]) -> JSON:
        """Release or change orders (keyed by ``code``); every change moves ``pubts`` forward."""
        existing = {doc["code"]: doc for doc in self.store.all("bip:order").values()}
        answered = []
        with self.store.batch():
            for given in orders:
                if not isinstance(given, Mapping):
                    raise ValueError(f"an order must be a JSON object, got {given!r}")
                current = existing.get(str(given.get("code", "")))
                if current is None:
                    order_id = str(self.numbering.next_value("bip:id", 2000000000000001))
                    doc: dict[str, Any] = {
                        "id": order_id,
                        "code": str(given.get("code") or self.numbering.number("SCDD")),
                        "orgId": self.org,
                        "orgCode": self.org,
                        "transTypeCode": "PO01",
                        "status": self.released_status,
                        "vouchdate": _stamp(self.modify_clock.now()),
                    }
                else:
                    doc = dict(current)
                doc.update({k: v for k, v in given.items() if k not in ("id", "orderProduct")})
                if "orderProduct" in given:
                    doc["orderProduct"] = self._products(
                        current.get("orderProduct", []) if current else [], given["orderProduct"]
                    )
                doc.setdefault("orderProduct", [])
                doc["pubts"] = _stamp(self.modify_clock.now())
                self.store.put("bip:order", doc["id"], doc)
                existing[doc["code"]] = doc
                answered.append({"id": doc["id"], "code": doc["code"], "pubts": doc["pubts"]})
        return answered

    def _products(self, old: Sequence[Any], new: Sequence[Any]) -> list[dict[str, Any]]:
        by_line = {int(p.get("lineNo", 0)): p for p in old}
        products = []
        for index, given in enumerate(new, start=1):
            line_no = int(given.get("lineNo") or index * 10)
            product = {**by_line.get(line_no, {}), **given, "lineNo": line_no}
            product.setdefault("id", str(self.numbering.next_value("bip:id", 2000000000000001)))
            product["productName"] = self._names.get(str(product.get("productCode")), "")
            materials = []
            for seq, part in enumerate(product.get("orderMaterial") or [], start=1):
                material = {"lineNo": seq * 10, **part}
                material.setdefault(
                    "id", str(self.numbering.next_value("bip:id", 2000000000000001))
                )
                material["productName"] = self._names.get(str(material.get("productCode")), "")
                materials.append(material)
            product["orderMaterial"] = materials
            products.append(product)
        return products

    def _orders(self) -> list[dict[str, Any]]:
        return sorted(self.store.all("bip:order").values(), key=lambda doc: int(doc["id"]))

    def orders_view(self) -> JSON:
        return self._orders()

    def documents_view(self, query: Mapping[str, str]) -> JSON:
        wanted = query.get("kind")
        return {
            kind: list(self.store.all("bip:" + kind).values())
            for kind in DEFAULT_SAVE_PATHS
            if wanted is None or wanted == kind
        }

    # -- HTTP --------------------------------------------------------------------------------

    def handle_api(self, request: SimRequest) -> SimResponse:
        path = request.path
        if any(path.endswith(token_path) for token_path in TOKEN_PATHS):
            return self._access_token(request.query)
        marker = path.find("/yonbip/")
        if marker < 0:
            return SimResponse(404, b"Not Found", "text/plain")
        path = path[marker:]
        try:
            self._check_token(request.query.get("access_token", ""))
            if path == "/yonbip/mfg/productionorder/list" and request.method == "POST":
                return self._order_list(self._body(request))
            if path == "/yonbip/mfg/productionorder/detail":
                return self._order_detail(request.query.get("id", ""))
            if path == "/yonbip/scm/stock/QueryCurrentStocksByCondition":
                return self._current_stock(self._body(request))
            for kind, save_path in self.save_paths.items():
                if path == save_path and request.method == "POST":
                    return self._save(kind, self._body(request))
        except _BipError as error:
            return _bip(None, error.code, error.message)
        return _bip(None, "404", f"API不存在：{path}")

    @staticmethod
    def _body(request: SimRequest) -> dict[str, Any]:
        try:
            body = request.json()
        except ValueError as exc:
            raise _BipError(BIP_ERROR, f"请求体不是合法的JSON：{exc}") from exc
        return dict(body) if isinstance(body, Mapping) else {}

    def _access_token(self, query: Mapping[str, str]) -> SimResponse:
        app_key = query.get("appKey", "")
        timestamp = query.get("timestamp", "")
        if app_key != self.app_key:
            return json_response({"code": BIP_BAD_APP, "message": "appKey不存在或应用未启用"})
        expected = access_token_signature(self.app_key, self.app_secret, timestamp)
        if not hmac.compare_digest(query.get("signature", ""), expected):
            return json_response({"code": BIP_BAD_SIGNATURE, "message": "签名校验失败"})
        if self.signature_max_skew_s is not None:
            try:
                skew = abs(self.now() - int(timestamp) / 1000)
            except ValueError:
                skew = math.inf
            if skew > self.signature_max_skew_s:
                return json_response({"code": BIP_STALE, "message": "时间戳已过期"})
        token = uuid.uuid4().hex
        self.tokens[token] = self.now() + self.token_ttl_s
        return json_response(
            {
                "code": BIP_TOKEN_OK,
                "message": "成功！",
                "data": {"access_token": token, "expire": self.token_ttl_s},
            }
        )

    def _check_token(self, token: str) -> None:
        expires = self.tokens.get(token)
        if expires is None or expires < self.now():
            self.tokens.pop(token, None)
            raise _BipError(BIP_BAD_TOKEN, "非法token.")

    # -- production orders -------------------------------------------------------------------

    @staticmethod
    def _list_record(order: Mapping[str, Any], product: Mapping[str, Any]) -> dict[str, Any]:
        record = {k: v for k, v in order.items() if k != "orderProduct"}
        for key, value in product.items():
            if key != "orderMaterial":
                record[f"OrderProduct_{key}"] = value
        return record

    def _order_list(self, body: Mapping[str, Any]) -> SimResponse:
        page_index = max(1, int(to_decimal(body.get("pageIndex")) or 1))
        page_size = int(to_decimal(body.get("pageSize")) or 10)
        page_size = max(1, min(page_size, self.max_page_size))
        conditions = list(body.get("simpleVOs") or [])
        for name in ("code", "status"):
            if body.get(name) not in (None, ""):
                conditions.append({"field": name, "op": "eq", "value1": body[name]})
        records = [
            self._list_record(order, product)
            for order in self._orders()
            for product in order.get("orderProduct") or [{}]
        ]
        records = [r for r in records if all(self._holds(r, c) for c in conditions)]
        begin = (page_index - 1) * page_size
        return _bip(
            {
                "pageIndex": page_index,
                "pageSize": page_size,
                "recordCount": len(records),
                "pageCount": math.ceil(len(records) / page_size),
                "recordList": records[begin : begin + page_size],
            }
        )

    @staticmethod
    def _holds(record: Mapping[str, Any], condition: Any) -> bool:
        if not isinstance(condition, Mapping) or "field" not in condition:
            raise _BipError(BIP_ERROR, f"查询条件格式错误：{condition}")
        op = str(condition.get("op", "eq"))
        if op not in LIST_OPS:
            raise _BipError(BIP_ERROR, f"不支持的查询条件op：{op}")
        value = record.get(str(condition["field"]))

        def same_kind(given: Any) -> tuple[Any, Any]:
            left, right = to_decimal(value), to_decimal(given)
            if left is not None and right is not None:
                return left, right
            return str("" if value is None else value), str(given)

        first = condition.get("value1")
        if op == "in":
            choices = first if isinstance(first, list) else str(first).split(",")
            return any(a == b for a, b in (same_kind(choice) for choice in choices))
        left, right = same_kind(first)
        if op == "between":
            upper = same_kind(condition.get("value2"))[1]
            return bool(right <= left <= upper)
        outcome = {
            "eq": left == right,
            "neq": left != right,
            "gt": left > right,
            "egt": left >= right,
            "lt": left < right,
            "elt": left <= right,
        }
        return bool(outcome[op])

    def _order_detail(self, order_id: str) -> SimResponse:
        order = self.store.get("bip:order", order_id)
        if order is None:
            raise _BipError(BIP_NOT_FOUND, f"单据不存在或已被删除（id={order_id}）")
        return _bip(order)

    # -- saves and stock ---------------------------------------------------------------------

    def _save(self, kind: str, body: Mapping[str, Any]) -> SimResponse:
        data = body.get("data")
        if not isinstance(data, Mapping):
            raise _BipError(BIP_ERROR, "请求体缺少data节点")
        key = str(data.get("resubmitCheckKey") or "")
        if len(key) > RESUBMIT_KEY_MAX:
            raise _BipError(BIP_ERROR, f"resubmitCheckKey长度不能超过{RESUBMIT_KEY_MAX}位")
        earlier = self.store.get("bip:resubmit", key) if key else None
        if earlier is not None:
            # This simulator's choice (unconfirmed for real tenants): the refusal names the
            # document the key already produced, so a client can record its number.
            return _bip(
                {"id": earlier["id"], "code": earlier["code"], "resubmitCheckKey": key},
                BIP_ERROR,
                f"重复提交：resubmitCheckKey[{key}]已被使用，请勿重复提交",
            )
        org = str(data.get("org") or "")
        if not org:
            raise _BipError(BIP_ERROR, "库存组织[org]不能为空")
        if org != self.org:
            raise _BipError(BIP_ERROR, f"库存组织[{org}]不存在")
        if not data.get("vouchdate"):
            raise _BipError(BIP_ERROR, "单据日期[vouchdate]不能为空")
        lines = data.get(LINE_KEYS[kind])
        if not isinstance(lines, list) or not lines:
            raise _BipError(BIP_ERROR, f"表体[{LINE_KEYS[kind]}]不能为空")
        moves = self._moves(kind, org, data, lines)
        try:
            self.stock.apply(moves, self.refuse_negative)
        except NegativeStock as short:
            _, warehouse, product, batch = short.key
            raise _BipError(
                BIP_ERROR,
                f"现存量不足：物料[{product}]仓库[{warehouse}]批次[{batch}]"
                f"可用量{short.available}，本次出库{short.wanted}",
            ) from short
        doc_id = str(self.numbering.next_value("bip:id", 2000000000000001))
        code = str(data.get("code") or self.numbering.number(NUMBER_PREFIXES[kind]))
        saved = {**dict(data), "id": doc_id, "code": code, "status": 0}
        self.store.put("bip:" + kind, doc_id, saved)
        if key:
            self.store.put("bip:resubmit", key, {"kind": kind, "id": doc_id, "code": code})
        return _bip({"id": doc_id, "code": code, "resubmitCheckKey": key or None})

    def _warehouse(self, holder: Mapping[str, Any], name: str) -> str:
        code = str(holder.get(name) or "")
        if not code:
            raise _BipError(BIP_ERROR, f"仓库[{name}]不能为空")
        if code not in self.warehouses:
            raise _BipError(BIP_ERROR, f"仓库[{code}]不存在")
        return code

    def _moves(
        self, kind: str, org: str, data: Mapping[str, Any], lines: Sequence[Any]
    ) -> list[tuple[StockKey, Decimal]]:
        moves: list[tuple[StockKey, Decimal]] = []
        for row, line in enumerate(lines, start=1):
            if not isinstance(line, Mapping):
                raise _BipError(BIP_ERROR, f"表体第{row}行格式错误")
            product = str(line.get("product") or "")
            if product not in self.materials:
                raise _BipError(BIP_ERROR, f"表体第{row}行：物料[{product}]不存在")
            quantity = to_decimal(line.get("qty"))
            # a red (红字) material out or product in carries a negative quantity, as in U8: a
            # return to stock / a reversed receipt; a transfer and a zero never do
            red = kind in ("materialout", "productin") and quantity is not None and quantity < 0
            if quantity is None or (quantity <= 0 and not red):
                raise _BipError(BIP_ERROR, f"表体第{row}行：数量[{line.get('qty')}]必须大于0")
            batch = str(line.get("batchno") or "")
            if kind == "transfer":
                source = self._warehouse({**data, **line}, "outwarehouse")
                target = self._warehouse({**data, **line}, "inwarehouse")
                moves.append(((org, source, product, batch), -quantity))
                moves.append(((org, target, product, batch), quantity))
            else:
                warehouse = self._warehouse({**data, **line}, "warehouse")
                sign = -1 if kind == "materialout" else 1
                moves.append(((org, warehouse, product, batch), sign * quantity))
        return moves

    def _current_stock(self, body: Mapping[str, Any]) -> SimResponse:
        filters = {name: str(body.get(name) or "") for name in ("org", "warehouse", "product")}
        batch = body.get("batchno")
        rows = []
        for (org, warehouse, product, lot), quantity in self.stock.rows():
            if any(
                wanted and wanted != value
                for wanted, value in (
                    (filters["org"], org),
                    (filters["warehouse"], warehouse),
                    (filters["product"], product),
                )
            ):
                continue
            if batch not in (None, "") and str(batch) != lot:
                continue
            rows.append(
                {
                    "org": org,
                    "warehouse": warehouse,
                    "product": product,
                    "productName": self._names.get(product, ""),
                    "batchno": lot,
                    "currentqty": quantity,
                    "availableqty": quantity,
                }
            )
        return _bip(rows)


# ---------------------------------------------------------------------------------------------
# Serving

MODES: dict[str, type[ErpSimulator]] = {"u8": U8Simulator, "yonbip": YonBIPSimulator}


def serve(
    host: str = "127.0.0.1", port: int = 0, mode: str = "yonbip", **options: Any
) -> SimServer:
    """A started Yonyou simulator server (``.url``, ``.shutdown()``, context manager) in ``mode``
    ``"u8"`` or ``"yonbip"``; options go to :class:`U8Simulator` / :class:`YonBIPSimulator`."""
    if mode not in MODES:
        raise ValueError(f"no Yonyou mode {mode!r}; choose one of {', '.join(MODES)}")
    return start(MODES[mode](**options), host, port)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m simulators.yonyou",
        description="Yonyou U8 OpenAPI / YonBIP open API simulator",
    )
    parser.add_argument("--mode", choices=sorted(MODES), default="yonbip")
    common_arguments(parser)
    parser.add_argument(
        "--token-ttl-s", "--session-ttl-s", dest="token_ttl_s", type=int, default=7200
    )
    args = parser.parse_args(argv)
    server = serve(
        args.host, args.port, args.mode, token_ttl_s=args.token_ttl_s, **common_options(args)
    )
    return run_until_stopped(server)


if __name__ == "__main__":
    raise SystemExit(main())


# ---------------------------------------------------------------------------------------------
# ``conveyor simulate yonyou-u8`` / ``conveyor simulate yonbip``

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _option_value(name: str, default: Any, value: Any) -> Any:
    """``value`` (text from ``--set KEY=VALUE``, or already typed) as the option's type, judged
    by its default."""
    if not isinstance(value, str):
        return value
    if isinstance(default, bool):
        lowered = value.strip().lower()
        if lowered not in _TRUE | _FALSE:
            raise ValueError(f"simulator option {name}: {value!r} is not true or false")
        return lowered in _TRUE
    if isinstance(default, int):
        return int(value)
    if isinstance(default, float):
        return float(value)
    if name in ("save_paths", "faults"):
        loaded = json.loads(value)
        if not isinstance(loaded, dict):
            raise ValueError(f"simulator option {name}: a JSON object is needed")
        return loaded
    return value


def simulator_options(mode: str, extra: Mapping[str, Any]) -> dict[str, Any]:
    """The simulator's own options from ``Options.extra`` (names with ``-`` or ``_``), typed;
    an unknown name is refused with the list of known ones."""
    known: dict[str, Any] = {}
    for cls in (MODES[mode], ErpSimulator):
        for parameter in inspect.signature(cls.__init__).parameters.values():
            if parameter.kind is parameter.KEYWORD_ONLY and parameter.name != "faults":
                known.setdefault(parameter.name, parameter.default)
    chosen: dict[str, Any] = {}
    for given, value in extra.items():
        name = given.replace("-", "_")
        if name not in known:
            raise ValueError(
                f"no {mode} simulator option {given!r}; known: {', '.join(sorted(known))}"
            )
        chosen[name] = _option_value(name, known[name], value)
    return chosen


class _Served:
    """A Yonyou simulator as ``conveyor simulate`` runs it: made from :class:`simulators.Options`
    (its faults; ``extra`` carries the simulator's own options), with ``url``, ``start()``,
    ``serve_forever()`` and ``stop()``."""

    mode = "yonbip"

    def __init__(self, options: Options | None = None, host: str = "127.0.0.1") -> None:
        options = options or Options()
        faults = {
            "latency_ms": int(options.latency_ms),
            "fail_rate": float(options.fail_rate),
            "drop_answer_rate": float(options.drop_answer_rate),
            "seed": options.seed,
        }
        own = simulator_options(self.mode, options.extra)
        faults.update(own.pop("faults", None) or {})
        # reject_keys and echo_headers belong to the generic HTTP target: no meaning here
        self.simulator = MODES[self.mode](faults=faults, **own)
        self._server = SimServer((host, options.port), self.simulator)
        self._serving = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def from_options(cls, options: Options) -> _Served:
        """The simulator ``conveyor simulate`` asked for."""
        return cls(options)

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:40123``."""
        return self._server.url

    def start(self) -> _Served:
        """Serve on a background thread."""
        self._serving.set()
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve on this thread until ``stop``."""
        self._serving.set()
        try:
            self._server.serve_forever(poll_interval=0.05)
        finally:
            self._serving.clear()

    def stop(self) -> None:
        """Stop serving, close the socket and the simulator's state."""
        if self._serving.is_set():  # shutdown() waits for a serving loop: only ask a running one
            self._server.stopping.set()
            socketserver.BaseServer.shutdown(self._server)
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self.simulator.close()

    def __enter__(self) -> _Served:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class YonBIPServer(_Served):
    """``conveyor simulate yonbip``: the YonBIP open API simulator."""

    mode = "yonbip"


class U8Server(_Served):
    """``conveyor simulate yonyou-u8``: the U8 OpenAPI gateway simulator."""

    mode = "u8"
