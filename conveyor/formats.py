"""Document formats: how a byte stream from outside (a dropped file, an AMQP message body, an HTTP
request body) becomes raw records, whatever carried it.

A format is a reader registered in the ``conveyor.formats`` entry-point group::

    def read(stream: BinaryIO, *, name: str, settings: Mapping[str, Any]) -> Iterator[RawRecord]

``name`` is where the bytes came from (a file name, ``amqp:<queue>/<delivery tag>``,
``http:<request id>``): every ``RawRecord`` carries it as ``file`` with the record's ``line``, so a
parked record names its origin. A record a format cannot read is yielded with the error as its
``data`` (it is parked, the rest go on); a stream that cannot be read at all raises
``UnreadableFileError``. ``RawRecord.message_type`` is set when the document says what it holds
(a B2MML performance document holds consumption and output). ``settings`` are the receiving
system's settings (delimiter, encoding, schema folder, …).

File drops, the AMQP consumer and the HTTP API all find readers here, so a format is written once.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping
from functools import cache
from importlib.metadata import entry_points
from typing import Any, BinaryIO, Protocol

from conveyor.connector import RawRecord
from conveyor.errors import ConfigError


class FormatReader(Protocol):
    """What a format reader is (see the module docstring)."""

    def __call__(
        self, stream: BinaryIO, *, name: str, settings: Mapping[str, Any]
    ) -> Iterator[RawRecord]: ...


@cache
def available() -> dict[str, Any]:
    """Registered formats by name (entry points, not imported yet)."""
    return {ep.name: ep for ep in entry_points(group="conveyor.formats")}


def reader(name: str) -> FormatReader:
    """The reader registered as ``name``; a typo gets "Did you mean …?"."""
    found = available()
    if name not in found:
        close = difflib.get_close_matches(name, found, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else f" Known: {', '.join(sorted(found))}."
        raise ConfigError(f"No such format: {name!r}.{hint}")
    loaded: FormatReader = found[name].load()
    return loaded
