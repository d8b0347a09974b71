"""SAP production order IDocs (``LOIPRO``, as IDoc-XML from an SAP file or HTTP port) as raw
records: the document format ``loipro`` of the ``conveyor.formats`` group.

One record per order (``E1AFKOL``) of every ``IDOC`` in the file, flat in the names of the
``production_order`` mapping of ``mappings/sap.yaml``: ``DOCNUM``/``IDOCTYP``/``MESTYP`` from the
control record ``EDI_DC40``; ``AUFNR``, ``WERKS``, ``AUART``, ``MATNR`` (``MATNR_LONG`` or
``MATNR_EXTERNAL`` when the basic type has them), ``GAMNG``, ``GMEIN``, ``GSTRS``/``GLTRS``
(also as ``GSTRP``/``GLTRP`` when the IDoc has no basic dates) with their times; ``LGORT`` and
``CHARG`` of the first item ``E1AFPOL``; ``STAT`` (every ``E1JSTKL`` system status) and
``STATUS`` (the one that rules: ``I0002`` → ``REL`` …); ``RESB`` — the components ``E1RESBL``
of every operation (``RSPOS`` as ``POSNR``, ``MATNR``, ``BDMNG``, ``MEINS``, ``WERKS``,
``LGORT``, ``CHARG``, ``VORNR``, ``RGEKZ`` when present). ``LOIPRO01`` and newer basic types read
the same.

The file is parsed with entities, DTD loading and the network off, under a size limit
(``max_bytes`` setting, default 64 MiB); one with a document type declaration is refused
unread (``UnreadableFileError``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any, BinaryIO

from lxml import etree

from conveyor.connector import RawRecord
from conveyor.errors import UnreadableFileError, UnreadableRecordError

MAX_BYTES = 64 << 20
_DOCTYPE = re.compile(rb"<!DOCTYPE", re.IGNORECASE)
STATUS_RANK = [
    ("I0076", "DLFL"),
    ("I0046", "TECO"),
    ("I0045", "TECO"),
    ("I0009", "CNF"),
    ("I0010", "PCNF"),
    ("I0002", "REL"),
    ("I0001", "CRTD"),
]
"""System statuses the mapping knows, the ruling one first (a deleted order is deleted whatever
else it is; a released one that is partly confirmed is in progress)."""


def parse_safely(data: bytes, name: str) -> Any:
    """The XML root of ``data``, parsed with entities, DTDs and the network off; a document type
    declaration is refused."""
    if _DOCTYPE.search(data):  # refused before parsing: no entity is even declared
        raise UnreadableFileError(f"{name}: a document type declaration (DTD) is not allowed")
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False
    )
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        raise UnreadableFileError(f"{name}: not XML: {exc}") from None
    docinfo: Any = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None:
        raise UnreadableFileError(f"{name}: a document type declaration (DTD) is not allowed")
    return root


def _local(element: Any) -> str:
    return etree.QName(element).localname if isinstance(element.tag, str) else ""


def _fields(segment: Any) -> dict[str, str]:
    """The simple fields of a segment (children without children)."""
    return {
        _local(child): (child.text or "").strip()
        for child in segment
        if isinstance(child.tag, str) and len(child) == 0
    }


def _child(segment: Any, name: str) -> Any:
    return next((c for c in segment if _local(c) == name), None)


def _material(fields: Mapping[str, str]) -> str:
    return fields.get("MATNR_LONG") or fields.get("MATNR_EXTERNAL") or fields.get("MATNR", "")


def order_record(control: Mapping[str, str], order: Any) -> dict[str, Any]:
    """One ``E1AFKOL`` with its control record as a flat record (see the module docstring)."""
    header = _fields(order)
    record: dict[str, Any] = {
        "DOCNUM": control.get("DOCNUM", ""),
        "IDOCTYP": control.get("IDOCTYP", ""),
        "MESTYP": control.get("MESTYP", ""),
        "SNDPRN": control.get("SNDPRN", ""),
        "ERDAT": control.get("CREDAT", ""),
        **header,
        "MATNR": _material(header),
    }
    record.setdefault("GSTRP", header.get("GSTRS", ""))
    record.setdefault("GLTRP", header.get("GLTRS", ""))
    item = _child(order, "E1AFPOL")
    if item is not None:
        item_fields = _fields(item)
        record.setdefault("LGORT", item_fields.get("LGORT", ""))
        if item_fields.get("CHARG"):
            record.setdefault("CHARG", item_fields["CHARG"])
    stats = [(_fields(s).get("STAT") or "") for s in order.iter() if _local(s) == "E1JSTKL"]
    record["STAT"] = stats
    record["STATUS"] = next((text for code, text in STATUS_RANK if code in stats), "CRTD")
    components = []
    for sequence in order.iter():
        if _local(sequence) != "E1AFVOL":
            continue
        operation = _fields(sequence)
        for component in sequence:
            if _local(component) != "E1RESBL":
                continue
            c = _fields(component)
            row = {
                "POSNR": c.get("RSPOS") or c.get("POSNR", ""),
                "MATNR": _material(c),
                "BDMNG": c.get("BDMNG", ""),
                "MEINS": c.get("MEINS", ""),
                "WERKS": c.get("WERKS") or header.get("WERKS", ""),
                "LGORT": c.get("LGORT") or record.get("LGORT", ""),
                "CHARG": c.get("CHARG", ""),
                "VORNR": operation.get("VORNR", ""),
            }
            if c.get("RGEKZ"):
                row["RGEKZ"] = c["RGEKZ"]
            components.append(row)
    record["RESB"] = components
    return record


def read_loipro(stream: BinaryIO, *, name: str, settings: Mapping[str, Any]) -> Iterator[RawRecord]:
    """The ``production_order`` records of a LOIPRO IDoc-XML document (one per order)."""
    limit = int(settings.get("max_bytes", MAX_BYTES))
    data = stream.read(limit + 1)
    if len(data) > limit:
        raise UnreadableFileError(f"{name}: over {limit} bytes")
    root = parse_safely(data, name)
    idocs = [root] if _local(root) == "IDOC" else [e for e in root if _local(e) == "IDOC"]
    if not idocs:
        raise UnreadableFileError(f"{name}: no IDOC element (is it IDoc-XML?)")
    line = 0
    for idoc in idocs:
        control_segment = _child(idoc, "EDI_DC40")
        control = _fields(control_segment) if control_segment is not None else {}
        orders = [e for e in idoc if _local(e) == "E1AFKOL"]
        if not control.get("DOCNUM"):
            line += 1
            yield RawRecord(
                UnreadableRecordError(f"{name}: IDOC {line} has no EDI_DC40/DOCNUM"),
                file=name,
                line=line,
                message_type="production_order",
            )
            continue
        for order in orders:
            line += 1
            yield RawRecord(
                order_record(control, order),
                file=name,
                line=line,
                message_type="production_order",
            )
