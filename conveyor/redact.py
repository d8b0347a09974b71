"""The one redaction step: every text Conveyor stores or prints passes through ``redact``.

Secrets are remembered here as the process loads them (``remember``: the ``secret()`` door calls
it for every value it hands out), together with the forms in which they leak into error texts —
HTTP Basic's base64 of ``user:password``, URL-encoded, JSON-escaped. ``redact`` replaces each with
``***`` and also blanks ``Authorization``/``Cookie``/token-like headers and query parameters,
whatever their value, so a secret the process never loaded (a token echoed by a proxy) is still cut.

Stored or printed texts are also truncated (``clip``) so a 50 MB rejected line never becomes 100 MB
of stderr or a 260 MB ledger.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
from typing import Any
from urllib.parse import quote, quote_plus

MASK = "***"
MIN_SECRET_LENGTH = 4
"""Shorter values are not remembered: replacing "ab" everywhere would mangle every text."""

_lock = threading.Lock()
_secrets: set[str] = set()
_pattern: re.Pattern[str] | None = None

_HEADER = re.compile(
    r"(?i)\b(authorization|proxy-authorization|cookie|set-cookie|x-api-key|api[-_]?key|"
    r"access[-_]?token|refresh[-_]?token|app[-_]?secret|client[-_]?secret|password|passwd|"
    r"kdservice-sessionid|signature|x-kd-signature|x-api-signature|token)"
    r"(\"?\s*[:=]\s*\"?)"
    r"((?:basic|bearer|digest|token)\s+)?"
    r"(?!(?:true|false|null)\b)"  # a JSON literal is no secret: keep the text parseable
    r"([^\s\"',;&}\]<]+)"
)
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}")
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)([^/\s:@]+):([^/\s@]+)@")


def remember(value: str | None, *, user: str | None = None) -> None:
    """Remember a secret value (and, with ``user``, its HTTP Basic form) for redaction."""
    if not value or len(value) < MIN_SECRET_LENGTH:
        return
    forms = {value, quote(value, safe=""), quote_plus(value), json.dumps(value)[1:-1]}
    forms.add(base64.b64encode(value.encode()).decode())
    if user:
        basic = base64.b64encode(f"{user}:{value}".encode()).decode()
        forms.update({basic, basic.rstrip("=")})
    global _pattern
    with _lock:
        new = {form for form in forms if len(form) >= MIN_SECRET_LENGTH} - _secrets
        if new:
            _secrets.update(new)
            # longest first, so a secret that contains another is masked whole
            ordered = sorted(_secrets, key=len, reverse=True)
            _pattern = re.compile("|".join(re.escape(s) for s in ordered))


def forget_all() -> None:
    """Drop every remembered secret (tests)."""
    global _pattern
    with _lock:
        _secrets.clear()
        _pattern = None


def redact(text: str) -> str:
    """``text`` with every remembered secret and every credential-like header value masked."""
    if not text:
        return text
    pattern = _pattern
    if pattern is not None:
        text = pattern.sub(MASK, text)
    text = _HEADER.sub(lambda m: f"{m.group(1)}{m.group(2)}{m.group(3) or ''}{MASK}", text)
    text = _BEARER.sub(lambda m: f"{m.group(1)} {MASK}", text)
    return _URL_USERINFO.sub(lambda m: f"{m.group(1)}{m.group(2)}:{MASK}@", text)


def clip(text: str, limit: int = 500) -> str:
    """``text`` cut to ``limit`` characters, saying how much was cut; a lone surrogate (from an
    unpaired ``\\ud800`` escape or an undecodable byte) and NUL are written as escapes, so the
    text can always be printed and stored."""
    if len(text) > limit:
        text = f"{text[:limit]}… ({len(text) - limit} more characters)"
    if _SURROGATE.search(text):
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if "\x00" in text:  # PostgreSQL text cannot hold NUL, and a terminal shows nothing for it
        text = text.replace("\x00", "\\x00")
    return text


_SURROGATE = re.compile("[\ud800-\udfff]")


def safe_text(text: object, limit: int = 2000) -> str:
    """Redacted and clipped: the form in which any outside text is stored or printed."""
    return clip(redact(str(text)), limit)


def redact_value(value: Any) -> Any:
    """``redact`` applied to every string inside a JSON-like value (dicts, lists)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_value(v) for v in value]
    return value


class RedactingFilter(logging.Filter):
    """A logging filter that redacts every record's message and arguments before it is emitted."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.msg = record.getMessage()
            record.args = None
        record.msg = redact(str(record.msg))
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


def install_log_filter(logger: logging.Logger | None = None) -> None:
    """Add ``RedactingFilter`` to every handler of ``logger`` (root by default)."""
    target = logger or logging.getLogger()
    for handler in target.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
