"""Strategies shared by the fuzz targets: JSON-like values, valid documents with mutations (cut,
insert, repeat, replace a stretch), and raw bytes."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator
from decimal import Decimal
from typing import Any

from hypothesis import strategies as st

TRICKY_TEXT = [
    "",
    " ",
    "0",
    "-0",
    "1e400",
    "NaN",
    "Infinity",
    "-1",
    "0.0000000000001",
    "9" * 40,
    "\x00",
    "\ud800",
    "\ufeff",
    "＝1+1",
    "../../etc/passwd",
    "%s%n",
    "null",
    "true",
    "[]",
    "{}",
    "\u202e",
    "原料",
    "\r\n",
    '"',
    "'",
    "\\",
]
"""Values that broke parsers somewhere before: empty, huge, signs, NUL, lone surrogate, BOM, …"""

texts = st.one_of(st.sampled_from(TRICKY_TEXT), st.text(max_size=30))
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.decimals(allow_nan=False, allow_infinity=False, places=None).map(Decimal),
    st.floats(allow_nan=False, allow_infinity=False),
    texts,
)
json_values: st.SearchStrategy[Any] = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(texts, children, max_size=4),
    ),
    max_leaves=12,
)
"""Any JSON-like value (Decimal numbers, as the parsers produce)."""

raw_bytes = st.one_of(
    st.binary(max_size=400),
    st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
)


@st.composite
def mutated(draw: st.DrawFn, document: str | bytes) -> bytes:
    """``document`` (text or bytes) with up to three edits: a stretch cut, text inserted, a
    stretch repeated, a byte replaced, or the end cut off."""
    data = bytearray(document.encode() if isinstance(document, str) else document)
    for _ in range(draw(st.integers(0, 3))):
        if not data:
            break
        kind = draw(st.sampled_from(["cut", "insert", "repeat", "replace", "truncate"]))
        at = draw(st.integers(0, len(data) - 1))
        end = min(len(data), at + draw(st.integers(1, 40)))
        if kind == "cut":
            del data[at:end]
        elif kind == "insert":
            piece = draw(st.one_of(st.sampled_from(TRICKY_TEXT), st.text(max_size=8)))
            data[at:at] = piece.encode("utf-8", "surrogatepass")
        elif kind == "repeat":
            data[at:at] = data[at:end] * draw(st.integers(1, 5))
        elif kind == "replace":
            data[at] = draw(st.integers(0, 255))
        else:
            del data[at:]
    return bytes(data)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """The path (keys and indexes) of every value inside ``value``, containers included."""
    if isinstance(value, dict):
        items: Iterable[tuple[Any, Any]] = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return
    for key, child in items:
        yield (*prefix, key)
        yield from _paths(child, (*prefix, key))


def replace_leaves(value: Any, draw: st.DrawFn, edits: int = 3) -> Any:
    """A copy of ``value`` with up to ``edits`` values inside it replaced by any JSON value or
    removed: a valid-ish document with wrong types or missing keys in places."""
    out = copy.deepcopy(value)
    paths = list(_paths(out))
    for _ in range(draw(st.integers(0, edits)) if paths else 0):
        path = draw(st.sampled_from(paths))
        parent = out
        try:
            for step in path[:-1]:
                parent = parent[step]
            if draw(st.booleans()):
                parent[path[-1]] = draw(json_values)
            elif isinstance(parent, dict):
                del parent[path[-1]]
            else:
                parent.pop(path[-1])
        except (KeyError, IndexError, TypeError):
            continue  # an earlier edit removed or replaced the way there
    return out
