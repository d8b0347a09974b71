"""``sap``: a simulated SAP ERP behind its SOAP interfaces (``conveyor simulate sap``), faithful to
the facts in DIALECTS.md, for the SAP connector's tests, the demo and the ``sap_delivery``
benchmark.

It serves both SOAP styles at once, each with a WSDL that zeep reads:

    GET  /sap/bc/soap/wsdl11               RFC style (``urn:sap-com:document:sap:rfc:functions``,
                                           UPPERCASE names, response ``<FUNCTION>.Response``)
    POST /sap/bc/soap/rfc                  its endpoint
    GET  /sap/bc/srt/wsdl/zconveyor        SOA Manager mc-style (CamelCase names)
    POST /sap/bc/srt/rfc/sap/zconveyor     its endpoint

Functions: ``BAPI_GOODSMVT_CREATE`` (a material document number and BAPIRET2 rows; unknown
material, M7 021 deficit of stock with ``refuse_negative``, M7 053 with ``closed_period``),
``BAPI_TRANSACTION_COMMIT`` (commits what the same ``sap-contextid`` session posted: nothing is
visible before), ``BAPI_TRANSACTION_ROLLBACK``, ``Z_GOODSMVT_CREATE_COMMIT`` (a customer wrapper
that posts and commits in one call), ``Z_GOODSMVT_FIND_BY_REF`` (a customer lookup) and
``RFC_READ_TABLE`` on MKPF, MARD, MCHB and MARA (paged by ``ROWSKIPS``/``ROWCOUNT``).

Faults on demand (``configure`` or ``POST /_sim/config``): ``fault_next`` SOAP faults ("server
busy"), ``reject_refs`` (an ``E`` row for these references), ``warn_refs`` (a ``W`` row),
``drop_commit_refs`` (commit, then close the connection without an answer), latency and 503s of
the shared ERP server (``simulators._erp``). ``emit_idocs(folder)`` writes LOIPRO IDoc-XML files
for the released orders. Requests are parsed with lxml with entities, DTDs and the network off.
"""

from __future__ import annotations

import contextlib
import fnmatch
import itertools
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, ClassVar
from xml.sax.saxutils import escape

from lxml import etree

from simulators import Options
from simulators._erp import (
    ErpSimulator,
    Faults,
    SeedOrder,
    SimRequest,
    SimResponse,
    SimServer,
    generate_orders,
    json_response,
)

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
RFC_NS = "urn:sap-com:document:sap:rfc:functions"
MC_NS = "urn:sap-com:document:sap:soap:functions:mc-style"
MAX_REQUEST_BYTES = 8 << 20

# ---------------------------------------------------------------------------------------------
# The interface: one description, rendered in either style

BAPIRET2 = [
    "TYPE",
    "ID",
    "NUMBER",
    "MESSAGE",
    "LOG_NO",
    "LOG_MSG_NO",
    "MESSAGE_V1",
    "MESSAGE_V2",
    "MESSAGE_V3",
    "MESSAGE_V4",
    "PARAMETER",
    "ROW",
    "FIELD",
    "SYSTEM",
]
HEADER = ["PSTNG_DATE", "DOC_DATE", "REF_DOC_NO", "BILL_OF_LADING", "PR_UNAME", "HEADER_TXT"]
ITEM = [
    "MATERIAL",
    "PLANT",
    "STGE_LOC",
    "BATCH",
    "MOVE_TYPE",
    "STCK_TYPE",
    "ENTRY_QNT",
    "ENTRY_UOM",
    "ENTRY_UOM_ISO",
    "ORDERID",
    "RESERV_NO",
    "RES_ITEM",
    "MVT_IND",
    "MOVE_MAT",
    "MOVE_PLANT",
    "MOVE_STLOC",
    "MOVE_BATCH",
    "MOVE_REAS",
    "ITEM_TEXT",
]
HEADRET = ["MAT_DOC", "DOC_YEAR"]

Kind = str  # "scalar" | "struct" | "table"
Param = tuple[str, Kind, list[str]]

FUNCTIONS: dict[str, tuple[list[Param], list[Param]]] = {
    "BAPI_GOODSMVT_CREATE": (
        [
            ("GOODSMVT_CODE", "struct", ["GM_CODE"]),
            ("GOODSMVT_HEADER", "struct", HEADER),
            ("TESTRUN", "scalar", []),
            ("GOODSMVT_ITEM", "table", ITEM),
            ("RETURN", "table", BAPIRET2),
        ],
        [
            ("GOODSMVT_HEADRET", "struct", HEADRET),
            ("MATDOCUMENTYEAR", "scalar", []),
            ("MATERIALDOCUMENT", "scalar", []),
            ("GOODSMVT_ITEM", "table", ITEM),
            ("RETURN", "table", BAPIRET2),
        ],
    ),
    "BAPI_TRANSACTION_COMMIT": (
        [("WAIT", "scalar", [])],
        [("RETURN", "struct", BAPIRET2)],
    ),
    "BAPI_TRANSACTION_ROLLBACK": ([], [("RETURN", "struct", BAPIRET2)]),
    "Z_GOODSMVT_CREATE_COMMIT": (
        [
            ("GOODSMVT_CODE", "struct", ["GM_CODE"]),
            ("GOODSMVT_HEADER", "struct", HEADER),
            ("GOODSMVT_ITEM", "table", ITEM),
            ("RETURN", "table", BAPIRET2),
        ],
        [
            ("GOODSMVT_HEADRET", "struct", HEADRET),
            ("MATDOCUMENTYEAR", "scalar", []),
            ("MATERIALDOCUMENT", "scalar", []),
            ("RETURN", "table", BAPIRET2),
        ],
    ),
    "Z_GOODSMVT_FIND_BY_REF": (
        [("REF_DOC_NO", "scalar", [])],
        [("MATDOCUMENTYEAR", "scalar", []), ("MATERIALDOCUMENT", "scalar", [])],
    ),
    "RFC_READ_TABLE": (
        [
            ("DELIMITER", "scalar", []),
            ("NO_DATA", "scalar", []),
            ("QUERY_TABLE", "scalar", []),
            ("ROWCOUNT", "scalar", []),
            ("ROWSKIPS", "scalar", []),
            ("DATA", "table", ["WA"]),
            ("FIELDS", "table", ["FIELDNAME", "OFFSET", "LENGTH", "TYPE", "FIELDTEXT"]),
            ("OPTIONS", "table", ["TEXT"]),
        ],
        [
            ("DATA", "table", ["WA"]),
            ("FIELDS", "table", ["FIELDNAME", "OFFSET", "LENGTH", "TYPE", "FIELDTEXT"]),
            ("OPTIONS", "table", ["TEXT"]),
        ],
    ),
}
DECIMAL_FIELDS = {"ENTRY_QNT"}
INTEGER_FIELDS = {"ROWCOUNT", "ROWSKIPS"}

STYLES = {
    "rfc": {"ns": RFC_NS, "wsdl": "/sap/bc/soap/wsdl11", "endpoint": "/sap/bc/soap/rfc"},
    "mc": {
        "ns": MC_NS,
        "wsdl": "/sap/bc/srt/wsdl/zconveyor",
        "endpoint": "/sap/bc/srt/rfc/sap/zconveyor",
    },
}


def camel(name: str) -> str:
    """SOA Manager's mc-style name of an RFC name: ``GOODSMVT_HEADER`` → ``GoodsmvtHeader``."""
    return "".join(part[:1].upper() + part[1:].lower() for part in name.split("_"))


def upper_name(name: str) -> str:
    """The RFC name of a name in either style: ``MessageV1`` → ``MESSAGE_V1``."""
    if "_" in name or name.isupper():
        return name.upper()
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).upper()


def styled(name: str, style: str) -> str:
    """``name`` as ``style`` spells it."""
    return camel(name) if style == "mc" else name


def wsdl(style: str, base_url: str) -> bytes:
    """The WSDL 1.1 (document/literal) of every function in ``style``."""
    ns = STYLES[style]["ns"]
    endpoint = base_url + STYLES[style]["endpoint"]
    types: list[str] = []
    elements: list[str] = []
    messages: list[str] = []
    port_ops: list[str] = []
    binding_ops: list[str] = []
    seen_types: set[str] = set()

    def field_xml(name: str) -> str:
        xsd = "xsd:string"
        if name in DECIMAL_FIELDS:
            xsd = "xsd:decimal"
        elif name in INTEGER_FIELDS:
            xsd = "xsd:int"
        return f'<xsd:element name="{styled(name, style)}" type="{xsd}" minOccurs="0"/>'

    def type_of(function: str, param: Param) -> str:
        name, kind, fields = param
        if kind == "scalar":
            return "xsd:int" if name in INTEGER_FIELDS else "xsd:string"
        struct = "BAPIRET2" if fields == BAPIRET2 else f"{function}_{name}"
        struct_name = styled(struct, style)
        if struct_name not in seen_types:
            seen_types.add(struct_name)
            inner = "".join(field_xml(f) for f in fields)
            types.append(
                f'<xsd:complexType name="{struct_name}"><xsd:sequence>{inner}'
                "</xsd:sequence></xsd:complexType>"
            )
        if kind == "struct":
            return f"tns:{struct_name}"
        table_name = f"TABLE_OF_{struct_name}" if style == "rfc" else f"TableOf{struct_name}"
        if table_name not in seen_types:
            seen_types.add(table_name)
            types.append(
                f'<xsd:complexType name="{table_name}"><xsd:sequence><xsd:element name="item" '
                f'type="tns:{struct_name}" minOccurs="0" maxOccurs="unbounded"/>'
                "</xsd:sequence></xsd:complexType>"
            )
        return f"tns:{table_name}"

    for function, (inputs, outputs) in FUNCTIONS.items():
        op = styled(function, style)
        response = f"{function}.Response" if style == "rfc" else f"{op}Response"
        for element, params in ((op, inputs), (response, outputs)):
            inner = "".join(
                f'<xsd:element name="{styled(p[0], style)}" type="{type_of(function, p)}" '
                'minOccurs="0"/>'
                for p in params
            )
            elements.append(
                f'<xsd:element name="{element}"><xsd:complexType><xsd:sequence>{inner}'
                "</xsd:sequence></xsd:complexType></xsd:element>"
            )
        messages.append(
            f'<wsdl:message name="{op}.Input"><wsdl:part name="parameters" element="tns:{op}"/>'
            f'</wsdl:message><wsdl:message name="{op}.Output"><wsdl:part name="parameters" '
            f'element="tns:{response}"/></wsdl:message>'
        )
        port_ops.append(
            f'<wsdl:operation name="{op}"><wsdl:input message="tns:{op}.Input"/>'
            f'<wsdl:output message="tns:{op}.Output"/></wsdl:operation>'
        )
        binding_ops.append(
            f'<wsdl:operation name="{op}"><soap:operation soapAction="{ns}:{op}" '
            'style="document"/><wsdl:input><soap:body use="literal"/></wsdl:input>'
            '<wsdl:output><soap:body use="literal"/></wsdl:output></wsdl:operation>'
        )
    text = (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<wsdl:definitions xmlns:wsdl="http://schemas.xmlsoap.org/wsdl/" '
        'xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/" '
        f'xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:tns="{ns}" targetNamespace="{ns}">'
        f'<wsdl:types><xsd:schema targetNamespace="{ns}" elementFormDefault="unqualified" '
        f'attributeFormDefault="qualified">{"".join(types)}{"".join(elements)}</xsd:schema>'
        f"</wsdl:types>{''.join(messages)}"
        f'<wsdl:portType name="ZCONVEYOR">{"".join(port_ops)}</wsdl:portType>'
        '<wsdl:binding name="ZCONVEYOR_BINDING" type="tns:ZCONVEYOR">'
        '<soap:binding style="document" transport="http://schemas.xmlsoap.org/soap/http"/>'
        f"{''.join(binding_ops)}</wsdl:binding>"
        '<wsdl:service name="ZCONVEYOR_SERVICE"><wsdl:port name="ZCONVEYOR_PORT" '
        f'binding="tns:ZCONVEYOR_BINDING"><soap:address location="{escape(endpoint)}"/>'
        "</wsdl:port></wsdl:service></wsdl:definitions>"
    )
    return text.encode()


# ---------------------------------------------------------------------------------------------
# Safe XML


class UnsafeXml(ValueError):
    """A request with a DTD or entities, or over the size limit."""


def parse_safely(body: bytes, limit: int = MAX_REQUEST_BYTES) -> Any:
    """Parse ``body`` with entities, DTD loading and the network off; a document type
    declaration (where entities live) is refused outright."""
    if len(body) > limit:
        raise UnsafeXml(f"request over {limit} bytes")
    if re.search(rb"<!DOCTYPE", body, re.IGNORECASE):
        raise UnsafeXml("a document type declaration is not allowed")
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False
    )
    root = etree.fromstring(body, parser)
    docinfo: Any = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None:
        raise UnsafeXml("a document type declaration is not allowed")
    return root


def _local(tag: Any) -> str:
    return etree.QName(tag).localname if isinstance(tag, str) else ""


def to_value(element: Any) -> Any:
    """An element's content in RFC names: ``item`` children are a table (list), other children
    a structure (dict), no children its text."""
    children = [c for c in element if isinstance(c.tag, str)]
    if not children:
        return element.text or ""
    if all(_local(c.tag) == "item" for c in children):
        return [to_value(c) for c in children]
    return {upper_name(_local(c.tag)): to_value(c) for c in children}


def to_xml(name: str, value: Any, style: str) -> str:
    """``value`` under element ``name`` (an RFC name rendered in ``style``)."""
    tag = styled(name, style)
    if isinstance(value, list):
        inner = "".join(to_xml("item", row, style) if name != "item" else "" for row in value)
        return f"<{tag}>{inner}</{tag}>"
    if isinstance(value, dict):
        inner = "".join(to_xml(k, v, style) for k, v in value.items())
        tag = "item" if name == "item" else tag
        return f"<{tag}>{inner}</{tag}>"
    return f"<{tag}>{escape(str(value))}</{tag}>"


def envelope(inner: str) -> bytes:
    return (
        f'<?xml version="1.0" encoding="utf-8"?><soap-env:Envelope xmlns:soap-env="{SOAP_ENV}">'
        f"<soap-env:Header/><soap-env:Body>{inner}</soap-env:Body></soap-env:Envelope>"
    ).encode()


def soap_fault(text: str, code: str = "soap-env:Server") -> SimResponse:
    body = envelope(
        f"<soap-env:Fault><faultcode>{code}</faultcode><faultstring>{escape(text)}"
        "</faultstring></soap-env:Fault>"
    )
    return SimResponse(status=500, body=body, content_type="text/xml; charset=utf-8")


def ret(kind: str, msg_id: str, number: str, text: str, *values: str) -> dict[str, str]:
    """One BAPIRET2 row."""
    row = {"TYPE": kind, "ID": msg_id, "NUMBER": number, "MESSAGE": text}
    for n, value in enumerate(values[:4], start=1):
        row[f"MESSAGE_V{n}"] = value
    row["SYSTEM"] = "SIMCLNT100"
    return row


# ---------------------------------------------------------------------------------------------
# The simulator


@dataclass
class Behaviour:
    """SAP-specific behaviour (change it with ``configure`` or ``POST /_sim/config``)."""

    closed_period: bool = False
    fault_next: int = 0
    """Answer the next N function calls with a SOAP fault (server busy)."""
    fault_text: str = "Server is busy: no free work process (RESOURCE_FAILURE)"
    reject_refs: dict[str, str] = field(default_factory=dict)
    """Reference pattern → message text of an ``E`` row."""
    warn_refs: dict[str, str] = field(default_factory=dict)
    """Reference pattern → message text of a ``W`` row (the posting goes through)."""
    drop_commit_refs: list[str] = field(default_factory=list)
    """References whose commit is made and then left unanswered (once each)."""
    echo_auth: bool = False
    """Error texts repeat the request's ``Authorization`` header (as some gateways do)."""


@dataclass
class Call:
    """One function call as the simulator received it (RFC names), for tests."""

    function: str
    style: str
    context: str
    params: dict[str, Any]
    headers: dict[str, str]


class SapSimulator(ErpSimulator):
    """The simulated SAP system (see the module docstring)."""

    name = "sap"

    def __init__(
        self,
        *,
        behaviour: Behaviour | None = None,
        seed_orders: int = 0,
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.behaviour = behaviour or Behaviour()
        self.calls: list[Call] = []
        self.pending: dict[str, list[dict[str, Any]]] = {}
        """Uncommitted material documents per session (``sap-contextid``)."""
        self.documents: list[dict[str, Any]] = []
        """Committed material documents (MKPF + items)."""
        self._numbers = itertools.count(4900000001)
        self._idocs = itertools.count(1)
        self._dropped: set[str] = set()
        self.wsdl_gets = 0
        self.orders: list[SeedOrder] = generate_orders(seed_orders, self.master, seed)
        self.known_materials = self.master.column("materials", "sap_material")

    # ---- configuration
    def configure(self, **changes: Any) -> None:
        """Change the behaviour (fields of :class:`Behaviour`); ``refuse_negative`` too."""
        with self.lock:
            for name, value in changes.items():
                if name == "refuse_negative":
                    self.refuse_negative = bool(value)
                elif hasattr(self.behaviour, name):
                    setattr(self.behaviour, name, value)
                else:
                    raise ValueError(f"unknown setting {name!r}")

    def set_stock_rows(self, rows: Sequence[tuple[str, str, str, str, Decimal]]) -> None:
        """On-hand quantities: (material, plant, storage location, batch, quantity)."""
        with self.lock:
            for material, plant, sloc, batch, quantity in rows:
                self.stock.set((plant, sloc, material, batch), Decimal(quantity))

    def committed(self, reference: str | None = None) -> list[dict[str, Any]]:
        """Committed documents (with ``reference``: those whose XBLNR it is)."""
        with self.lock:
            return [d for d in self.documents if reference in (None, d["XBLNR"])]

    def uncommitted(self) -> list[dict[str, Any]]:
        """Documents posted but never committed (their session has not committed yet)."""
        with self.lock:
            return [d for docs in self.pending.values() for d in docs]

    # ---- HTTP
    def handle(self, request: SimRequest) -> SimResponse:
        # WSDLs and /_sim/config bypass the business lock; everything else goes through it.
        for style, where in STYLES.items():
            if request.method == "GET" and request.path == where["wsdl"]:
                self.wsdl_gets += 1
                return SimResponse(body=wsdl(style, request.base_url), content_type="text/xml")
        if request.path == "/_sim/config" and request.method == "POST":
            try:
                self.configure(**(request.json() or {}))
            except (ValueError, TypeError) as exc:
                return json_response({"error": str(exc)}, 400)
            return json_response({"ok": True})
        return super().handle(request)

    def handle_api(self, request: SimRequest) -> SimResponse:
        try:
            return self._soap_call(request)
        except _SoapFault as exc:
            return soap_fault(str(exc), "soap-env:Client")

    def _soap_call(self, request: SimRequest) -> SimResponse:
        style = next((s for s, w in STYLES.items() if request.path == w["endpoint"]), None)
        if style is None or request.method != "POST":
            return SimResponse(status=404, body=b"not found", content_type="text/plain")
        try:
            root = parse_safely(request.body)
        except (UnsafeXml, etree.XMLSyntaxError) as exc:
            return soap_fault(f"XML not accepted: {exc}", "soap-env:Client")
        body = next((c for c in root if _local(c.tag) == "Body"), None)
        call = next((c for c in body if isinstance(c.tag, str)), None) if body is not None else None
        if call is None:
            return soap_fault("no function in the SOAP body", "soap-env:Client")
        wanted = _local(call.tag).replace("_", "").lower()
        function = next(
            (f for f in FUNCTIONS if f.replace("_", "").lower() == wanted), _local(call.tag)
        )
        if function not in FUNCTIONS:
            return soap_fault(f"Function {function} not found", "soap-env:Client")
        params = to_value(call)
        params = params if isinstance(params, dict) else {}
        context = request.cookies().get("sap-contextid") or ""
        new_context = not context
        if new_context:
            context = uuid.uuid4().hex
        self.calls.append(Call(function, style, context, params, dict(request.headers)))
        if self.behaviour.fault_next > 0:
            self.behaviour.fault_next -= 1
            return soap_fault(self.behaviour.fault_text)
        handler = getattr(self, f"_fn_{function.lower()}")
        exports: dict[str, Any] = handler(params, context, request)
        response = f"{function}.Response" if style == "rfc" else f"{camel(function)}Response"
        ns = STYLES[style]["ns"]
        order = [p[0] for p in FUNCTIONS[function][1]]  # the WSDL's sequence order
        inner = "".join(to_xml(name, exports[name], style) for name in order if name in exports)
        answer = SimResponse(
            body=envelope(f'<n0:{response} xmlns:n0="{ns}">{inner}</n0:{response}>'),
            content_type="text/xml; charset=utf-8",
        )
        if new_context:
            answer.headers.append(("Set-Cookie", f"sap-contextid={context}; path=/"))
        return answer

    # ---- functions
    def _fn_bapi_goodsmvt_create(
        self, params: dict[str, Any], context: str, request: SimRequest
    ) -> dict[str, Any]:
        document, messages = self._check(params, request)
        if document is None:
            return {"MATERIALDOCUMENT": "", "MATDOCUMENTYEAR": "", "RETURN": messages}
        self.pending.setdefault(context, []).append(document)
        return self._exports(document, messages)

    def _fn_z_goodsmvt_create_commit(
        self, params: dict[str, Any], context: str, request: SimRequest
    ) -> dict[str, Any]:
        document, messages = self._check(params, request)
        if document is None:
            return {"MATERIALDOCUMENT": "", "MATDOCUMENTYEAR": "", "RETURN": messages}
        self._commit([document])
        return self._exports(document, messages)

    def _fn_z_goodsmvt_find_by_ref(
        self, params: dict[str, Any], context: str, request: SimRequest
    ) -> dict[str, Any]:
        """A customer lookup function: the committed document carrying a reference."""
        found = self.committed(str(params.get("REF_DOC_NO", "")))
        if not found:
            return {"MATERIALDOCUMENT": "", "MATDOCUMENTYEAR": ""}
        return {"MATERIALDOCUMENT": found[0]["MBLNR"], "MATDOCUMENTYEAR": found[0]["MJAHR"]}

    def _fn_bapi_transaction_commit(
        self, params: dict[str, Any], context: str, request: SimRequest
    ) -> dict[str, Any]:
        documents = self.pending.pop(context, [])
        self._commit(documents)
        if params.get("WAIT") != "X":
            pass  # without WAIT the update runs asynchronously; here it is always synchronous
        return {"RETURN": {}}

    def _fn_bapi_transaction_rollback(
        self, params: dict[str, Any], context: str, request: SimRequest
    ) -> dict[str, Any]:
        self.pending.pop(context, None)
        return {"RETURN": {}}

    def _commit(self, documents: list[dict[str, Any]]) -> None:
        for document in documents:
            moves = [(key, delta) for item in document["items"] for key, delta in item["moves"]]
            self.stock.apply(moves, refuse_negative=False)
            self.documents.append(document)
            reference = document["XBLNR"]
            if reference in self.behaviour.drop_commit_refs and reference not in self._dropped:
                self._dropped.add(reference)
                self.faults.drop_next += 1  # the server closes this answer's connection

    def _exports(self, document: dict[str, Any], messages: list[dict[str, str]]) -> dict[str, Any]:
        number, year = document["MBLNR"], document["MJAHR"]
        messages.append(ret("S", "M7", "060", f"Document {number} posted", number))
        return {
            "GOODSMVT_HEADRET": {"MAT_DOC": number, "DOC_YEAR": year},
            "MATDOCUMENTYEAR": year,
            "MATERIALDOCUMENT": number,
            "RETURN": messages,
        }

    def _check(
        self, params: dict[str, Any], request: SimRequest
    ) -> tuple[dict[str, Any] | None, list[dict[str, str]]]:
        """The document a posting would make, or None with the E rows that refuse it."""
        header = params.get("GOODSMVT_HEADER") or {}
        header = header if isinstance(header, dict) else {}
        code = (params.get("GOODSMVT_CODE") or {}).get("GM_CODE", "")
        items = params.get("GOODSMVT_ITEM") or []
        items = items if isinstance(items, list) else []
        reference = str(header.get("REF_DOC_NO", ""))
        errors: list[dict[str, str]] = []
        notes: list[dict[str, str]] = []
        auth = request.headers.get("authorization", "") if self.behaviour.echo_auth else ""
        for pattern, text in self.behaviour.reject_refs.items():
            if fnmatch.fnmatchcase(reference, pattern):
                errors.append(ret("E", "ZC", "001", f"{text} {auth}".strip(), reference))
        for pattern, text in self.behaviour.warn_refs.items():
            if fnmatch.fnmatchcase(reference, pattern):
                notes.append(ret("W", "M7", "139", text, reference))
        if code not in ("01", "02", "03", "04", "05", "06"):
            errors.append(ret("E", "M7", "006", f"GM code {code} not allowed", code))
        if not items:
            errors.append(ret("E", "M7", "022", "No items transferred"))
        if self.behaviour.closed_period:
            errors.append(
                ret(
                    "E",
                    "M7",
                    "053",
                    "Posting only possible in periods 2026/04 and 2026/03 in company code 1100",
                    "2026",
                    "04",
                    "2026",
                    "03",
                )
            )
        moves: list[tuple[Any, Decimal]] = []
        rows: list[dict[str, Any]] = []
        for index, item in enumerate(items, start=1):
            material = str(item.get("MATERIAL", ""))
            plant, sloc = str(item.get("PLANT", "")), str(item.get("STGE_LOC", ""))
            batch = str(item.get("BATCH", ""))
            if material not in self.known_materials:
                errors.append(
                    ret(
                        "E",
                        "M3",
                        "305",
                        f"Material {material} not maintained in plant {plant}",
                        material,
                        plant,
                    )
                )
                continue
            try:
                quantity = Decimal(str(item.get("ENTRY_QNT", "")))
            except InvalidOperation:
                errors.append(ret("E", "M7", "002", "Enter a quantity", str(index)))
                continue
            move = str(item.get("MOVE_TYPE", ""))
            item_moves = self._moves(move, item, material, plant, sloc, batch, quantity)
            if item_moves is None:
                errors.append(ret("E", "M7", "226", f"Movement type {move} not allowed", move))
                continue
            if self.refuse_negative:
                for key, delta in item_moves:
                    have = self.stock.get(key)
                    if delta < 0 and have + delta < 0:
                        uom = str(item.get("ENTRY_UOM", ""))
                        short = -(have + delta)
                        errors.append(
                            ret(
                                "E",
                                "M7",
                                "021",
                                f"Deficit of SL Unrestricted-use {short} {uom} : "
                                f"{material} {key[0]} {key[1]}",
                                str(short),
                                uom,
                                material,
                                f"{key[0]} {key[1]}",
                            )
                        )
            moves.extend(item_moves)
            rows.append({**item, "ZEILE": f"{index:04d}", "moves": item_moves})
        if errors:
            return None, errors
        today = date.today()
        document = {
            "MBLNR": str(next(self._numbers)),
            "MJAHR": str(today.year),
            "XBLNR": reference,
            "BUDAT": str(header.get("PSTNG_DATE") or today.strftime("%Y%m%d")),
            "BKTXT": str(header.get("HEADER_TXT", "")),
            "GM_CODE": code,
            "items": rows,
        }
        return document, notes

    @staticmethod
    def _moves(
        move: str,
        item: Mapping[str, Any],
        material: str,
        plant: str,
        sloc: str,
        batch: str,
        quantity: Decimal,
    ) -> list[tuple[Any, Decimal]] | None:
        here = (plant, sloc, material, batch)
        if move in ("261", "551", "702", "201"):
            return [(here, -quantity)]
        if move in ("262", "101", "701", "202"):
            return [(here, quantity)]
        if move == "102":
            return [(here, -quantity)]
        if move == "311":
            there = (
                str(item.get("MOVE_PLANT") or plant),
                str(item.get("MOVE_STLOC", "")),
                material,
                str(item.get("MOVE_BATCH") or batch),
            )
            return [(here, -quantity), (there, quantity)]
        return None

    # ---- RFC_READ_TABLE
    TABLES: ClassVar[dict[str, list[tuple[str, int, str]]]] = {
        "MKPF": [
            ("MBLNR", 10, "C"),
            ("MJAHR", 4, "N"),
            ("XBLNR", 16, "C"),
            ("BUDAT", 8, "D"),
            ("BKTXT", 25, "C"),
        ],
        "MARD": [
            ("MATNR", 18, "C"),
            ("WERKS", 4, "C"),
            ("LGORT", 4, "C"),
            ("LABST", 17, "P"),
            ("INSME", 17, "P"),
            ("SPEME", 17, "P"),
        ],
        "MCHB": [
            ("MATNR", 18, "C"),
            ("WERKS", 4, "C"),
            ("LGORT", 4, "C"),
            ("CHARG", 10, "C"),
            ("CLABS", 17, "P"),
            ("CINSM", 17, "P"),
            ("CSPEM", 17, "P"),
        ],
        "MARA": [("MATNR", 18, "C"), ("MEINS", 3, "C"), ("MTART", 4, "C")],
    }

    def _table_rows(self, table: str) -> list[dict[str, str]]:
        if table == "MKPF":
            return [
                {k: d[k] for k in ("MBLNR", "MJAHR", "XBLNR", "BUDAT", "BKTXT")}
                for d in self.documents
            ]
        if table == "MARA":
            return [
                {
                    "MATNR": m["sap_material"],
                    "MEINS": self.master.unit_code("sap", m.get("base_uom", "")),
                    "MTART": "ROH",
                }
                for m in self.master.materials
                if m.get("sap_material")
            ]
        zero = "0.000"
        per_location: dict[tuple[str, str, str], Decimal] = {}
        batches: list[dict[str, str]] = []
        for (plant, sloc, material, batch), quantity in self.stock.rows():
            key = (material, plant, sloc)
            per_location[key] = per_location.get(key, Decimal(0)) + quantity
            if batch:
                batches.append(
                    {
                        "MATNR": material,
                        "WERKS": plant,
                        "LGORT": sloc,
                        "CHARG": batch,
                        "CLABS": f"{quantity:.3f}",
                        "CINSM": zero,
                        "CSPEM": zero,
                    }
                )
        if table == "MCHB":
            return batches
        return [
            {"MATNR": m, "WERKS": p, "LGORT": s, "LABST": f"{q:.3f}", "INSME": zero, "SPEME": zero}
            for (m, p, s), q in sorted(per_location.items())
        ]

    def _fn_rfc_read_table(
        self, params: dict[str, Any], context: str, request: SimRequest
    ) -> dict[str, Any]:
        table = str(params.get("QUERY_TABLE", "")).upper()
        if table not in self.TABLES:
            raise _SoapFault(f"TABLE_NOT_AVAILABLE: {table}")
        layout = {name: (length, kind) for name, length, kind in self.TABLES[table]}
        wanted = [
            str(f.get("FIELDNAME", "")).upper()
            for f in (params.get("FIELDS") or [])
            if isinstance(f, dict)
        ] or list(layout)
        for name in wanted:
            if name not in layout:
                raise _SoapFault(f"FIELD_NOT_VALID: {name}")
        where = " ".join(
            str(o.get("TEXT", "")) for o in (params.get("OPTIONS") or []) if isinstance(o, dict)
        )
        conditions = re.findall(r"(\w+)\s*=\s*'((?:[^']|'')*)'", where)
        delimiter = str(params.get("DELIMITER", ""))[:1]
        rows = [
            r
            for r in self._table_rows(table)
            if all(r.get(f.upper(), "") == v.replace("''", "'") for f, v in conditions)
        ]
        skip = int(params.get("ROWSKIPS") or 0)
        count = int(params.get("ROWCOUNT") or 0)
        rows = rows[skip : skip + count] if count else rows[skip:]
        fields_out = []
        offset = 0
        for name in wanted:
            length, kind = layout[name]
            fields_out.append(
                {
                    "FIELDNAME": name,
                    "OFFSET": f"{offset:06d}",
                    "LENGTH": f"{length:06d}",
                    "TYPE": kind,
                    "FIELDTEXT": name,
                }
            )
            offset += length + len(delimiter)
        data = []
        for row in rows:
            cells = []
            for name in wanted:
                length, kind = layout[name]
                value = row.get(name, "")
                cells.append(value.rjust(length) if kind == "P" else value.ljust(length))
            data.append({"WA": delimiter.join(cells)})
        return {"DATA": data, "FIELDS": fields_out, "OPTIONS": []}

    # ---- IDocs
    def emit_idocs(self, folder: str | Path, *, per_file: int = 1) -> list[Path]:
        """Write LOIPRO05 IDoc-XML files for the released orders into ``folder``
        (``per_file`` orders in each), as an SAP file port does; returns the files written."""
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        written: list[Path] = []
        orders = list(self.orders)
        for start_at in range(0, len(orders), per_file):
            chunk = orders[start_at : start_at + per_file]
            idocs = "".join(self.loipro(order) for order in chunk)
            path = out / f"LOIPRO_{chunk[0].number}.xml"
            tmp = path.with_suffix(".tmp")
            tmp.write_text(
                f'<?xml version="1.0" encoding="UTF-8"?><LOIPRO05>{idocs}</LOIPRO05>',
                encoding="utf-8",
            )
            tmp.replace(path)
            written.append(path)
        return written

    def loipro(self, order: SeedOrder) -> str:
        """One ``IDOC`` element (control record + order) of a released order."""
        docnum = f"{next(self._idocs):016d}"
        now = datetime.now()
        aufnr = f"{1000000 + order.index:012d}"
        location = order.location
        plant = location.get("sap_plant", "1000")
        uom = self.master.unit_code("sap", order.product.get("base_uom", ""))
        components = []
        for position, component in enumerate(order.components, start=1):
            part = component.material
            components.append(
                '<E1RESBL SEGMENT="1">'
                f"<RSPOS>{position:04d}</RSPOS><MATNR>{part['sap_material']}</MATNR>"
                f"<WERKS>{plant}</WERKS><LGORT>{location.get('sap_storage_location', '')}</LGORT>"
                f"<BDMNG>{component.quantity:.3f}</BDMNG>"
                f"<MEINS>{self.master.unit_code('sap', part.get('base_uom', ''))}</MEINS>"
                "</E1RESBL>"
            )
        return (
            '<IDOC BEGIN="1"><EDI_DC40 SEGMENT="1"><TABNAM>EDI_DC40</TABNAM>'
            f"<DOCNUM>{docnum}</DOCNUM><DIRECT>1</DIRECT><IDOCTYP>LOIPRO05</IDOCTYP>"
            "<MESTYP>LOIPRO</MESTYP><SNDPOR>SAPSIM</SNDPOR><SNDPRT>LS</SNDPRT>"
            f"<SNDPRN>SIMCLNT100</SNDPRN><CREDAT>{now:%Y%m%d}</CREDAT>"
            f"<CRETIM>{now:%H%M%S}</CRETIM></EDI_DC40>"
            f'<E1AFKOL SEGMENT="1"><AUFNR>{aufnr}</AUFNR><AUART>PP01</AUART>'
            f"<WERKS>{plant}</WERKS><MATNR>{order.product['sap_material']}</MATNR>"
            f"<GAMNG>{order.quantity:.3f}</GAMNG><GMEIN>{uom}</GMEIN>"
            f"<GSTRS>{order.start:%Y%m%d}</GSTRS><GSUZS>{order.start:%H%M%S}</GSUZS>"
            f"<GLTRS>{order.finish:%Y%m%d}</GLTRS><GLUZS>{order.finish:%H%M%S}</GLUZS>"
            '<E1JSTKL SEGMENT="1"><STAT>I0002</STAT></E1JSTKL>'
            f'<E1AFPOL SEGMENT="1"><POSNR>0001</POSNR>'
            f"<LGORT>{location.get('sap_storage_location', '')}</LGORT></E1AFPOL>"
            '<E1AFFLL SEGMENT="1"><APLZL>00000001</APLZL><E1AFVOL SEGMENT="1">'
            f"<VORNR>0010</VORNR><LTXA1>Production</LTXA1>{''.join(components)}"
            "</E1AFVOL></E1AFFLL></E1AFKOL></IDOC>"
        )

    # ---- what the shared /_sim/* endpoints show
    def documents_view(self, query: Mapping[str, str]) -> Any:
        return {
            "committed": [{k: v for k, v in d.items() if k != "items"} for d in self.documents],
            "uncommitted": len(self.uncommitted()),
        }

    def orders_view(self) -> Any:
        return [
            {"number": o.number, "material": o.product.get("sap_material")} for o in self.orders
        ]

    def upsert_orders(self, orders: list[Any]) -> Any:
        raise ValueError("orders come from seed_orders")

    # ---- running
    @classmethod
    def from_options(cls, options: Options) -> SapServer:
        """A server from the shared simulator options; SAP's own in ``options.extra``:
        ``refuse_negative``, ``closed_period``, ``seed_orders``, ``idoc_out`` (a folder for
        LOIPRO IDoc-XML files), ``state`` (SQLite file)."""
        extra = dict(options.extra)
        simulator = cls(
            behaviour=Behaviour(closed_period=bool(extra.get("closed_period", False))),
            seed_orders=int(extra.get("seed_orders", 0)),
            seed=int(options.seed or 0),
            state=extra.get("state"),
            refuse_negative=bool(extra.get("refuse_negative", False)),
            faults=Faults(
                latency_ms=int(options.latency_ms),
                fail_rate=options.fail_rate,
                drop_answer_rate=options.drop_answer_rate,
                seed=options.seed,
            ),
        )
        for pattern in options.reject_keys:
            simulator.behaviour.reject_refs[pattern] = "Document refused"
        simulator.behaviour.echo_auth = options.echo_headers
        server = SapServer(("127.0.0.1", options.port), simulator)
        if extra.get("idoc_out"):
            simulator.emit_idocs(str(extra["idoc_out"]))
        return server


class _SoapFault(Exception):
    """Raised inside a function: answered as a SOAP fault."""


class SapServer(SimServer):
    """The SAP simulator's server: ``url``, ``start()``, ``serve_forever()``, ``stop()``."""

    simulator: SapSimulator
    _serving = False

    def serve_forever(self, poll_interval: float = 0.2) -> None:
        """Serve on this thread until ``stop``."""
        self._serving = True
        super().serve_forever(poll_interval)

    def start(self) -> SapServer:
        """Serve on a background thread."""
        self._serving = True  # a stop() right after start() must still end the loop
        super().start()
        return self

    def stop(self) -> None:
        """Stop serving (a server never started is just closed) and close the state."""
        if self._serving:
            with contextlib.suppress(OSError):
                self.shutdown()
        else:
            self.server_close()
            self.simulator.close()


def serve(host: str = "127.0.0.1", port: int = 0, **kwargs: Any) -> SapServer:
    """Start a SAP simulator in a background thread (tests, the demo, benchmarks)."""
    server = SapServer((host, port), SapSimulator(**kwargs))
    server.start()
    return server
