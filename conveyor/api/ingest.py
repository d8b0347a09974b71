"""``POST /v1/ingest/{system}/{type}``: a body in the system's own format, taken in through the
same driver as dropped files and queued messages (``conveyor.runtime.inbound.receive_units``, one
``ReceivedUnit`` per body), so mapping, parking and the "already taken in" check by content hash
are the files' own.

The body's ``Content-Type`` names the format (``CONTENT_TYPES``, the one table); the reader is
found in the ``conveyor.formats`` registry, and a format that is not installed is answered 415.
Plain XML is read as the system's ``settings.format`` when that names an XML format, else B2MML.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, ClassVar

from conveyor.connector import Connector, ReceivedUnit

if TYPE_CHECKING:
    from conveyor.config import SystemConfig
    from conveyor.ledger import Ledger
    from conveyor.mapping.engine import MappingEngine
    from conveyor.runtime.inbound import ReceiveResult

CONTENT_TYPES: dict[str, str] = {
    "application/json": "json",
    "text/json": "json",
    "application/x-ndjson": "json",
    "application/jsonl": "json",
    "text/csv": "csv",
    "application/csv": "csv",
    "application/xml": "xml",
    "text/xml": "xml",
    "application/b2mml+xml": "b2mml",
    "application/idoc+xml": "loipro",
    "application/x-idoc+xml": "loipro",
}
"""Media type → format name in ``conveyor.formats`` (``xml``: decided by the system, below)."""
XML_FORMATS = ("b2mml", "loipro")


def media_type(header: str | None) -> str:
    """The bare media type of a ``Content-Type`` header, lower case."""
    return (header or "").split(";", 1)[0].strip().lower()


def is_xml(header: str | None) -> bool:
    """Whether the body is XML by its media type."""
    kind = media_type(header)
    return kind.endswith(("/xml", "+xml"))


def format_for(header: str | None, system: SystemConfig) -> str | None:
    """The format name for a body of ``Content-Type`` ``header`` sent by ``system``, or None
    when the media type is not one the hub reads."""
    name = CONTENT_TYPES.get(media_type(header))
    if name == "xml":
        chosen = system.settings.get("format")
        return chosen if chosen in XML_FORMATS else "b2mml"
    return name


class HttpBody(Connector):
    """One pushed body as a receiving connector holding one unit: the inbound driver treats it
    exactly as a dropped file."""

    kind: ClassVar[str] = "http"
    capabilities: ClassVar[frozenset[str]] = frozenset({"receive"})

    def __init__(self, name: str, unit: ReceivedUnit) -> None:
        super().__init__(name)
        self.unit = unit

    def receive(self) -> Iterator[ReceivedUnit]:
        """The one body."""
        yield self.unit


def ingest_body(
    ledger: Ledger,
    engine: MappingEngine,
    system: SystemConfig,
    message_type: str,
    body: bytes,
    *,
    format_name: str,
    reader: Any,
    request_id: str,
) -> tuple[ReceiveResult, list[dict[str, Any]]]:
    """Map and accept the records of ``body``; returns the receive result and the parked
    problems (file, line, reason) of the records that could not go in."""
    from conveyor.runtime.inbound import receive_units

    name = f"http:{request_id}"
    settings = dict(system.settings)
    failed: list[str] = []
    unit = ReceivedUnit(
        name=name,
        records=reader(io.BytesIO(body), name=name, settings=settings),
        fail=failed.append,
        message_type=message_type,
        content_hash=f"http:{format_name}:{hashlib.sha256(body).hexdigest()}",
    )
    problems: list[dict[str, Any]] = []
    result = receive_units(ledger, engine, HttpBody(system.name, unit), on_problem=problems.append)
    return result, problems
