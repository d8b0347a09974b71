"""The receiving side of a file drop: the folders under a system's root, which dropped files are
ready, claiming one by an atomic rename into ``processing/``, and where it ends.

::

    root/inbox/        files arrive here (written by the other system)
    root/processing/   claimed by a rename: one watcher owns it; left here by a crash, resumed
    root/archive/      taken in: the file, and ``<name>.result.json`` beside it
    root/error/        could not be read at all: the file, and ``<name>.error.txt`` with why

A file is ready when a ``.done`` marker stands beside it (``ready: marker``) or when its size and
modification time have not changed for ``stable_seconds`` (``ready: stable``, the default: a file
still being copied over a network share grows). Only regular files are taken: a symbolic link is
never followed (it is moved to ``error/`` as it is, the link and not its target). Every name is
joined to its folder through ``conveyor.paths.confined``, so no name leaves the folders.
"""

from __future__ import annotations

import fnmatch
import json
import os
import stat
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conveyor.errors import ConfigError
from conveyor.paths import confined

FOLDERS = ("inbox", "processing", "archive", "error")
RESULT_SUFFIX = ".result.json"
ERROR_SUFFIX = ".error.txt"


def safe_name(name: str) -> str:
    """``name`` when it is a plain file name; ``ValueError`` for anything that could leave its
    folder (separators, ``..``, absolute paths, NUL) or is hidden."""
    if (
        not name
        or name in (".", "..")
        or "/" in name
        or "\\" in name
        or "\x00" in name
        or name.startswith(".")
        or os.path.isabs(name)
    ):
        raise ValueError(f"file name {name!r} is refused: a plain name inside the folder only")
    return name


@dataclass(frozen=True)
class Claimed:
    """A file claimed into ``processing/``: its original name and where it is now."""

    name: str
    path: Path
    kind: str
    """The pattern's value: a canonical message type or a format name."""


class DropFolders:
    """The four folders of one system's file drop, and the rules for which files are taken."""

    def __init__(
        self,
        root: Path,
        patterns: Mapping[str, str],
        *,
        ready: str = "stable",
        stable_seconds: float = 2.0,
        marker_suffix: str = ".done",
    ) -> None:
        for pattern in patterns:
            if "/" in pattern or "\\" in pattern or ".." in pattern:
                raise ConfigError(f"file pattern {pattern!r}: a name pattern, not a path")
        self.root = root
        self.patterns = dict(patterns)
        self.ready = ready
        self.stable_seconds = stable_seconds
        self.marker_suffix = marker_suffix
        self._seen: dict[str, tuple[int, int, float]] = {}
        """name → (size, mtime_ns, when first seen so) for files not yet stable."""

    def folder(self, which: str) -> Path:
        """One of the four folders (created when missing)."""
        path = self.root / which
        path.mkdir(parents=True, exist_ok=True)
        return path

    def path(self, which: str, name: str) -> Path:
        """``name`` inside folder ``which``; ``ValueError`` when the name would leave it. A link
        is named, not resolved (it is never read through, only moved as it is)."""
        folder = self.folder(which)
        candidate = folder / safe_name(name)
        return candidate if candidate.is_symlink() else confined(folder, name)

    def kind_of(self, name: str) -> str | None:
        """The message type or format of a file name (the first pattern that matches)."""
        for pattern, kind in self.patterns.items():
            if fnmatch.fnmatchcase(name, pattern):
                return kind
        return None

    # ------------------------------------------------------------------ finding work
    def leftovers(self) -> Iterator[Claimed]:
        """Files left in ``processing/`` by an interrupted pass: resumed before new ones."""
        for entry in sorted(os.scandir(self.folder("processing")), key=lambda e: e.name):
            kind = self.kind_of(entry.name)
            if kind is not None and entry.is_file(follow_symlinks=False):
                yield Claimed(entry.name, Path(entry.path), kind)

    def waiting(self) -> tuple[list[str], list[str], int]:
        """Names in ``inbox/`` that are ready, names to refuse (links, odd names), and how many
        are still being written."""
        ready, refused, busy = [], [], 0
        now = time.monotonic()
        names = set()
        for entry in sorted(os.scandir(self.folder("inbox")), key=lambda e: e.name):
            name = entry.name
            if name.startswith(".") or name.endswith(self.marker_suffix):
                continue
            if self.kind_of(name) is None:
                continue
            names.add(name)
            if entry.is_symlink() or not entry.is_file(follow_symlinks=False):
                refused.append(name)
                continue
            info = entry.stat(follow_symlinks=False)
            if self._is_ready(name, info, now):
                ready.append(name)
            else:
                busy += 1
        for gone in set(self._seen) - names:
            del self._seen[gone]
        return ready, refused, busy

    def _is_ready(self, name: str, info: os.stat_result, now: float) -> bool:
        if self.ready == "marker":
            return (self.folder("inbox") / (name + self.marker_suffix)).exists()
        if time.time() - info.st_mtime >= self.stable_seconds:
            return True  # nobody has touched it for the whole interval
        seen = self._seen.get(name)
        current = (info.st_size, info.st_mtime_ns)
        if seen is None or seen[:2] != current:
            self._seen[name] = (*current, now)
            return False
        return now - seen[2] >= self.stable_seconds

    # ------------------------------------------------------------------ moving
    def claim(self, name: str) -> Claimed | None:
        """Move ``inbox/name`` into ``processing/`` by one rename (atomic on one filesystem);
        None when another process took it first."""
        kind = self.kind_of(name)
        if kind is None:
            raise ValueError(f"{name!r} matches no file pattern of this drop")
        source = self.path("inbox", name)
        info = os.lstat(source)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError(f"{name!r} is not a regular file (links are not followed)")
        target = self._free(self.path("processing", name))
        try:
            os.rename(source, target)
        except FileNotFoundError:
            return None
        self._seen.pop(name, None)
        marker = self.folder("inbox") / (name + self.marker_suffix)
        if self.ready == "marker" and marker.is_file() and not marker.is_symlink():
            marker.unlink(missing_ok=True)
        return Claimed(name, target, kind)

    def refuse(self, name: str, reason: str) -> Path:
        """Move ``inbox/name`` (a link is moved as a link) to ``error/`` with the reason."""
        source = self.path("inbox", name)
        return self._finish(source, "error", name, reason)

    def archive(self, claimed: Claimed, result: Mapping[str, Any]) -> Path:
        """Move a taken-in file to ``archive/`` with its result file beside it."""
        return self._finish(claimed.path, "archive", claimed.name, result)

    def fail(self, claimed: Claimed, reason: str) -> Path:
        """Move a file that cannot be read to ``error/`` with the reason beside it."""
        return self._finish(claimed.path, "error", claimed.name, reason)

    def _finish(self, source: Path, which: str, name: str, about: Mapping[str, Any] | str) -> Path:
        target = self._free(self.path(which, name))
        if isinstance(about, str):
            note, text = Path(f"{target}{ERROR_SUFFIX}"), about + "\n"
        else:
            note = Path(f"{target}{RESULT_SUFFIX}")
            text = json.dumps({**about, "archived_as": target.name}, ensure_ascii=False, indent=2)
        _write_atomically(note, text.encode("utf-8"))
        os.rename(source, target)
        return target

    @staticmethod
    def _free(path: Path) -> Path:
        """``path``, or ``name.1``, ``name.2``, … when taken: nothing is ever overwritten."""
        candidate, n = path, 0
        while os.path.lexists(candidate):
            n += 1
            candidate = path.with_name(f"{path.name}.{n}")
        return candidate


def _write_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(temporary, path)
