"""XML external entities, entity expansion and DTDs are refused everywhere XML is read.

Every place that parses XML (found by ``test_every_xml_parse_site_is_covered``, which greps the
tree) gets each hostile document: an external entity naming a local secret file, one naming a
URL, an external DTD, a parameter entity, the "billion laughs" and a quadratic blow-up. Each must
be refused with the project's typed error (or the reader's refusal of the record), quickly, with
the secret file's text nowhere in what comes back, and with no request reaching the listener the
URLs point at. The API's own guard for XML bodies is tested in tests/conveyor/api/test_security.py.
"""

from __future__ import annotations

import io
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors.b2mml import reader as b2mml_reader
from connectors.b2mml.xml import schema as b2mml_schema
from connectors.idoc import read_loipro
from connectors.sap import SapConnector
from connectors.soap import forget_wsdls
from conveyor.errors import ConveyorError
from conveyor.reconcile.sources.xml import xml_records
from simulators.sap import STYLES, UnsafeXml, wsdl
from simulators.sap import parse_safely as simulator_parse
from tests.connectors.test_idoc import TWO_ORDERS
from tests.support.scripted import Answer, Scripted, serving

REPO = Path(__file__).resolve().parents[2]
SECRET = "TOP-SECRET-9f1c2e"
B2MML = (REPO / "tests" / "data" / "b2mml" / "production_performance_v0600.xml").read_bytes()
SOAP_ANSWER = (
    b'<?xml version="1.0" encoding="utf-8"?><soap-env:Envelope '
    b'xmlns:soap-env="http://schemas.xmlsoap.org/soap/envelope/"><soap-env:Body>'
    b"<MARKER/></soap-env:Body></soap-env:Envelope>"
)
SNAPSHOT = (
    b'<?xml version="1.0"?><MaterialInformation><MaterialLot><ID>L-1</ID></MaterialLot>'
    b"</MaterialInformation>"
)
LAUGHS = (
    '<!DOCTYPE r [<!ENTITY lol0 "lol">'
    + "".join(f'<!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10}">' for i in range(1, 10))
    + "]>"
)


def attacks(secret_file: Path, url: str) -> dict[str, tuple[str, str]]:
    """Name → (document type declaration, entity reference placed in the content)."""
    return {
        "external entity (file)": (
            f'<!DOCTYPE r [<!ENTITY x SYSTEM "file://{secret_file}">]>',
            "&x;",
        ),
        "external entity (network)": (f'<!DOCTYPE r [<!ENTITY x SYSTEM "{url}/entity">]>', "&x;"),
        "external DTD": (f'<!DOCTYPE r SYSTEM "{url}/external.dtd">', ""),
        "parameter entity": (f'<!DOCTYPE r [<!ENTITY % p SYSTEM "{url}/p.dtd"> %p;]>', ""),
        "billion laughs": (LAUGHS, "&lol9;"),
        "quadratic blow-up": (f'<!DOCTYPE r [<!ENTITY a "{"a" * 50_000}">]>', "&a;" * 2000),
    }


def hostile(document: bytes, doctype: str, reference: str, marker: bytes) -> bytes:
    """``document`` with ``doctype`` after its XML declaration and ``reference`` after the first
    ``marker``."""
    declaration = re.match(rb"<\?xml[^>]*\?>", document)
    head = declaration.group() if declaration else b""
    body = document[len(head) :]
    body = body.replace(marker, marker + reference.encode(), 1)
    return head + doctype.encode() + body


# ---------------------------------------------------------------------- the places XML is read
def _b2mml(data: bytes, tmp: Path) -> Any:
    return list(b2mml_reader.read(io.BytesIO(data), name="in.xml", settings={}))


def _b2mml_streamed(data: bytes, tmp: Path) -> Any:
    saved = b2mml_reader.STREAM_ABOVE
    b2mml_reader.STREAM_ABOVE = 0
    try:
        return list(b2mml_reader.read(io.BytesIO(data), name="in.xml", settings={}))
    finally:
        b2mml_reader.STREAM_ABOVE = saved


def _idoc(data: bytes, tmp: Path) -> Any:
    return list(read_loipro(io.BytesIO(data), name="LOIPRO.xml", settings={}))


def _reconcile_snapshot(data: bytes, tmp: Path) -> Any:
    path = tmp / "snapshot.xml"
    path.write_bytes(data)
    records = list(xml_records(path))
    refused = [r for _line, r in records if isinstance(r, Exception)]
    if refused:
        raise refused[0]
    return records


def _simulator_request(data: bytes, tmp: Path) -> Any:
    return simulator_parse(data)


def _xsd(data: bytes, tmp: Path) -> Any:
    path = tmp / f"schema-{time.monotonic_ns()}.xsd"
    path.write_bytes(data)
    return b2mml_schema(path)


XSD = (
    b'<?xml version="1.0"?><xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema">'
    b'<xs:element name="a" type="xs:string"/><xs:annotation><xs:documentation>MARKER'
    b"</xs:documentation></xs:annotation></xs:schema>"
)

READERS: dict[str, tuple[Callable[[bytes, Path], Any], bytes, bytes]] = {
    "B2MML reader (whole)": (_b2mml, B2MML, b"<ID>"),
    "B2MML reader (streamed)": (_b2mml_streamed, B2MML, b"<ID>"),
    "B2MML XSD loading": (_xsd, XSD, b"MARKER"),
    "IDoc-XML reader": (_idoc, TWO_ORDERS, b"<AUFNR>"),
    "reconciliation XML snapshot": (_reconcile_snapshot, SNAPSHOT, b"<ID>"),
    "SAP simulator requests": (_simulator_request, SOAP_ANSWER, b"<MARKER/>"),
}
REFUSALS: tuple[type[BaseException], ...] = (ConveyorError, UnsafeXml, ValueError)


@pytest.fixture(scope="module")
def listener() -> Iterator[Scripted]:
    """A server the hostile URLs point at; it must receive nothing."""
    with serving() as server:
        yield server


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "secret.txt"
    path.write_text(SECRET, encoding="utf-8")
    return path


def _cases() -> list[Any]:
    names = attacks(Path("/x"), "http://x")
    return [pytest.param(r, a, id=f"{r}: {a}") for r in READERS for a in names]


@pytest.mark.parametrize(("reader", "attack"), _cases())
def test_hostile_xml_is_refused(
    reader: str, attack: str, tmp_path: Path, secret_file: Path, listener: Scripted
) -> None:
    read, sample, marker = READERS[reader]
    doctype, reference = attacks(secret_file, listener.url)[attack]
    data = hostile(sample, doctype, reference, marker)
    started = time.monotonic()
    with pytest.raises(REFUSALS) as refused:
        read(data, tmp_path)
    assert time.monotonic() - started < 20  # expanded, the laughs would be gigabytes
    assert SECRET not in str(refused.value)
    assert "lollol" not in str(refused.value)
    assert listener.received == []


def test_the_unchanged_samples_are_read(tmp_path: Path) -> None:
    """Each place reads its sample when it is not hostile: the refusals above are the DTD's."""
    for name, (read, sample, _marker) in READERS.items():
        assert read(sample, tmp_path) is not None, name


# ---------------------------------------------------------------------- SOAP through zeep
@pytest.fixture
def soap_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[Scripted]:
    """A server that hands out the SAP simulator's WSDL, then the answers queued."""
    monkeypatch.setenv("CONVEYOR_SAP_USERNAME", "RFC_HUB")
    monkeypatch.setenv("CONVEYOR_SAP_PASSWORD", "soap-pass-1c9e")
    forget_wsdls()
    with serving() as server:
        yield server
    forget_wsdls()


def _sap(server: Scripted, tmp_path: Path) -> SapConnector:
    return SapConnector(
        "sap",
        {
            "wsdl": server.url + STYLES["rfc"]["wsdl"],
            "timeout_s": 2,
            "wsdl_cache": str(tmp_path / "wsdl.db"),
        },
    )


@pytest.mark.parametrize("attack", list(attacks(Path("/x"), "http://x")))
def test_a_hostile_soap_answer_is_refused(
    attack: str, tmp_path: Path, secret_file: Path, listener: Scripted, soap_server: Scripted
) -> None:
    doctype, reference = attacks(secret_file, listener.url)[attack]
    answer = hostile(SOAP_ANSWER, doctype, reference, b"<MARKER/>")
    soap_server.answer(
        Answer(200, wsdl("rfc", soap_server.url), {"Content-Type": "text/xml"}),
        Answer(200, answer, {"Content-Type": "text/xml; charset=utf-8"}),
    )
    connector = _sap(soap_server, tmp_path)
    with pytest.raises(ConveyorError) as refused:
        connector.lookup(message_type="material_consumption", key="mes:X-1/1")
    assert SECRET not in str(refused.value)
    assert "lollol" not in str(refused.value)
    assert listener.received == []
    assert len(soap_server.received) == 2  # the WSDL, then the one call


@pytest.mark.parametrize("attack", list(attacks(Path("/x"), "http://x")))
def test_a_hostile_wsdl_is_refused(
    attack: str, tmp_path: Path, secret_file: Path, listener: Scripted, soap_server: Scripted
) -> None:
    doctype, reference = attacks(secret_file, listener.url)[attack]
    document = hostile(wsdl("rfc", soap_server.url), doctype, reference, b"<wsdl:types>")
    assert reference.encode() in document or not reference
    soap_server.answer(Answer(200, document, {"Content-Type": "text/xml"}))
    with pytest.raises(ConveyorError) as refused:
        _sap(soap_server, tmp_path).check()
    assert SECRET not in str(refused.value)
    assert listener.received == []


# ---------------------------------------------------------------------- nothing missed
COVERED = {
    "connectors/b2mml/reader.py": "B2MML reader (whole), B2MML reader (streamed)",
    "connectors/b2mml/xml.py": "B2MML XSD loading (and the one parser of the B2MML reader)",
    "connectors/b2mml/__init__.py": "parses only the schedule it wrote itself, with safe_parser",
    "connectors/idoc.py": "IDoc-XML reader",
    "conveyor/reconcile/sources/xml.py": "reconciliation XML snapshot",
    "connectors/soap.py": "test_a_hostile_soap_answer_is_refused, test_a_hostile_wsdl_is_refused",
    "simulators/sap.py": "SAP simulator requests",
    "conveyor/demo/mes.py": "the demo MES reads the schedules the hub wrote, with safe_parser",
}
PARSE = re.compile(
    r"etree\.(fromstring|parse|iterparse|XML|XMLParser|XMLSchema)\(|"
    r"from zeep import Client|Document\(|xml\.(etree|dom|sax)|minidom|expat"
)


def test_every_xml_parse_site_is_covered() -> None:
    """A new place that parses XML fails this test until it is added above with its test."""
    found = set()
    for folder in ("conveyor", "connectors", "simulators"):
        for path in (REPO / folder).rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            if PARSE.search(text):
                found.add(path.relative_to(REPO).as_posix())
    print("XML parse sites:", ", ".join(sorted(found)))
    assert found == set(COVERED), f"not covered: {sorted(found - set(COVERED))}"
