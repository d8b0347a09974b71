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
its records is handed out, so an invalid document is refused whole, never half taken in. A
document up to ``STREAM_ABOVE`` is parsed whole and validated in one C call; a larger one is read
twice with ``iterparse`` (a validating pass, then the records), elements cleared as they are
read, so memory stays flat whatever its size.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator, Mapping
from typing import Any, BinaryIO

from lxml import etree

from connectors.b2mml.xml import (
    PARSER_OPTIONS,
    V07,
    VERSIONS,
    LimitedReader,
    TooLarge,
    max_bytes,
    refuse_doctype,
    rewindable,
    safe_parser,
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

STREAM_ABOVE = 4 << 20
"""Documents up to this size are parsed whole and validated in one C call (several times faster
than streaming); larger ones stream in two passes (validate, then read) with flat memory."""

_DOCTYPE = re.compile(rb"\s*(?:<\?(?:[^?]|\?(?!>))*\?>\s*|<!--(?:[^-]|-(?!->))*-->\s*)*<!DOCTYPE")
"""A DOCTYPE in the prolog, told before parsing: refused with its own reason (the parse after it
would refuse an entity bomb too, but only as "amplification exceeded")."""
PROLOG_BYTES = 1 << 16
"""How far the DOCTYPE check looks (the parse checks again, wherever it is)."""

PERFORMANCE_DOCUMENTS = {"ProductionPerformance", "OperationsPerformance"}
VERBS = ("Process", "Sync")
"""Verbs that carry performance to take in (``Get``/``Cancel``/… carry none)."""
_RESPONSES = {"ProductionResponse", "OperationsResponse"}
_SEGMENTS = {"SegmentResponse", "SegmentResponseChild"}


_LOCAL_NAMES: dict[str, str] = {}


def _local(tag: Any) -> str:
    """``{namespace}Name`` → ``Name`` (memoised: a document repeats a few dozen names)."""
    found = _LOCAL_NAMES.get(tag)
    if found is None:
        found = tag.rpartition("}")[2] if isinstance(tag, str) else ""
        if len(_LOCAL_NAMES) < 10_000:
            _LOCAL_NAMES[tag] = found
    return found


def _namespace(tag: str) -> str:
    return tag[1:].partition("}")[0] if tag.startswith("{") else ""


def to_dict(element: Any) -> dict[str, Any]:
    """An element's children as a dict (text for leaves; a name met twice becomes a list).
    Comments and processing instructions never reach here: the parser drops them."""
    out: dict[str, Any] = {}
    names = _LOCAL_NAMES
    for child in element:
        tag = child.tag
        name = names.get(tag) or _local(tag)
        value: Any = to_dict(child) if len(child) else (child.text or "").strip()
        existing = out.get(name)
        if existing is None:
            out[name] = value
        elif isinstance(existing, list):
            existing.append(value)
        else:
            out[name] = [existing, value]
    return out


def root_of(stream: BinaryIO, name: str, limit: int) -> tuple[str, str, str | None]:
    """``(namespace, document, verb)`` of the document in ``stream`` (read up to its first
    element only); refuses DOCTYPEs, other namespaces and documents that carry no performance."""
    try:
        for _event, element in etree.iterparse(
            LimitedReader(stream, limit, name), events=("start",), **PARSER_OPTIONS
        ):
            refuse_doctype(element.getroottree(), name)
            return _kind(element, name)
    except etree.XMLSyntaxError as exc:
        raise UnreadableFileError(f"{name}: not well-formed XML: {exc}") from None
    raise UnreadableFileError(f"{name}: empty document")  # pragma: no cover - lxml raises first


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
    size = source.seek(0, io.SEEK_END) - start
    source.seek(start)
    if size > limit:
        raise TooLarge(f"{name}: larger than {limit} bytes (max_document_bytes)")
    uses = dict(settings.get("material_uses") or MATERIAL_USES)
    if size <= STREAM_ABOVE:
        yield from _whole(source.read(), name, settings, uses)
        return
    namespace, document, verb = root_of(source, name, limit)
    compiled = schema_for(settings, namespace, document)
    if compiled is not None:
        source.seek(start)
        validate(source, compiled, name, limit)
    source.seek(start)
    header = {"version": VERSIONS[namespace], "document": document, "verb": verb}
    yield from _streamed(source, name, limit, namespace, header, uses)


def _kind(root: Any, name: str) -> tuple[str, str, str | None]:
    """``(namespace, document, verb)`` of a document's root element (see ``root_of``)."""
    tag = root.tag
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


def _whole(
    data: bytes, name: str, settings: Mapping[str, Any], uses: Mapping[str, str]
) -> Iterator[RawRecord]:
    """A document of at most ``STREAM_ABOVE`` bytes: parsed whole and validated in C (much
    faster than a streaming pass), then read element by element."""
    if _DOCTYPE.match(data[:PROLOG_BYTES].removeprefix(b"\xef\xbb\xbf")):
        raise UnreadableFileError(
            f"{name}: a DOCTYPE is not allowed in B2MML (entities and DTDs are refused)"
        )
    try:
        root = etree.fromstring(data, safe_parser())
    except etree.XMLSyntaxError as exc:
        raise UnreadableFileError(f"{name}: not well-formed XML: {exc}") from None
    refuse_doctype(root.getroottree(), name)
    namespace, document, verb = _kind(root, name)
    compiled = schema_for(settings, namespace, document)
    if compiled is not None and not compiled.validate(root):
        raise UnreadableFileError(
            f"{name}: invalid against the B2MML schema: {compiled.error_log.last_error}"  # type: ignore[attr-defined]
        )
    header = {"version": VERSIONS[namespace], "document": document, "verb": verb}
    reader = _Actuals(name, namespace, header, uses)
    for actual in root.iter(f"{{{namespace}}}MaterialActual"):
        record = reader.record(actual)
        if record is not None:
            yield record


def _streamed(
    source: BinaryIO,
    name: str,
    limit: int,
    namespace: str,
    header: dict[str, Any],
    uses: Mapping[str, str],
) -> Iterator[RawRecord]:
    """A large document, streamed: each actual read at its end tag, then dropped with what came
    before it, so memory does not grow with the document."""
    reader = _Actuals(name, namespace, header, uses)
    actual_tag = f"{{{namespace}}}MaterialActual"
    containers = [f"{{{namespace}}}{n}" for n in (*_SEGMENTS, *_RESPONSES)]
    try:
        for _event, element in etree.iterparse(
            LimitedReader(source, limit, name),
            events=("end",),
            tag=[actual_tag, *containers],
            **PARSER_OPTIONS,
        ):
            if element.tag == actual_tag:
                record = reader.record(element)
                if record is not None:
                    yield record
            # what has been read is dropped; a segment's own fields (leaves) stay until its end
            element.clear()
            previous = element.getprevious()
            while previous is not None:
                before = previous.getprevious()
                if len(previous) or previous.tag == actual_tag:
                    previous.getparent().remove(previous)
                previous = before
    except etree.XMLSyntaxError as exc:
        raise UnreadableFileError(f"{name}: not well-formed XML: {exc}") from None


def _leaves(element: Any) -> dict[str, Any]:
    """The simple fields of a header element (the first of each name)."""
    out: dict[str, Any] = {}
    for child in element:
        if isinstance(child.tag, str) and not len(child):
            out.setdefault(_local(child.tag), (child.text or "").strip())
    return out


class _Actuals:
    """Turns ``MaterialActual`` elements into records, with their header (cached per segment)."""

    def __init__(
        self, name: str, namespace: str, header: dict[str, Any], uses: Mapping[str, str]
    ) -> None:
        self.name = name
        self.namespace = namespace
        self.header = header
        self.uses = uses
        self.v07 = header["version"] == VERSIONS[V07]
        self.line = 0
        self._segment: Any = None
        self._frames: tuple[dict[str, Any], dict[str, Any], dict[str, Any]] = ({}, {}, {})

    def frames(self, segment: Any) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        """``(performance, response, segment)`` fields of a segment response's ancestors."""
        if segment is not self._segment:
            response: Any = segment.getparent()
            while response is not None and _local(response.tag) not in _RESPONSES:
                response = response.getparent()
            performance = response.getparent() if response is not None else None
            self._segment = segment
            self._frames = (
                _leaves(performance) if performance is not None else {},
                _leaves(response) if response is not None else {},
                _leaves(segment),
            )
        return self._frames

    def record(self, actual: Any) -> RawRecord | None:
        """The record of one actual (None for one that is not a segment's own)."""
        segment = actual.getparent()
        if segment is None or _local(segment.tag) not in _SEGMENTS:
            return None
        self.line += 1
        performance, response, fields = self.frames(segment)
        return _record(
            actual, self.name, self.line, self.header, performance, response, fields, self.uses
        )


def _record(
    element: Any,
    name: str,
    line: int,
    header: dict[str, Any],
    performance: dict[str, Any],
    response: dict[str, Any],
    segment: dict[str, Any],
    uses: Mapping[str, str],
) -> RawRecord:
    actual = to_dict(element)
    data = {
        "b2mml": header,
        "Line": line,
        # the header dicts are shared by the actuals of a segment: nothing downstream changes them
        "Performance": performance,
        "Response": response,
        "SegmentResponse": segment,
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
