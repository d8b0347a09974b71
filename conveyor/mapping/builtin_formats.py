"""The built-in document formats of the ``conveyor.formats`` registry: ``csv``, ``json`` and
``jsonl``. They are thin adapters from a byte stream to the readers that ``conveyor ingest`` uses
(``conveyor.mapping.readers.read_csv`` and ``conveyor.messages.records_of_text``), so a file drop,
an AMQP body and a file given by hand are read by the same code.

``settings`` may hold a ``csv`` section shaped like a mapping file's (``encoding``,
``delimiter``, ``quotechar``, ``skip_rows``); without it the encoding is detected and the
delimiter sniffed.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO

from conveyor.connector import RawRecord
from conveyor.limits import current
from conveyor.mapping.readers import CsvOptions, decode_bytes, read_csv


def _path_of(stream: BinaryIO) -> Path | None:
    """The file behind ``stream`` when it is a real file (the CSV reader detects the encoding from
    the file's first megabyte and streams the rest)."""
    name = getattr(stream, "name", None)
    if isinstance(name, str) and Path(name).is_file():
        return Path(name)
    return None


def read_csv_stream(
    stream: BinaryIO, *, name: str, settings: Mapping[str, Any]
) -> Iterator[RawRecord]:
    """Rows of a CSV document (see ``read_csv``), each named ``name`` with its line."""
    options = CsvOptions.from_mapping(settings.get("csv"))
    path = _path_of(stream)
    if path is not None:
        yield from _renamed(read_csv(path, options, current()), name)
        return
    # a body without a file behind it (AMQP, HTTP) is spooled to disk: rows stay streamed
    with tempfile.NamedTemporaryFile(suffix=".csv") as spool:
        shutil.copyfileobj(stream, spool)
        spool.flush()
        yield from _renamed(read_csv(Path(spool.name), options, current()), name)


def _renamed(records: Iterator[RawRecord], name: str) -> Iterator[RawRecord]:
    for raw in records:
        yield RawRecord(
            raw.data, file=name, line=raw.line, cursor=raw.cursor, message_type=raw.message_type
        )


def _read_json(stream: BinaryIO, name: str, *, lines_only: bool) -> Iterator[RawRecord]:
    from conveyor.messages import records_of_text

    text, encoding, marked = decode_bytes(stream.read())
    for line, record in records_of_text(
        text, current(), encoding=encoding, marked=marked, lines_only=lines_only
    ):
        yield RawRecord(record, file=name, line=line)


def read_json_stream(
    stream: BinaryIO, *, name: str, settings: Mapping[str, Any]
) -> Iterator[RawRecord]:
    """Records of a JSON document: one object, an array, or JSON lines."""
    return _read_json(stream, name, lines_only=False)


def read_jsonl_stream(
    stream: BinaryIO, *, name: str, settings: Mapping[str, Any]
) -> Iterator[RawRecord]:
    """Records of a JSON-lines document, one per line."""
    return _read_json(stream, name, lines_only=True)
