"""What every request body passes before anything reads it: a size limit (413, told from
``Content-Length`` before a byte is read, and counted while streaming for bodies without one)
and, for XML, a refusal of document type declarations (no DTD, no entity, internal or external,
is ever expanded — whichever XML format reads the body later)."""

from __future__ import annotations

import re
from typing import Any

from fastapi import HTTPException, Request
from starlette.types import ASGIApp, Receive, Scope, Send

_DOCTYPE = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.I)


class BodyTooLarge(HTTPException):
    """413: the body is over ``api.max_body_bytes``."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            413, f"request body over the limit of {limit:,} bytes (api.max_body_bytes)"
        )


class BodyLimit:
    """ASGI middleware: a request whose ``Content-Length`` is over ``limit`` is answered 413
    before its body is read, whatever route it was for."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse an announced oversize body; pass everything else on."""
        if scope["type"] == "http":
            for name, value in scope.get("headers", ()):
                if name == b"content-length":
                    try:
                        size = int(value)
                    except ValueError:
                        size = -1
                    if size < 0 or size > self.limit:
                        await _answer(send, 413 if size > 0 else 400, self.limit)
                        return
        await self.app(scope, receive, send)


async def _answer(send: Send, status: int, limit: int) -> None:
    detail = (
        f"request body over the limit of {limit:,} bytes (api.max_body_bytes)"
        if status == 413
        else "Content-Length is not a number"
    )
    body = ('{"detail": "' + detail + '"}').encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, read in chunks and given up with 413 as soon as it passes ``limit``
    (a chunked upload has no ``Content-Length`` to refuse it by)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def xml_refusal(body: bytes) -> str | None:
    """Why an XML body is refused, or None: a ``<!DOCTYPE`` or ``<!ENTITY`` anywhere (entity
    expansion and external entities start there; B2MML and IDoc XML never need one). UTF-16
    bodies are looked at decoded."""
    head = body
    if body.startswith((b"\xff\xfe", b"\xfe\xff")) or (len(body) > 1 and b"\x00" in body[:4]):
        for encoding in ("utf-16", "utf-16-le", "utf-16-be"):
            try:
                head = body.decode(encoding).encode("utf-8")
                break
            except UnicodeDecodeError:
                continue
    found = _DOCTYPE.search(head)
    if found is None:
        return None
    return (
        f"XML with a document type declaration (<!{found.group(1).decode().upper()}) is refused: "
        "entities are never expanded (rule xml.doctype)"
    )


def jsonable(value: Any) -> Any:
    """``value`` with Decimals as exact strings and datetimes as ISO text (for JSON answers)."""
    from datetime import datetime
    from decimal import Decimal

    from conveyor.quantity import format_quantity

    if isinstance(value, Decimal):
        return format_quantity(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value
