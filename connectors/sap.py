"""The SAP profile of the SOAP connector: goods movements through ``BAPI_GOODSMVT_CREATE``, lost
answers looked up by reference in MKPF, stock from MARD/MCHB — in either SOAP style
(``/sap/bc/soap/rfc`` UPPERCASE or SOA Manager mc-style CamelCase), chosen by the WSDL alone.

Settings (besides those of ``connectors.soap``, ``operation`` excepted):

- ``commit`` — ``session`` (default): ``BAPI_TRANSACTION_COMMIT`` with ``WAIT = 'X'`` in the same
  stateful session (the ``sap-contextid`` cookie of the connector's session), only when a material
  document came back and no ``E``/``A`` row; or ``wrapper``: ``post_function`` posts and commits
  in one call (a customer function);
- ``post_function`` — default ``BAPI_GOODSMVT_CREATE``;
- ``read_table_function`` — default ``RFC_READ_TABLE`` (lookups and snapshots);
- ``lookup_function`` — a customer function that finds a material document by reference
  (called with ``lookup_reference_param``, default ``REF_DOC_NO``; answers ``MATERIALDOCUMENT``
  and ``MATDOCUMENTYEAR``), used for lookups instead of reading MKPF;
- ``plants`` — plants whose stock ``snapshot()`` reads (default: all);
- ``page_size`` — rows per ``RFC_READ_TABLE`` page (``ROWSKIPS``/``ROWCOUNT``, default 5,000).

Documents come from the outbound mapping (``mappings/sap.yaml``) with RFC names; the connector
adds what SAP itself needs: ``REF_DOC_NO`` is the hub key's 16-character ``reference()``,
numeric material numbers are zero-padded to 18 (SAP's ALPHA conversion), batches upper-case.
``BAPIRET2`` rows are read one by one: any ``E``/``A`` row refuses the document with every
message (ID, number, text, V1–V4); ``W``/``S``/``I`` rows come back as ``notes`` in
``SendResult.detail`` with the ``reference``.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator, Mapping
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar

from connectors.soap import SoapConnector
from conveyor.connector import RawRecord, SendResult, Stream
from conveyor.errors import ConfigError, RejectedError

ERROR_TYPES = frozenset({"E", "A"})
SNAPSHOT_FIELDS = {
    "MARD": ["MATNR", "WERKS", "LGORT", "LABST", "INSME", "SPEME"],
    "MCHB": ["MATNR", "WERKS", "LGORT", "CHARG", "CLABS", "CINSM", "CSPEM"],
}
DELIMITER = "|"


def reference(key: str) -> str:
    """A short deterministic reference (16 characters, ``REF_DOC_NO``/``MKPF-XBLNR``) for the
    hub's key: ``CV`` and 14 base-32 characters of its SHA-256 (70 bits: no collision in any
    plant's lifetime of documents)."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return "CV" + base64.b32encode(digest).decode("ascii")[:14]


def document_ref(number: str, year: str, ref: str) -> str:
    """What the ledger keeps of a posting: the material document and the reference it carries
    (``4900000001/2026 XBLNR CV…``), so a person finds it in SAP either way (MB03, MB51)."""
    return f"{number}/{year} XBLNR {ref}"


def alpha(material: str) -> str:
    """SAP's ALPHA conversion of a material number: numeric ones get leading zeros to 18."""
    text = material.strip()
    return text.zfill(18) if text.isdigit() and len(text) < 18 else text


def message_text(row: Mapping[str, Any]) -> str:
    """One BAPIRET2 row as a person reads it: ``E M7 021 Deficit of … (V1 13, V2 L, …)``."""
    values = ", ".join(
        f"V{n} {row.get(f'MESSAGE_V{n}')}" for n in range(1, 5) if row.get(f"MESSAGE_V{n}")
    )
    parts = (row.get(name, "") for name in ("TYPE", "ID", "NUMBER", "MESSAGE"))
    text = " ".join(str(part) for part in parts if part)
    return f"{text.strip()} ({values})" if values else text.strip()


def _rows(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, list):
        return [row for row in value if isinstance(row, dict)]
    if isinstance(value, dict) and value:
        return [value]
    return []


class SapConnector(SoapConnector):
    """Goods movements, lookups and stock of an SAP system over SOAP (see the module docstring)."""

    kind = "sap"
    capabilities: ClassVar[frozenset[str]] = frozenset({"send", "lookup", "snapshot", "health"})
    streams: ClassVar[tuple[Stream, ...]] = ()
    config_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "required": ["wsdl"],
        "additionalProperties": False,
        "properties": {
            **SoapConnector.base_properties,
            "commit": {"enum": ["session", "wrapper"]},
            "post_function": {"type": "string"},
            "read_table_function": {"type": "string"},
            "lookup_function": {"type": "string"},
            "lookup_reference_param": {"type": "string"},
            "plants": {"type": "array", "items": {"type": "string"}},
            "page_size": {"type": "integer", "minimum": 1},
        },
    }

    def __init__(
        self, name: str, settings: Mapping[str, Any] | None = None, *, connection: str | None = None
    ) -> None:
        super().__init__(name, settings, connection=connection)
        s = self.settings
        self.commit_mode: str = s.get("commit", "session")
        self.post_function: str = s.get(
            "post_function",
            "BAPI_GOODSMVT_CREATE" if self.commit_mode == "session" else "",
        )
        if not self.post_function:
            raise ConfigError(f"system {name!r}: commit 'wrapper' needs a post_function")
        self.read_table_function: str = s.get("read_table_function", "RFC_READ_TABLE")
        self.page_size = int(s.get("page_size", 5000))
        self.lookup_function: str | None = s.get("lookup_function")
        self.lookup_reference_param: str = s.get("lookup_reference_param", "REF_DOC_NO")

    # ---- posting
    def prepare(self, document: Mapping[str, Any], key: str) -> dict[str, Any]:
        """The BAPI parameters for ``document``: the reference, padded materials, upper-case
        batches (what SAP's own dialogs do on input)."""
        items = document.get("GOODSMVT_ITEM")
        if not isinstance(items, list) or not items:
            raise RejectedError(
                f"{self.name}: the document has no GOODSMVT_ITEM table: map it with the "
                f"system's outbound mapping (mappings/sap.yaml)"
            )
        header = dict(document.get("GOODSMVT_HEADER") or {})
        header["REF_DOC_NO"] = reference(key)
        if header.get("HEADER_TXT"):
            header["HEADER_TXT"] = str(header["HEADER_TXT"])[:25]
        shaped_items = []
        for item in items:
            row = {k: v for k, v in dict(item).items() if v not in (None, "")}
            for name in ("MATERIAL", "MOVE_MAT"):
                if row.get(name):
                    row[name] = alpha(str(row[name]))
            for name in ("BATCH", "MOVE_BATCH"):
                if row.get(name):
                    row[name] = str(row[name]).upper()
            shaped_items.append(row)
        params = {
            k: v for k, v in document.items() if k not in ("GOODSMVT_ITEM", "GOODSMVT_HEADER")
        }
        return {**params, "GOODSMVT_HEADER": header, "GOODSMVT_ITEM": shaped_items}

    def send(
        self,
        document: Mapping[str, Any],
        *,
        message_type: str,
        key: str,
        idempotency_key: str | None = None,
    ) -> SendResult:
        """Post the goods movement and commit it; the material document as ``number/year``."""
        params = self.prepare(document, key)
        ref = params["GOODSMVT_HEADER"]["REF_DOC_NO"]
        self._new_session()
        try:
            answer = self.call(self.post_function, params, sends=True)
            rows = _rows(answer.get("RETURN"))
            errors = [row for row in rows if row.get("TYPE") in ERROR_TYPES]
            number = str(answer.get("MATERIALDOCUMENT") or "")
            year = str(answer.get("MATDOCUMENTYEAR") or "")
            if not number:
                headret = answer.get("GOODSMVT_HEADRET") or {}
                number, year = str(headret.get("MAT_DOC") or ""), str(headret.get("DOC_YEAR") or "")
            if errors or not number:
                texts = (
                    "; ".join(message_text(r) for r in errors) or "no material document came back"
                )
                refused = RejectedError(f"{self.name}: {self.post_function} refused {ref}: {texts}")
                raise self._with_exchange(refused, self.client.transport)
            if self.commit_mode == "session":
                self._commit(ref)
        finally:
            self._new_session()
        notes = [message_text(r) for r in rows if r.get("TYPE") not in ERROR_TYPES]
        return SendResult(
            document_ref(number, year, ref),
            detail={"reference": ref, "notes": notes, "material_document": number},
        )

    def _commit(self, ref: str) -> None:
        answer = self.call("BAPI_TRANSACTION_COMMIT", {"WAIT": "X"}, sends=True)
        errors = [r for r in _rows(answer.get("RETURN")) if r.get("TYPE") in ERROR_TYPES]
        if errors:
            texts = "; ".join(message_text(r) for r in errors)
            failed = RejectedError(f"{self.name}: BAPI_TRANSACTION_COMMIT of {ref} failed: {texts}")
            raise self._with_exchange(failed, self.client.transport)

    def _new_session(self) -> None:
        """Forget the stateful session (``sap-contextid``): each posting is its own LUW."""
        jar = self.http.session.cookies
        cookie: Any
        for cookie in list(jar):
            if cookie.name.lower().startswith("sap-contextid"):
                jar.clear(cookie.domain, cookie.path, cookie.name)

    # ---- reading tables
    def read_table(
        self,
        table: str,
        fields: list[str],
        where: list[str] | None = None,
    ) -> Iterator[dict[str, str]]:
        """Rows of ``table`` through ``RFC_READ_TABLE``, page by page (``ROWSKIPS``/
        ``ROWCOUNT``), each as a dict of the asked fields (trimmed)."""
        skip = 0
        while True:
            answer = self.call(
                self.read_table_function,
                {
                    "QUERY_TABLE": table,
                    "DELIMITER": DELIMITER,
                    "ROWSKIPS": skip,
                    "ROWCOUNT": self.page_size,
                    "OPTIONS": [{"TEXT": text} for text in (where or [])],
                    "FIELDS": [{"FIELDNAME": name} for name in fields],
                },
                sends=False,
            )
            names = [str(f.get("FIELDNAME", "")).strip() for f in _rows(answer.get("FIELDS"))]
            names = names or fields
            data = _rows(answer.get("DATA"))
            for row in data:
                cells = str(row.get("WA", "")).split(DELIMITER)
                yield {name: cell.strip() for name, cell in zip(names, cells, strict=False)}
            if len(data) < self.page_size:
                return
            skip += len(data)

    def lookup(self, *, message_type: str, key: str) -> SendResult | None:
        """The material document whose header (``MKPF-XBLNR``) carries the key's reference."""
        ref = reference(key)
        if self.lookup_function:
            answer = self.call(
                self.lookup_function, {self.lookup_reference_param: ref}, sends=False
            )
            number = str(answer.get("MATERIALDOCUMENT") or "")
            if not number:
                return None
            year = str(answer.get("MATDOCUMENTYEAR") or "")
            return SendResult(
                document_ref(number, year, ref),
                already_present=True,
                detail={"reference": ref, "material_document": number},
            )
        rows = list(self.read_table("MKPF", ["MBLNR", "MJAHR", "XBLNR"], [f"XBLNR = '{ref}'"]))
        if not rows:
            return None
        row = rows[0]
        return SendResult(
            document_ref(row["MBLNR"], row["MJAHR"], ref),
            already_present=True,
            detail={"reference": ref, "material_document": row["MBLNR"]},
        )

    def snapshot(self) -> Iterator[RawRecord]:
        """Stock per material × plant × storage location (MARD) and per batch (MCHB), in the
        shape of the MARD/MCHB exports (``CLABS`` with a decimal comma, ``MEINS`` from MARA), so
        the ``stock_snapshot`` mapping reads both."""
        plants = list(self.settings.get("plants") or [])
        where = [" OR ".join(f"WERKS = '{p}'" for p in plants)] if plants else []
        units = {
            row["MATNR"]: row.get("MEINS", "")
            for row in self.read_table("MARA", ["MATNR", "MEINS"])
        }
        today = date.today().strftime("%Y%m%d")
        batched: set[tuple[str, str, str]] = set()
        n = 0
        for row in self.read_table("MCHB", SNAPSHOT_FIELDS["MCHB"], where):
            batched.add((row["MATNR"], row["WERKS"], row["LGORT"]))
            n += 1
            yield RawRecord(
                {**row, "CLABS": _comma(row["CLABS"]), "MEINS": units.get(row["MATNR"], ""),
                 "STICHTAG": today},
                file="MCHB", line=n, message_type="stock_snapshot",
            )  # fmt: skip
        for row in self.read_table("MARD", SNAPSHOT_FIELDS["MARD"], where):
            if (row["MATNR"], row["WERKS"], row["LGORT"]) in batched:
                continue  # batch-managed: its batches were given above
            n += 1
            yield RawRecord(
                {**row, "CHARG": "", "CLABS": _comma(row["LABST"]),
                 "MEINS": units.get(row["MATNR"], ""), "STICHTAG": today},
                file="MARD", line=n, message_type="stock_snapshot",
            )  # fmt: skip

    def check(self) -> str:
        """A one-row read of MARA: proves the login, the rights and the WSDL."""
        self.call(
            self.read_table_function,
            {"QUERY_TABLE": "MARA", "ROWCOUNT": 1, "FIELDS": [{"FIELDNAME": "MATNR"}]},
            sends=False,
        )
        return f"{self.read_table_function} answered"


def _comma(value: str) -> str:
    """A quantity from RFC_READ_TABLE (``12.500``) as the exports write it (``12,500``)."""
    try:
        number = Decimal(value.strip() or "0")
    except InvalidOperation:
        return value
    return str(number).replace(".", ",")
