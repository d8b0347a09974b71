"""The sending side of a file drop: one CSV file per outbound-mapped document, for targets that
import files from a folder (a WMS staging-request folder, an older ERP's import directory).

A document is written under a hidden temporary name, flushed to disk, and then given its final
name by ``os.link`` — which, unlike a rename, refuses to replace an existing file: an existing
file is never overwritten, and a name already taken by another document gets ``_2``, ``_3``, ….
The target never sees a half-written file. Columns are the document's fields in the order the
outbound mapping lists them; the text is encoded in the target's encoding (``GBK`` for most
Chinese WMS imports), and a character the encoding cannot hold refuses the document rather than
writing ``?``.

Each written document is recorded in ``.conveyor-sent/`` inside the outbox (one small JSON file
per hub key): ``lookup`` answers from it — and from the file name itself when a crash came between
the link and the record — so a delivery retried after a crash is not written twice, even after
the target has imported and removed the file.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from connectors.files.inbox import safe_name
from conveyor.errors import ConfigError, RejectedError
from conveyor.paths import confined

JOURNAL = ".conveyor-sent"
_UNSAFE = re.compile(r"[^\w.\-]+")


def sanitise(name: str, limit: int = 200) -> str:
    """A file name made of ``name``: every run of characters other than letters, digits (any
    script), ``.``, ``-`` and ``_`` becomes ``_``; no leading dots; at most ``limit`` characters."""
    cleaned = _UNSAFE.sub("_", name).lstrip(".") or "_"
    if len(cleaned) > limit:
        digest = hashlib.sha256(name.encode()).hexdigest()[:12]
        _, dot, suffix = cleaned.rpartition(".")
        keep = suffix if dot and len(suffix) <= 10 else ""
        cleaned = cleaned[: limit - len(digest) - len(keep) - 2] + "_" + digest
        cleaned += f".{keep}" if keep else ""
    return cleaned


class FileWriter:
    """Writes outbound documents as files into one folder (see the module docstring)."""

    def __init__(
        self,
        folder: Path,
        *,
        file_name: str = "{message_type}_{key}.csv",
        encoding: str = "utf-8",
        delimiter: str = ",",
    ) -> None:
        self.folder = folder
        self.file_name = file_name
        self.encoding = encoding
        self.delimiter = delimiter
        try:
            "".encode(encoding)
        except LookupError as exc:
            raise ConfigError(f"outbox encoding {encoding!r} is not known") from exc

    def name_for(self, message_type: str, key: str) -> str:
        """The sanitised file name for a document (``file_name`` filled in)."""
        try:
            rendered = self.file_name.format(
                message_type=message_type, key=key, id=hashlib.sha256(key.encode()).hexdigest()[:16]
            )
        except (KeyError, IndexError, ValueError) as exc:
            raise ConfigError(
                f"file_name {self.file_name!r}: {exc} (placeholders: message_type, key, id)"
            ) from exc
        return sanitise(rendered)

    def _journal(self, message_type: str, key: str) -> Path:
        folder = self.folder / JOURNAL
        if folder.is_symlink():  # the target may write here: its link would take our records out
            raise ConfigError(f"{folder} is a link: the outbox's journal must be a folder in it")
        folder.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256(f"{message_type}\x00{key}".encode()).hexdigest()
        return confined(folder, f"{digest}.json")

    def lookup(self, message_type: str, key: str) -> str | None:
        """The name of the file written for ``key``, or None."""
        entry = self._journal(message_type, key)
        if entry.is_file():
            written: str = json.loads(entry.read_text("utf-8"))["file"]
            return written
        # a crash after the link and before the record: the file itself says so, if still there
        if "{key}" not in self.file_name and "{id}" not in self.file_name:
            return None  # the name does not say whose document a file is
        name = self.name_for(message_type, key)
        path = self.folder / name
        # a link is never one of ours (we write files): whoever planted it, it is not the document
        if path.is_file() and not path.is_symlink() and self._holds(path, message_type, key):
            self._record(message_type, key, name)
            return name
        return None

    def _holds(self, path: Path, message_type: str, key: str) -> bool:
        """True when ``path`` was written for ``key`` (its name is the key's and no other
        document's record claims it)."""
        for entry in (self.folder / JOURNAL).glob("*.json"):
            data = json.loads(entry.read_text("utf-8"))
            if data.get("file") == path.name:
                return bool(data.get("key") == key and data.get("message_type") == message_type)
        return True

    def write(
        self, document: Mapping[str, Any], *, message_type: str, key: str
    ) -> tuple[str, bool]:
        """Write ``document`` for ``key``; returns the file name and whether it was already
        written (then nothing is written again)."""
        found = self.lookup(message_type, key)
        if found is not None:
            return found, True
        data = self._encode(document, key)
        self.folder.mkdir(parents=True, exist_ok=True)
        temporary = confined(self.folder, f".{uuid.uuid4().hex}.tmp")
        with open(temporary, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            name = self._link(temporary, self.name_for(message_type, key))
        finally:
            temporary.unlink(missing_ok=True)
        self._record(message_type, key, name)
        return name, False

    def _link(self, temporary: Path, name: str) -> str:
        stem, dot, suffix = name.rpartition(".")
        if not dot:
            stem, suffix = name, ""
        for n in range(1, 10_000):
            candidate = name if n == 1 else f"{stem}_{n}{'.' + suffix if suffix else ''}"
            try:  # a name, never resolved: a link planted there counts as taken, not followed
                os.link(temporary, self.folder / safe_name(candidate))
            except FileExistsError:
                continue  # never overwrite: another document (or another system) has this name
            return candidate
        raise RejectedError(f"no free file name for {name!r} in {self.folder}")

    def _record(self, message_type: str, key: str, name: str) -> None:
        entry = self._journal(message_type, key)
        temporary = entry.with_name(f".{entry.name}.tmp")
        temporary.write_text(
            json.dumps({"message_type": message_type, "key": key, "file": name}), "utf-8"
        )
        os.replace(temporary, entry)

    def _encode(self, document: Mapping[str, Any], key: str) -> bytes:
        listed = document.get("rows")
        rows: list[Any] = listed if isinstance(listed, list) else [document]
        columns: list[str] = []
        for row in rows:
            if not isinstance(row, Mapping):
                raise RejectedError(f"{key}: a CSV row must be an object, not {type(row).__name__}")
            columns += [c for c in row if c not in columns]
        buffer = io.StringIO()
        writer = csv.writer(buffer, delimiter=self.delimiter, lineterminator="\r\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_cell(row.get(c)) for c in columns])
        try:
            return buffer.getvalue().encode(self.encoding)
        except UnicodeEncodeError as exc:
            bad = exc.object[exc.start : exc.end]
            raise RejectedError(
                f"{key}: {bad!r} cannot be written in {self.encoding} (the target's encoding); "
                "fix the master data or the mapping, then replay"
            ) from exc


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, Mapping | list):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)
