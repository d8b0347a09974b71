"""Where snapshots are kept and how their bytes are hashed: ``SnapshotStore`` keeps a compressed
copy of each snapshot under its sha256 (once), ``HashingReader`` hashes a file while it is read."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO, Any

from conveyor.reconcile.sources.base import Progress


class HashingReader(io.RawIOBase):
    """Reads a binary file, hashing and counting the bytes on the way (one pass for both)."""

    def __init__(self, raw: IO[bytes], progress: Progress | None) -> None:
        self.raw = raw
        self.sha = hashlib.sha256()
        self.progress = progress

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self.raw.readinto(buffer)  # type: ignore[attr-defined]
        if n:
            view = memoryview(buffer)[:n]
            self.sha.update(view)
            if self.progress is not None:
                self.progress(n)
        return int(n or 0)


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes."""
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


class SnapshotStore:
    """Content-addressed copies of snapshots: ``<root>/<sha256>.<ext>.gz``, each kept once."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path_for(self, sha256: str, suffix: str) -> Path:
        """Where the snapshot with this hash is kept."""
        return self.root / sha256[:2] / f"{sha256}{suffix}.gz"

    def put_file(self, path: Path, sha256: str) -> Path:
        """Keep a compressed copy of ``path`` (unless one with this hash is already kept)."""
        target = self.path_for(sha256, path.suffix.lower() or ".dat")
        if target.exists():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".tmp")
        with (
            os.fdopen(fd, "wb") as out,
            path.open("rb") as src,
            gzip.GzipFile(fileobj=out, mode="wb", compresslevel=1, mtime=0) as gz,
        ):
            shutil.copyfileobj(src, gz, 1 << 20)
        os.replace(tmp, target)
        return target

    def capture(self, suffix: str) -> Capture:
        """A writer for a streamed snapshot; ``finish(sha256)`` files it under its hash."""
        self.root.mkdir(parents=True, exist_ok=True)
        return Capture(self, suffix)


class Capture:
    """A streamed snapshot being written, compressed, under a temporary name."""

    def __init__(self, store: SnapshotStore, suffix: str) -> None:
        self.store = store
        self.suffix = suffix
        fd, self.tmp = tempfile.mkstemp(dir=store.root, suffix=".tmp")
        self._file = os.fdopen(fd, "wb")
        self._gz = gzip.GzipFile(fileobj=self._file, mode="wb", compresslevel=1, mtime=0)

    def write(self, data: bytes) -> None:
        """Add bytes."""
        self._gz.write(data)

    def finish(self, sha256: str) -> Path:
        """File the copy under ``sha256``."""
        self._gz.close()
        self._file.close()
        target = self.store.path_for(sha256, self.suffix)
        if target.exists():
            os.unlink(self.tmp)
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.tmp, target)
        return target
