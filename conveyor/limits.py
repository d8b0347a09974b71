"""How much of anything outside Conveyor will read, keep or print: JSON depth, CSV field size,
record length, YAML size / aliases / depth, and the length of a value echoed back.

Every limit has a named default; ``conveyor.yaml`` may change them in its ``limits:`` section.
The project's limits become the process's (``use``) when it is loaded, so code that has no project
at hand (an error's text, a reader called by a connector) still keeps to them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

MAX_JSON_DEPTH = 64
"""Canonical messages nest three levels; system records rarely ten. Deeper is an attack or a bug,
and Python's JSON parser would recurse until the interpreter's stack gives out (about 1,000)."""
MAX_RECORD_CHARS = 4 << 20
"""A JSON line or CSV record longer than this is parked unread (and stored clipped): a 50 MB line
is never a real movement, and parsing it would hold hundreds of megabytes."""
MAX_CSV_FIELD = 1 << 20
"""Largest CSV cell read (the ``csv`` module's own default, 128 KiB, ends a file part-way)."""
MAX_YAML_BYTES = 2 << 20
"""Largest ``conveyor.yaml`` or mapping file (the shipped mappings are about 10 KB)."""
MAX_YAML_ALIASES = 100
"""Alias uses (``*name``) in one YAML file."""
MAX_YAML_NODES = 200_000
"""Values in a YAML file once every alias is expanded: nine aliases of nine aliases of … (the
"billion laughs") stay few aliases but expand to gigabytes."""
MAX_YAML_DEPTH = 50
"""Nesting of a YAML file (the mapping schema needs about eight levels)."""
MAX_ECHO_CHARS = 500
"""Longest outside value printed or kept in a reason; longer ones are clipped, saying how much."""
MAX_STORED_RECORD_CHARS = 1 << 20
"""Longest rejected record kept whole in the parked table (longer: clipped, not replayable)."""


@dataclass(frozen=True)
class Limits:
    """The limits of one project (defaults above, ``limits:`` in ``conveyor.yaml``)."""

    max_json_depth: int = MAX_JSON_DEPTH
    max_record_chars: int = MAX_RECORD_CHARS
    max_csv_field: int = MAX_CSV_FIELD
    max_yaml_bytes: int = MAX_YAML_BYTES
    max_yaml_aliases: int = MAX_YAML_ALIASES
    max_yaml_nodes: int = MAX_YAML_NODES
    max_yaml_depth: int = MAX_YAML_DEPTH
    max_echo_chars: int = MAX_ECHO_CHARS
    max_stored_record_chars: int = MAX_STORED_RECORD_CHARS

    @classmethod
    def from_config(cls, spec: Mapping[str, Any] | None) -> Limits:
        """Limits from the ``limits:`` section (validated by the schema; absent keys default)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: int(v) for k, v in (spec or {}).items() if k in names})


DEFAULT = Limits()
_current = DEFAULT


def current() -> Limits:
    """The limits of the project this process loaded last (the defaults before any)."""
    return _current


def use(limits: Limits) -> None:
    """Make ``limits`` the process's limits (``Project.load`` calls it)."""
    global _current
    _current = limits
