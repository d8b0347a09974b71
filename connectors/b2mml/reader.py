"""The ``b2mml`` document format: a B2MML performance document becomes one raw record per material
actual, streamed (``iterparse``, elements cleared as they are read), so memory stays flat however
large the document.

Read: V0600 ``ProductionPerformance`` (``http://www.mesa.org/xml/B2MML-V0600``) and V07
``OperationsPerformance`` with ``OperationsType`` Production (``http://www.mesa.org/xml/B2MML``),
bare or in a ``Process…`` / ``Sync…`` verb. Each ``MaterialActual`` that is a direct child of a
segment response gives one record shaped after the XML (element names as keys, namespaces
dropped; an element met twice becomes a list), with the header it belongs to::

    {"b2mml": {"version": "V0600", "document": "ProductionPerformance", "verb": "Process"},
     "Line": 3,                      # the actual's number in the document, from 1
     "Performance": {"ID": …, "PublishedDate": …},          # the document's own simple fields
     "Response": {"ID": …, "ProductionRequestID": …},       # its production/operations response
     "SegmentResponse": {"ID": …, "ActualEndTime": …},      # the innermost segment response
     "MaterialActual": {"MaterialDefinitionID": …, "MaterialLotID": …, "Quantity": {…}, …}}

The names are the same in both versions (``Response`` is ``ProductionResponse`` or
``OperationsResponse``), so one mapping file (``mappings/mes_b2mml.yaml``) maps both, and an
integrator follows a vendor's dialect there with JMESPath, never here. ``MaterialUse`` picks the
message type (setting ``material_uses``, default below); an actual of another use, or of a V07
response whose ``OperationsType`` is not Production, is parked with the reason.

With ``xsd_dir`` set, the whole document is validated against the official schema before any of
its records is handed out (a streaming pass, same memory bound), so an invalid document is
refused whole, never half taken in.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, BinaryIO

from lxml import etree

from connectors.b2mml.xml import (
    PARSER_OPTIONS,
    V07,
    VERSIONS,
    LimitedReader,
    max_bytes,
    refuse_doctype,
    rewindable,
    schema_for,
)
from conveyor.connector import RawRecord
from conveyor.errors import UnreadableFileError, UnreadableRecordError

MATERIAL_USES: dict[str, str] = {
    "Consumed": "material_consumption",
    "Material Consumed": "material_consumption",
    "Produced": "production_output",
    "Material Produced": "production_output",
    "By-product Produced": "production_output",
    "Co-product Produced": "production_output",
    "Yield Produced": "production_output",
}
"""``MaterialUse`` → canonical message type (the system's ``material_uses`` setting replaces it)."""

PERFORMANCE_DOCUMENTS = {"ProductionPerformance", "OperationsPerformance"}
VERBS = ("Process", "Sync")
"""Verbs that carry performance to take in (``Get``/``Cancel``/… carry none)."""
_RESPONSES = {"ProductionResponse", "OperationsResponse"}
_SEGMENTS = {"SegmentResponse", "SegmentResponseChild"}


def _local(tag: Any) -> str:
    text = tag if isinstance(tag, str) else ""
    return text.rpartition("}")[2]


def _namespace(tag: str) -> str:
    return tag[1:].partition("}")[0] if tag.startswith("{") else ""


def to_dict(element: Any) -> dict[str, Any]:
    """An element's children as a dict (text for leaves; a name met twice becomes a list)."""
    out: dict[str, Any] = {}
    for child in element:
        if not isinstance(child.tag, str):  # comments and processing instructions
            continue
        name = _local(child.tag)
        value: Any = to_dict(child) if len(child) else (child.text or "").strip()
        if name in out:
            existing = out[name]
            if isinstance(existing, list):
                existing.append(value)
            else:
                out[name] = [existing, value]
        else:
            out[name] = value
    return out


def root_of(stream: BinaryIO, name: str, limit: int) -> tuple[str, str, str | None]:
    """``(namespace, document, verb)`` of the document in ``stream`` (read up to its first
    element only); refuses DOCTYPEs, other namespaces and documents that carry no performance."""
    try:
        for _event, element in etree.iterparse(
            LimitedReader(stream, limit, name), events=("start",), **PARSER_OPTIONS
        ):
            refuse_doctype(element.getroottree(), name)
            tag = element.tag
            break
        else:  # pragma: no cover - iterparse raises on an empty document
            raise UnreadableFileError(f"{name}: empty document")
    except etree.XMLSyntaxError as exc:
        raise UnreadableFileError(f"{name}: not well-formed XML: {exc}") from None
    namespace, local = _namespace(tag), _local(tag)
    if namespace not in VERSIONS:
        raise UnreadableFileError(
            f"{name}: {local} in namespace {namespace!r} is not B2MML V0600 or V07"
        )
    for verb in VERBS:
        if local.startswith(verb) and local[len(verb) :] in PERFORMANCE_DOCUMENTS:
            return namespace, local[len(verb) :], verb
    if local in PERFORMANCE_DOCUMENTS:
        return namespace, local, None
    raise UnreadableFileError(
        f"{name}: {local} is not a performance document this format reads "
        f"(ProductionPerformance V0600, OperationsPerformance V07; bare, Process or Sync)"
    )


def validate(stream: BinaryIO, schema: Any, name: str, limit: int) -> None:
    """Validate the whole document against ``schema`` in one streaming pass."""
    try:
        for _event, element in etree.iterparse(
            LimitedReader(stream, limit, name), events=("end",), schema=schema, **PARSER_OPTIONS
        ):
            # keep memory flat: the validator works on the parser's events, not on the tree
            element.clear()
            while element.getprevious() is not None:
                del element.getparent()[0]
    except etree.XMLSyntaxError as exc:
        raise UnreadableFileError(f"{name}: invalid against the B2MML schema: {exc}") from None


def read(stream: BinaryIO, *, name: str, settings: Mapping[str, Any]) -> Iterator[RawRecord]:
    """Raw records of one B2MML performance document (see the module docstring)."""
    limit = max_bytes(settings)
    source = rewindable(stream, limit, name)
    start = source.tell()
    namespace, document, verb = root_of(source, name, limit)
    compiled = schema_for(settings, namespace, document)
    if compiled is not None:
        source.seek(start)
        validate(source, compiled, name, limit)
    source.seek(start)
    uses = dict(settings.get("material_uses") or MATERIAL_USES)
    header = {"version": VERSIONS[namespace], "document": document, "verb": verb}
    yield from _records(source, name, limit, namespace, document, header, uses)


def _records(
    source: BinaryIO,
    name: str,
    limit: int,
    namespace: str,
    document: str,
    header: dict[str, Any],
    uses: Mapping[str, str],
) -> Iterator[RawRecord]:
    frames: dict[str, dict[str, Any]] = {}
    segments: list[dict[str, Any]] = []
    # kind of each open element: "performance", "response", "segment" or None
    kinds: list[str | None] = []
    line = 0
    try:
        for event, element in etree.iterparse(
            LimitedReader(source, limit, name), events=("start", "end"), **PARSER_OPTIONS
        ):
            tag = element.tag
            if not isinstance(tag, str):
                continue
            local = _local(tag)
            parent = kinds[-1] if kinds else None
            if event == "start":
                kind: str | None = None
                if local == document and _namespace(tag) == namespace:
                    kind = "performance"
                    frames["performance"] = {}
                elif parent == "performance" and local in _RESPONSES:
                    kind = "response"
                    frames["response"] = {}
                elif parent in ("response", "segment") and local in _SEGMENTS:
                    kind = "segment"
                    segments.append({})
                kinds.append(kind)
                continue
            kind = kinds.pop()
            parent = kinds[-1] if kinds else None
            if kind == "segment":
                segments.pop()
            if parent is None:
                continue
            if parent == "segment" and local == "MaterialActual":
                line += 1
                yield _record(element, name, line, header, frames, segments[-1], uses)
            elif kind is None and len(element) == 0:
                frame = segments[-1] if parent == "segment" else frames[parent]
                frame.setdefault(local, (element.text or "").strip())
            # what has been read is dropped: memory does not grow with the document
            element.clear()
            while element.getprevious() is not None:
                del element.getparent()[0]
    except etree.XMLSyntaxError as exc:
        raise UnreadableFileError(f"{name}: not well-formed XML: {exc}") from None


def _record(
    element: Any,
    name: str,
    line: int,
    header: dict[str, Any],
    frames: dict[str, dict[str, Any]],
    segment: dict[str, Any],
    uses: Mapping[str, str],
) -> RawRecord:
    actual = to_dict(element)
    response = frames.get("response", {})
    performance = frames.get("performance", {})
    data = {
        "b2mml": header,
        "Line": line,
        "Performance": dict(performance),
        "Response": dict(response),
        "SegmentResponse": dict(segment),
        "MaterialActual": actual,
    }
    if header["version"] == VERSIONS[V07]:
        operations = response.get("OperationsType") or performance.get("OperationsType")
        if operations not in (None, "", "Production"):
            return RawRecord(
                UnreadableRecordError(
                    f"OperationsType {operations!r} is not Production: not a movement this "
                    f"hub carries (B2MML line {line})",
                    rule="b2mml.operations_type",
                    text=repr(data),
                ),
                file=name,
                line=line,
            )
    use = actual.get("MaterialUse")
    message_type = uses.get(use) if isinstance(use, str) else None
    if message_type is None:
        return RawRecord(
            UnreadableRecordError(
                f"MaterialUse {use!r} maps to no message type (material_uses: "
                f"{', '.join(sorted(uses))})",
                rule="b2mml.material_use",
                text=repr(data),
            ),
            file=name,
            line=line,
        )
    return RawRecord(data, file=name, line=line, message_type=message_type)
