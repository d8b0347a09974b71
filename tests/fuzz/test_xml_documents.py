"""Fuzzing the XML document readers: B2MML performance documents (``connectors.b2mml.reader``,
parsed whole and streamed) and LOIPRO IDoc-XML (``connectors.idoc.read_loipro``). A document is
read, or refused whole with ``UnreadableFileError``; a record refused alone keeps its reason."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from connectors.b2mml import reader as b2mml
from connectors.idoc import read_loipro
from conveyor.connector import RawRecord
from conveyor.errors import UnreadableRecordError
from tests.connectors.test_idoc import TWO_ORDERS
from tests.fuzz.harness import FUZZ, reason_of, run
from tests.fuzz.strategies import TRICKY_TEXT, mutated, raw_bytes

REPO = Path(__file__).resolve().parents[2]
B2MML = [p.read_bytes() for p in sorted((REPO / "tests" / "data" / "b2mml").glob("*.xml"))]
XML_PIECES = [
    "<!DOCTYPE x [<!ENTITY e 'boom'>]>",
    "&e;",
    "<![CDATA[",
    "]]>",
    "<?pi x?>",
    "<!-- c -->",
    "</",
    "<a>",
    "xmlns='urn:x'",
    "&#0;",
    "&#x110000;",
]


@st.composite
def documents(draw: st.DrawFn, samples: list[bytes]) -> bytes:
    """A sample document mutated (bytes, or an XML piece inserted), or any bytes."""
    kind = draw(st.integers(0, 5))
    if kind == 0:
        return draw(raw_bytes)
    data = draw(st.sampled_from(samples))
    if kind == 1:
        at = draw(st.integers(0, len(data)))
        piece = draw(st.sampled_from(XML_PIECES + TRICKY_TEXT)).encode("utf-8", "surrogatepass")
        return data[:at] + piece + data[at:]
    return draw(mutated(data))


def _check(records: list[RawRecord] | None) -> None:
    for record in records or []:
        assert record.line is not None
        assert record.line >= 1
        if isinstance(record.data, Exception):
            assert isinstance(record.data, UnreadableRecordError)
            assert reason_of(record.data)
        else:
            assert isinstance(record.data, dict)


Reader = Callable[..., Iterator[RawRecord]]


def _read(reader: Reader, data: bytes, name: str) -> list[RawRecord]:
    return list(reader(io.BytesIO(data), name=name, settings={}))


@pytest.fixture(params=["whole", "streamed"])
def b2mml_mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both ways a B2MML document is read: parsed whole, or streamed (``iterparse``)."""
    if request.param == "streamed":
        monkeypatch.setattr(b2mml, "STREAM_ABOVE", 0)
    return str(request.param)


@FUZZ
@given(documents(B2MML))
@example(b"<?xml version='1.0'?><ProductionPerformance/>")
@example(b"<ProductionPerformance xmlns='http://www.mesa.org/xml/B2MML-V0600'><ID/>")
def test_b2mml_reader(b2mml_mode: str, data: bytes) -> None:
    _check(run(f"b2mml ({b2mml_mode})", lambda: _read(b2mml.read, data, "in.xml")))


@FUZZ
@given(documents([TWO_ORDERS]))
@example(b"<IDOC/>")
@example(b"<LOIPRO05><IDOC><E1AFKOL/></IDOC></LOIPRO05>")
def test_idoc_reader(data: bytes) -> None:
    _check(run("idoc loipro", lambda: _read(read_loipro, data, "LOIPRO.xml")))


def test_the_samples_are_read(b2mml_mode: str) -> None:
    """The unmutated documents give records: the fuzz targets start from readable input."""
    records: list[Any] = [r for data in B2MML for r in _read(b2mml.read, data, "in.xml")]
    assert records
    assert all(isinstance(r.data, dict) for r in records)
    assert len(_read(read_loipro, TWO_ORDERS, "LOIPRO.xml")) == 2
