"""API tokens: who may call the hub's HTTP API, and for what.

A token is shown once, when ``conveyor tokens add NAME --scope S`` makes it; only its SHA-256 is
kept, in ``.conveyor/tokens.json`` of the project (mode 0600, beside the embedded ledger). A file
rather than a ledger table: tokens are configuration of the API processes, readable before any
database is reachable, and several ``serve`` processes share it with the rest of the project
folder. Tokens are 256 random bits, so a plain hash is enough (a slow password hash protects
low-entropy secrets, which these are not).

Checking a presented token hashes it and compares the hash with every stored one with
``hmac.compare_digest`` (constant time, no early exit on the first match), so timing tells nothing
about which bytes matched. The file is re-read when it changes: a token added or removed takes
effect without a restart.

Scopes::

    ingest   POST /v1/messages, POST /v1/ingest/…       (an MES or WMS pushing events)
    read     every GET under /v1 and /metrics            (dashboards, monitoring, plant managers)
    operate  read + POST /v1/replay                      (operators)
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from conveyor.errors import ConfigError

SCOPES = ("ingest", "read", "operate")
IMPLIED: dict[str, frozenset[str]] = {
    "ingest": frozenset({"ingest"}),
    "read": frozenset({"read"}),
    "operate": frozenset({"operate", "read"}),
}
"""What each scope grants: an operator reads what they replay; an MES token only posts."""
PREFIX = "cvy_"
TOKENS_FILE = Path(".conveyor") / "tokens.json"


def token_hash(token: str) -> str:
    """The stored form of a token (hex SHA-256)."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class TokenInfo:
    """A stored token, without the token."""

    name: str
    scope: str
    created_at: str

    def grants(self, scope: str) -> bool:
        """Whether this token may use a route that needs ``scope``."""
        return scope in IMPLIED.get(self.scope, frozenset())


class TokenStore:
    """The tokens of one project (``.conveyor/tokens.json``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._entries: dict[str, dict[str, Any]] = {}

    @classmethod
    def of_project(cls, root: Path) -> TokenStore:
        """The store of the project at ``root``."""
        return cls(root / TOKENS_FILE)

    def _load(self) -> dict[str, dict[str, Any]]:
        """The entries, re-read when the file changed since the last look."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            with self._lock:
                self._stamp, self._entries = None, {}
            return {}
        stamp = (stat.st_mtime_ns, stat.st_size)
        with self._lock:
            if stamp != self._stamp:
                try:
                    data = json.loads(self.path.read_text(encoding="utf-8"))
                except (OSError, ValueError) as exc:
                    raise ConfigError(f"{self.path}: not a readable token file: {exc}") from None
                self._entries = dict(data.get("tokens") or {})
                self._stamp = stamp
            return self._entries

    def list(self) -> list[TokenInfo]:
        """Stored tokens (names, scopes, dates), by name."""
        return [
            TokenInfo(name, entry["scope"], entry.get("created_at", ""))
            for name, entry in sorted(self._load().items())
        ]

    def add(self, name: str, scope: str) -> str:
        """Make a token for ``name`` with ``scope``; returns the token (its only appearance)."""
        if scope not in SCOPES:
            raise ConfigError(f"unknown scope {scope!r} (one of {', '.join(SCOPES)})")
        if not name or len(name) > 64 or not name.replace("-", "").replace("_", "").isalnum():
            raise ConfigError(f"token name {name!r}: letters, digits, '-' and '_', up to 64")
        entries = dict(self._load())
        if name in entries:
            raise ConfigError(f"a token named {name!r} exists: remove it first")
        token = PREFIX + secrets.token_urlsafe(32)
        entries[name] = {
            "hash": token_hash(token),
            "scope": scope,
            "created_at": datetime.now(UTC).replace(microsecond=0).isoformat(),
        }
        self._write(entries)
        return token

    def remove(self, name: str) -> bool:
        """Forget the token ``name``; False when there was none."""
        entries = dict(self._load())
        if entries.pop(name, None) is None:
            return False
        self._write(entries)
        return True

    def _write(self, entries: dict[str, dict[str, Any]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        # created 0600: hashes are not tokens, but nobody else has business reading them
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump({"tokens": entries}, fh, indent=2, sort_keys=True)
        os.replace(temporary, self.path)

    def check(self, token: str) -> TokenInfo | None:
        """The stored token that ``token`` is, or None. Every stored hash is compared, in
        constant time each, whatever matched before."""
        presented = token_hash(token).encode()
        found: TokenInfo | None = None
        for name, entry in self._load().items():
            if hmac.compare_digest(presented, str(entry.get("hash", "")).encode()):
                found = TokenInfo(name, entry["scope"], entry.get("created_at", ""))
        return found
