"""Read the files integrators and systems produce: CSV in whatever encoding a factory PC saved it
(UTF-8 with or without BOM, GBK/GB18030) and dialect, and JSON / JSON-lines records.

Encoding, per file, from its first megabyte: a BOM decides; otherwise text that decodes as UTF-8
is UTF-8; otherwise ``charset-normalizer`` decides, and any Chinese guess is read as GB18030 (a
superset of GBK and GB2312, so no character of a GBK file is lost). Any other guess must come with
confidence (a language recognised, little "chaos"): short GBK texts with a stray byte are guessed
as ``mac_iceland`` or ``cp1250`` with no language at all, and reading them so would store mojibake,
so such a file is refused (``UnreadableFileError``) naming the encodings tried.

The detected encoding can still be wrong further on (a file that is UTF-8 for a megabyte and GBK
later): bytes that do not decode are kept as marks (``BAD_BYTES``) instead of ending the file, and
the record holding them is handed on as an ``UnreadableRecordError`` with its line, to be parked.
The same happens to a CSV cell over ``limits.max_csv_field``. Dialect: the mapping's ``csv:``
section, or ``csv.Sniffer`` on the first lines. Every record carries its file and line.
"""

from __future__ import annotations

import codecs
import csv
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conveyor.connector import RawRecord
from conveyor.errors import UnreadableFileError, UnreadableRecordError
from conveyor.limits import Limits, current
from conveyor.redact import clip

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


def detect_encoding(sample: bytes, where: str | None = None) -> str:
    """The encoding of a file that starts with ``sample`` (``utf-8-sig`` when it has a BOM).

    Raises ``UnreadableFileError`` (naming ``where`` and the encodings tried) rather than guess
    with low confidence."""
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
    if _mostly_utf8(sample):
        return "utf-8"
    from charset_normalizer import from_bytes

    best = from_bytes(sample).best()
    name = best.encoding.lower().replace("-", "").replace("_", "") if best else ""
    if (
        name in _CHINESE
        or name.startswith("gb")
        or name in _CJK
        or best is None
        or _gb_pairs(sample)
    ):
        # Short Chinese texts are often guessed as Korean or Japanese: every GBK text also decodes
        # as some other double-byte code page. In a factory export, GB18030 is the likely one.
        try:
            sample.decode("gb18030")
            return "gb18030"
        except UnicodeDecodeError:
            pass
    if best is not None and _confident(best.coherence, best.chaos):
        return str(best.encoding)
    guess = (
        f"charset-normalizer's best guess {best.encoding} has low confidence "
        f"(language coherence {best.coherence:.0%}, chaos {best.chaos:.0%})"
        if best is not None
        else "charset-normalizer found no encoding that fits"
    )
    raise UnreadableFileError(
        f"{where or 'file'}: cannot tell its encoding: tried utf-8, gb18030, and {guess}; "
        "save it as UTF-8, or declare the encoding in the system's mapping "
        "(csv: {encoding: ...})"
    )


_GB2312_PAIR = re.compile(rb"[\xa1-\xf7][\xa1-\xfe]")
_HIGH = re.compile(rb"[\x80-\xff]")
GB_PAIR_SHARE = 0.95
"""A sample whose high bytes stand almost all in GB2312 pairs (lead and trail both >= 0xA1) is
Chinese, whatever single-byte code page charset-normalizer prefers: a long export repeating a few
Chinese words (a unit column of 克) is otherwise guessed as a Cyrillic code page. Text in a
single-byte code page has lone high bytes between ASCII letters, and seldom decodes as GB18030."""


def _gb_pairs(sample: bytes) -> bool:
    high = len(_HIGH.findall(sample))
    return high >= 4 and 2 * len(_GB2312_PAIR.findall(sample)) >= GB_PAIR_SHARE * high


_REPLACED = re.compile("\ufffd+")
UTF8_SHARE = 10
"""A sample with at least this many valid multi-byte UTF-8 characters per undecodable stretch
is UTF-8 with a few broken rows (parked one by one), not another encoding."""


def _mostly_utf8(sample: bytes) -> bool:
    text = sample.decode("utf-8", "replace")
    bad = len(_REPLACED.findall(text))
    good = sum(1 for ch in text if ch > "\x7f" and ch != "\ufffd")
    return good >= UTF8_SHARE * bad > 0


MIN_COHERENCE = 0.1
"""A single-byte guess must recognise a language at least this well (real Western European text
scores 0.5 and more; a Chinese file guessed as ``mac_iceland`` scores 0)."""
MAX_CHAOS = 0.2
"""… and look at most this messy (charset-normalizer's mess ratio)."""


def _confident(coherence: float, chaos: float) -> bool:
    return coherence >= MIN_COHERENCE and chaos <= MAX_CHAOS


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
        return detect_encoding(fh.read(SAMPLE_BYTES), str(path))


BAD_BYTES = "conveyor.badbytes"
"""The decoding error handler that keeps each undecodable byte ``b`` as the lone surrogate
``U+DC00 + b``: the file reads on, and the record holding the mark is parked with its line.
(Python's ``surrogateescape`` does the same, but refuses bytes below 0x80, which UTF-16 needs.)"""
_bad_bytes_seen = [0]
_MARK = re.compile("[\udc00-\udcff]+")


def _mark_bad_bytes(exc: UnicodeError) -> tuple[str, int]:
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    _bad_bytes_seen[0] += 1
    return "".join(chr(0xDC00 + b) for b in exc.object[exc.start : exc.end]), exc.end


codecs.register_error(BAD_BYTES, _mark_bad_bytes)


def _marks_seen() -> int:
    """How many undecodable stretches this process has met (compared before and after a row, it
    says cheaply whether the row needs looking at)."""
    return _bad_bytes_seen[0]


def bad_bytes(text: str, encoding: str) -> str | None:
    """What is wrong with ``text`` if it holds undecodable bytes (marked by ``BAD_BYTES``): the
    bytes and the column where they start; None when it holds none."""
    found = _MARK.search(text)
    if found is None:
        return None
    shown = " ".join(f"0x{ord(c) - 0xDC00:02x}" for c in found.group()[:8])
    lines_before = text.count("\n", 0, found.start())
    column = found.start() - (text.rfind("\n", 0, found.start()) + 1) + 1
    where = f"column {column}" + (
        f" of the record's line {lines_before + 1}" if lines_before else ""
    )
    return (
        f"bytes {shown} at {where} are not {encoding}; the file changes encoding part-way or "
        "is not text: fix or re-save it, then replay"
    )


def decode_bytes(data: bytes) -> tuple[str, str, bool]:
    """Text of JSON ``data``, the encoding used, and whether bytes had to be marked: a BOM
    (UTF-8, UTF-16, UTF-32) decides, else UTF-8 as RFC 8259 requires. Bytes that do not decode
    are marked (``BAD_BYTES``), never fatal."""
    encoding = "utf-8"
    if data.startswith(codecs.BOM_UTF8):
        data, encoding = data[3:], "utf-8"
    elif data.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        encoding = "utf-32"
    elif data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding = "utf-16"
    try:
        return data.decode(encoding), encoding, False
    except UnicodeDecodeError:
        return data.decode(encoding, BAD_BYTES), encoding, True


def _dialect(sample: str, options: CsvOptions) -> tuple[str, str]:
    if options.delimiter:
        return options.delimiter, options.quotechar
    lines = sample.splitlines()[:20]
    try:
        sniffed = csv.Sniffer().sniff("\n".join(lines), delimiters=",;\t|")
        return sniffed.delimiter, sniffed.quotechar or options.quotechar
    except csv.Error:
        return ",", options.quotechar


def read_csv(
    path: Path, options: CsvOptions | None = None, limits: Limits | None = None
) -> Iterator[RawRecord]:
    """Rows of a CSV file as ``RawRecord(dict(header → cell), file, line)``.

    Header names and cells are stripped of surrounding whitespace; blank lines are skipped; a row
    with more cells than the header keeps the extras under ``_extra`` so that nothing is dropped.
    A row that cannot be read (undecodable bytes, a cell over ``limits.max_csv_field``) comes as an
    ``UnreadableRecordError`` in place of its data. Raises ``UnreadableFileError`` before any row
    when the file's encoding cannot be told.
    """
    options = options or CsvOptions()
    limits = limits or current()
    encoding = file_encoding(path, options.encoding)
    # The csv module's own limit (128 KiB) would end the file at the first big cell; the limit is
    # raised to the configured one and a row over it is parked instead (process-wide setting).
    csv.field_size_limit(limits.max_csv_field)
    with path.open("r", encoding=encoding, errors=BAD_BYTES, newline="") as fh:
        sample = fh.read(64 * 1024)
        fh.seek(0)
        delimiter, quotechar = _dialect(sample.lstrip("\ufeff"), options)
        reader = csv.reader(fh, delimiter=delimiter, quotechar=quotechar)
        for _ in range(options.skip_rows):
            try:
                next(reader, None)
            except csv.Error:
                continue
        header: list[str] | None = None
        previous = reader.line_num
        # the decoder reads ahead in chunks: once it has marked bytes anywhere in this file,
        # every row from then on is looked at (files that decode cleanly never pay for it)
        marks = _marks_seen()
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                start, previous = previous + 1, reader.line_num
                yield RawRecord(_csv_error(exc, limits), file=str(path), line=start)
                continue
            start = previous + 1
            previous = reader.line_num
            if marks != _marks_seen() and _MARK.search("".join(cells)):
                problem = bad_bytes(delimiter.join(cells), encoding)
                if problem is not None:
                    text = clip(delimiter.join(cells), limits.max_stored_record_chars)
                    error = UnreadableRecordError(problem, rule="encoding", text=text)
                    yield RawRecord(error, file=str(path), line=start)
                    continue
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


def _csv_error(exc: csv.Error, limits: Limits) -> UnreadableRecordError:
    if "field limit" in str(exc):
        return UnreadableRecordError(
            f"a cell is over the {limits.max_csv_field:,}-character limit "
            "(limits.max_csv_field in conveyor.yaml); the rest of the row was not read",
            rule="max_csv_field",
        )
    return UnreadableRecordError(f"not a CSV row: {exc}", rule="csv")


def read_raw(
    path: Path, options: CsvOptions | None = None, limits: Limits | None = None
) -> Iterator[RawRecord]:
    """Raw records of a CSV, JSON (object or array) or JSON-lines file, by its suffix.

    A record that cannot be read yields an ``UnreadableRecordError`` (a ``ValueError``) as its
    data, so the caller parks it instead of losing it.
    """
    if is_json_file(path):
        from conveyor.messages import read_records

        for line, record in read_records(path, limits):
            yield RawRecord(record, file=str(path), line=line)
        return
    yield from read_csv(path, options, limits)


JSON_SUFFIXES = (".json", ".jsonl", ".ndjson")


def is_json_file(path: Path) -> bool:
    """True for the suffixes read as JSON (one object, an array, or JSON lines)."""
    return path.suffix.lower() in JSON_SUFFIXES
