"""Notes on a delivery: what a target said alongside a successful posting (SAP's BAPIRET2
``W``/``S``/``I`` rows, a REST target's warnings), whatever the connector.

A connector gives them as ``SendResult.detail["notes"]``: short texts, or dicts with
``type``/``id``/``number``/``message`` (any case) that become ``W M7 123: message``. They are
stored redacted and clipped (``conveyor.redact.safe_text``), at most ``MAX_NOTES`` of them, as a
JSON list in ``deliveries.notes`` (NULL when there are none).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from conveyor.redact import safe_text

MAX_NOTES = 20
"""Notes kept per delivery; the rest are counted in one last line."""
NOTE_CHARS = 500
"""Characters kept per note."""


def note_text(note: Any) -> str:
    """One note as a line: a text as it is, a message dict as ``TYPE ID NUMBER: MESSAGE``."""
    if isinstance(note, Mapping):
        fields = {str(k).lower(): v for k, v in note.items()}
        head = " ".join(
            str(fields[name]).strip()
            for name in ("type", "id", "number")
            if fields.get(name) not in (None, "")
        )
        message = str(fields.get("message") or fields.get("text") or "").strip()
        if not message and not head:
            return json.dumps(dict(note), default=str, ensure_ascii=False)
        return f"{head}: {message}" if head and message else head or message
    return str(note).strip()


def delivery_notes(detail: Mapping[str, Any] | None) -> list[str]:
    """The notes of a target's answer (``detail["notes"]``), as stored: redacted, clipped, at most
    ``MAX_NOTES`` (then a line saying how many more there were); empty lines are dropped."""
    raw = (detail or {}).get("notes")
    if raw is None:
        return []
    if isinstance(raw, str | Mapping):
        raw = [raw]
    lines = [line for line in (note_text(n) for n in raw) if line]
    kept = [safe_text(line, NOTE_CHARS) for line in lines[:MAX_NOTES]]
    if len(lines) > MAX_NOTES:
        kept.append(f"… {len(lines) - MAX_NOTES} more notes")
    return kept


def encode_notes(notes: list[str]) -> str | None:
    """The ``deliveries.notes`` value: a JSON list, or None when there are no notes."""
    return json.dumps(notes, ensure_ascii=False) if notes else None


def decode_notes(value: str | None) -> list[str]:
    """The notes stored in ``deliveries.notes`` (empty when NULL or unreadable)."""
    if not value:
        return []
    try:
        notes = json.loads(value)
    except ValueError:
        return [value]
    return [str(n) for n in notes] if isinstance(notes, list) else [str(notes)]
