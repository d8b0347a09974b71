"""Read the files integrators and systems produce: CSV in whatever encoding a factory PC saved it
(UTF-8 with or without BOM, GBK/GB18030) and dialect, and JSON / JSON-lines records.

Encoding: a BOM decides; otherwise text that decodes as UTF-8 is UTF-8; otherwise
``charset-normalizer`` decides, and any Chinese guess is read as GB18030 (a superset of GBK and
GB2312, so no character of a GBK file is lost). Dialect: the mapping's ``csv:`` section, or
``csv.Sniffer`` on the first lines. Every record carries its file and line, for parking.
"""

from __future__ import annotations

import codecs
import csv
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conveyor.connector import RawRecord

SAMPLE_BYTES = 1 << 20
"""How much of a file the encoding and dialect detection look at."""

_CHINESE = {"gbk", "gb2312", "gb18030", "hz", "cp936"}
_CJK = {
    "cp949",
    "euckr",
    "big5",
    "big5hkscs",
    "cp950",
    "shiftjis",
    "cp932",
    "eucjp",
    "johab",
    "iso2022jp",
}


@dataclass(frozen=True)
class CsvOptions:
    """How one system's CSV files are read (the ``csv:`` section of its mapping file)."""

    encoding: str = "auto"
    delimiter: str | None = None
    quotechar: str = '"'
    skip_rows: int = 0

    @classmethod
    def from_mapping(cls, spec: Mapping[str, Any] | None) -> CsvOptions:
        """Options from a mapping file's ``csv:`` section (absent keys keep their defaults)."""
        spec = spec or {}
        return cls(
            encoding=str(spec.get("encoding", "auto")),
            delimiter=spec.get("delimiter"),
            quotechar=str(spec.get("quotechar", '"')),
            skip_rows=int(spec.get("skip_rows", 0)),
        )


def detect_encoding(sample: bytes) -> str:
    """The encoding of a file that starts with ``sample`` (``utf-8-sig`` when it has a BOM)."""
    if len(sample) >= SAMPLE_BYTES and b"\n" in sample:
        sample = sample[: sample.rfind(b"\n") + 1]  # never cut a character in two
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    try:
        sample.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError as exc:
        # A sample cut inside a multi-byte character is still UTF-8.
        if exc.start >= len(sample) - 3 and exc.reason == "unexpected end of data":
            return "utf-8"
    from charset_normalizer import from_bytes

    best = from_bytes(sample).best()
    name = best.encoding.lower().replace("-", "").replace("_", "") if best else ""
    if name in _CHINESE or name.startswith("gb") or name in _CJK or best is None:
        # Short Chinese texts are often guessed as Korean or Japanese: every GBK text also decodes
        # as some other double-byte code page. In a factory export, GB18030 is the likely one.
        try:
            sample.decode("gb18030")
            return "gb18030"
        except UnicodeDecodeError:
            if best is None:
                return "latin-1"
    return best.encoding


def file_encoding(path: Path, declared: str = "auto") -> str:
    """The encoding to read ``path`` with: the declared one, or the detected one."""
    if declared and declared.lower() != "auto":
        if declared.lower().replace("-", "") in ("gbk", "gb2312"):
            return "gb18030"
        if declared.lower().replace("-", "") in ("utf8", "utf8sig"):
            with path.open("rb") as fh:
                return "utf-8-sig" if fh.read(3) == codecs.BOM_UTF8 else "utf-8"
        return declared
    with path.open("rb") as fh:
        return detect_encoding(fh.read(SAMPLE_BYTES))


def _dialect(sample: str, options: CsvOptions) -> tuple[str, str]:
    if options.delimiter:
        return options.delimiter, options.quotechar
    lines = sample.splitlines()[:20]
    try:
        sniffed = csv.Sniffer().sniff("\n".join(lines), delimiters=",;\t|")
        return sniffed.delimiter, sniffed.quotechar or options.quotechar
    except csv.Error:
        return ",", options.quotechar


def read_csv(path: Path, options: CsvOptions | None = None) -> Iterator[RawRecord]:
    """Rows of a CSV file as ``RawRecord(dict(header → cell), file, line)``.

    Header names and cells are stripped of surrounding whitespace; blank lines are skipped; a row
    with more cells than the header keeps the extras under ``_extra`` so that nothing is dropped.
    """
    options = options or CsvOptions()
    encoding = file_encoding(path, options.encoding)
    with path.open("r", encoding=encoding, newline="") as fh:
        sample = fh.read(64 * 1024)
        fh.seek(0)
        delimiter, quotechar = _dialect(sample.lstrip("\ufeff"), options)
        reader = csv.reader(fh, delimiter=delimiter, quotechar=quotechar)
        for _ in range(options.skip_rows):
            next(reader, None)
        header: list[str] | None = None
        previous = reader.line_num
        for cells in reader:
            start = previous + 1
            previous = reader.line_num
            if not cells or not any(c.strip() for c in cells):
                continue
            if header is None:
                header = [c.strip().lstrip("\ufeff") for c in cells]
                continue
            row: dict[str, Any] = {}
            for name, cell in zip(header, cells, strict=False):
                row[name] = cell.strip()
            if len(cells) > len(header):
                row["_extra"] = [c.strip() for c in cells[len(header) :]]
            yield RawRecord(row, file=str(path), line=start)


def read_raw(path: Path, options: CsvOptions | None = None) -> Iterator[RawRecord]:
    """Raw records of a CSV, JSON (object or array) or JSON-lines file, by its suffix.

    A JSON line that does not parse yields its ``ValueError`` as the record's data, so the caller
    parks it instead of losing it.
    """
    suffix = path.suffix.lower()
    if suffix in (".json", ".jsonl", ".ndjson"):
        from conveyor.messages import read_records

        for line, record in read_records(path):
            yield RawRecord(record, file=str(path), line=line)
        return
    yield from read_csv(path, options)
