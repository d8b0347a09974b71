"""The exception tree: every error Conveyor raises says whether retrying can help.

    ConveyorError
     ├── TransientError          retry with backoff (connection refused, timeout, HTTP 429/5xx)
     │    └── AmbiguousDeliveryError   the target may have committed: look up before posting again
     └── TerminalError           retrying cannot help: park with the reason
          ├── ConfigError        a config, mapping or master-data file is wrong
          ├── RecordError        one input record is invalid (field, value, rule)
          │    ├── ValidationError   fails a canonical schema
          │    ├── MappingError      cannot be mapped (no crosswalk row, unparseable value)
          │    └── UnreadableRecordError  cannot even be read (bytes, JSON syntax, over a limit)
          ├── UnreadableFileError  a whole input file cannot be read (its encoding is unknown)
          ├── RejectedError      the target system refused the document (business error)
          └── NeedsCheckError    outcome unknown and the target cannot be asked: a person decides

The delivery worker decides from the exception alone: ``is_transient(exc)`` → retry, else park.
Connectors classify errors where they happen; every HTTP-speaking connector does it in one place,
``conveyor.runtime.http`` (which uses ``classify_http_status``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


class ConveyorError(Exception):
    """Root of every error Conveyor raises on purpose."""

    transient: bool = False

    def as_dict(self) -> dict[str, Any]:
        """A JSON-friendly description, for parking records and ``--json`` output."""
        return {"error": type(self).__name__, "message": str(self), "transient": self.transient}


class TransientError(ConveyorError):
    """Retrying later may succeed; ``retry_after_s`` is the wait the target asked for (an HTTP
    ``Retry-After``), which the worker's backoff never undercuts."""

    transient = True
    no_answer: bool = False
    """The target could not be reached or kept silent until the timeout (refused, unreachable,
    timed out): it is likely down as a whole, not just for this document. The worker then leaves
    the target alone for a while (``conveyor.delivery.breaker``) instead of letting each of its
    deliveries wait out a timeout in turn."""

    def __init__(self, *args: object, retry_after_s: float | None = None) -> None:
        super().__init__(*args)
        self.retry_after_s = retry_after_s


class AmbiguousDeliveryError(TransientError):
    """The request may have reached the target (timeout after send): check before re-posting."""


class TerminalError(ConveyorError):
    """Retrying cannot succeed; the item is parked with the reason."""


class ConfigError(TerminalError):
    """A configuration, mapping or master-data file is invalid."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None) -> None:
        self.file = file
        self.line = line
        where = f"{file}:{line}: " if file and line else (f"{file}: " if file else "")
        super().__init__(f"{where}{message}")


@dataclass
class Problem:
    """One precise reason a record was refused: where, which field, which value, which rule."""

    field: str
    value: Any
    rule: str
    message: str
    file: str | None = None
    line: int | None = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form (values rendered as text so Decimals and dates survive)."""
        d: dict[str, Any] = {
            "field": self.field,
            "value": None if self.value is None else _echo(str(self.value)),
            "rule": self.rule,
            "message": _echo(self.message, 2),
        }
        if self.file is not None:
            d["file"] = self.file
        if self.line is not None:
            d["line"] = self.line
        d.update(self.extra)
        return d

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}: " if self.file else ""
        value = _echo(repr(self.value))
        return f"{where}{self.field}: {_echo(self.message, 2)} (value={value}, rule={self.rule})"


def _echo(text: str, times: int = 1) -> str:
    """An outside value as it may be printed or kept: clipped to ``limits.max_echo_chars`` (a
    message that quotes the value: to ``times`` that), so a 50 MB cell is never echoed or stored
    whole."""
    from conveyor.limits import current
    from conveyor.redact import clip

    return clip(text, current().max_echo_chars * times)


class RecordError(TerminalError):
    """One input record is invalid; ``problems`` says exactly where and why."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems) or "invalid record")

    def as_dict(self) -> dict[str, Any]:
        d = super().as_dict()
        d["problems"] = [p.as_dict() for p in self.problems]
        return d


class ValidationError(RecordError):
    """A message does not satisfy its canonical JSON Schema or a semantic rule."""


class MappingError(RecordError):
    """A record cannot be mapped: missing crosswalk row, unparseable value, failed condition."""


class UnreadableRecordError(RecordError, ValueError):
    """One record of a file cannot be read at all: bytes that are not text in the file's
    encoding, broken JSON, nesting or length over a limit. It stands in the record's place, so the
    record is parked with its line instead of ending the file (a ``ValueError`` as well, for
    readers that hand parse errors through). ``text`` is the record's source text, clipped."""

    def __init__(self, message: str, *, rule: str = "parse", text: str | None = None) -> None:
        self.text = text
        super().__init__([Problem("$", None, rule, message)])
        self.args = (message,)

    def __str__(self) -> str:
        return str(self.args[0])


class UnreadableFileError(TerminalError):
    """A whole input file cannot be read (no encoding fits it with confidence): nothing of it is
    taken, and the message names the file and the encodings tried."""


class RejectedError(TerminalError):
    """The target refused the document (4xx business error, ERP validation)."""


class NeedsCheckError(TerminalError):
    """Outcome unknown and the connector cannot look the document up: a person must check."""


def is_transient(exc: BaseException) -> bool:
    """True when retrying may help. Unknown exceptions count as terminal: park, do not loop."""
    return isinstance(exc, ConveyorError) and exc.transient


def classify_http_status(
    status: int, text: str = "", *, retry_after_s: float | None = None
) -> ConveyorError | None:
    """Map an HTTP status to the error it means: 502/504 ambiguous (a gateway gave up while the
    target may have committed), 408/429/5xx transient (429/503 carry ``retry_after_s``), other
    4xx terminal. ``text`` is redacted and clipped: it is stored and printed."""
    if status < 400:
        return None
    from conveyor.redact import safe_text

    message = f"HTTP {status}: {safe_text(text, 500)}" if text else f"HTTP {status}"
    if status in (502, 504):
        return AmbiguousDeliveryError(message)
    if status in (429, 503):
        return TransientError(message, retry_after_s=retry_after_s)
    if status >= 500 or status == 408:
        return TransientError(message)
    return RejectedError(message)
