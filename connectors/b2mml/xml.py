"""Safe XML for B2MML: one parser configuration (no entities, no DTD, no network, a size limit),
the official XSDs compiled once per process, and the namespaces of the versions spoken.

A document with a DOCTYPE is refused before any of its content is read: B2MML never needs one,
and a DTD is what external-entity (XXE) and entity-expansion ("billion laughs") attacks ride on.
The size limit counts bytes as they are read, so a document over it is refused part-way without
being held in memory.
"""

from __future__ import annotations

import io
import shutil
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

from lxml import etree

from conveyor.errors import ConfigError, UnreadableFileError

V0600 = "http://www.mesa.org/xml/B2MML-V0600"
V07 = "http://www.mesa.org/xml/B2MML"
VERSIONS = {V0600: "V0600", V07: "V0701"}
"""Namespace → version name (the folder names of the official distribution)."""

MAX_DOCUMENT_BYTES = 512 << 20
"""Default largest document read (``max_document_bytes`` setting): a day of a big line's
performance is tens of megabytes; a gigabyte is an attack or a runaway export."""

SCHEMA_FILES: dict[tuple[str, str], str] = {
    (V0600, "ProductionPerformance"): "B2MML-V0600-ProductionPerformance.xsd",
    (V0600, "ProductionSchedule"): "B2MML-V0600-ProductionSchedule.xsd",
    (V07, "OperationsPerformance"): "B2MML-OperationsPerformance.xsd",
    (V07, "OperationsSchedule"): "B2MML-OperationsSchedule.xsd",
}
"""Which official schema file declares a document (bare and in every verb)."""

PARSER_OPTIONS: dict[str, Any] = {
    "resolve_entities": False,
    "no_network": True,
    "load_dtd": False,
    "huge_tree": False,
    "remove_comments": True,
    "remove_pis": True,
}
"""libxml2's own limits stay on (``huge_tree`` false: text nodes and depth are bounded)."""


_parsers = threading.local()


def safe_parser() -> etree.XMLParser:
    """An XML parser with entities, DTD loading and network access off: one per thread, reused
    (a parser may not serve two threads at once, and making one costs as much as a small
    parse)."""
    parser: etree.XMLParser | None = getattr(_parsers, "parser", None)
    if parser is None:
        parser = _parsers.parser = etree.XMLParser(**PARSER_OPTIONS)
    return parser


class TooLarge(UnreadableFileError):
    """The document is larger than ``max_document_bytes``."""


class LimitedReader(io.RawIOBase):
    """A binary stream that refuses to read past ``limit`` bytes."""

    def __init__(self, stream: BinaryIO, limit: int, name: str) -> None:
        self._stream = stream
        self._limit = limit
        self._name = name
        self.count = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        chunk = self._stream.read(size if size is not None and size >= 0 else 1 << 16)
        self.count += len(chunk)
        if self.count > self._limit:
            raise TooLarge(f"{self._name}: larger than {self._limit} bytes (max_document_bytes)")
        return chunk

    def readinto(self, buffer: Any) -> int:
        chunk = self.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)


def max_bytes(settings: Mapping[str, Any]) -> int:
    """The system's document size limit."""
    return int(settings.get("max_document_bytes") or MAX_DOCUMENT_BYTES)


def rewindable(stream: BinaryIO, limit: int, name: str) -> BinaryIO:
    """``stream`` itself when it can seek, else a copy spooled to a temporary file (within the
    size limit), so a document can be validated before any record of it is handed out."""
    try:
        if stream.seekable():
            return stream
    except (AttributeError, ValueError):
        pass
    spool = tempfile.SpooledTemporaryFile(max_size=8 << 20)  # noqa: SIM115 - returned, closed by caller
    shutil.copyfileobj(LimitedReader(stream, limit, name), spool)
    spool.seek(0)
    return spool  # type: ignore[return-value]


def refuse_doctype(tree: Any, name: str) -> None:
    """Refuse a document that declares a DOCTYPE (see the module docstring)."""
    info = tree.docinfo
    if info.doctype or info.internalDTD is not None or info.externalDTD is not None:
        raise UnreadableFileError(
            f"{name}: a DOCTYPE is not allowed in B2MML (entities and DTDs are refused)"
        )


# ---------------------------------------------------------------------- official schemas
_schemas: dict[Path, etree.XMLSchema] = {}
_lock = threading.Lock()


_paths: dict[tuple[str, str, str], Path] = {}


def schema_path(xsd_dir: str | Path, namespace: str, document: str) -> Path:
    """The official schema file for ``document`` in ``xsd_dir`` (the folder of one version, or
    the folder holding ``V0600/`` and ``V0701/`` as MESA distributes them)."""
    key = (str(xsd_dir), namespace, document)
    found = _paths.get(key)
    if found is not None:
        return found
    file = SCHEMA_FILES.get((namespace, document))
    if file is None:
        raise UnreadableFileError(f"no B2MML schema is known for {document} in {namespace}")
    base = Path(xsd_dir)
    for candidate in (base / file, base / VERSIONS[namespace] / file):
        if candidate.is_file():
            _paths[key] = candidate
            return candidate
    raise ConfigError(
        f"xsd_dir {base}: no {file} (get the official schemas from MESA International, "
        f"see docs/connectors/b2mml.md)"
    )


def schema(path: Path) -> etree.XMLSchema:
    """The compiled schema at ``path``: compiled once per process, then shared (lxml's
    ``XMLSchema`` may validate from several threads)."""
    found = _schemas.get(path)
    if found is not None:
        return found
    key = path.resolve()
    with _lock:
        found = _schemas.get(key)
        if found is None:
            try:
                tree = etree.parse(str(key), safe_parser())
                refuse_doctype(tree, str(key))  # an official XSD declares no entities
                found = etree.XMLSchema(tree)
            except (
                etree.XMLSchemaParseError,
                etree.XMLSyntaxError,
                OSError,
                UnreadableFileError,
            ) as exc:
                raise ConfigError(f"cannot compile the schema {key}: {exc}") from exc
            _schemas[key] = found
        _schemas[path] = found
    return found


def schema_for(
    settings: Mapping[str, Any], namespace: str, document: str
) -> etree.XMLSchema | None:
    """The compiled schema of ``document`` when the system has ``xsd_dir``, else None."""
    xsd_dir = settings.get("xsd_dir")
    if not xsd_dir:
        return None
    return schema(schema_path(xsd_dir, namespace, document))
