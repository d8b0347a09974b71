"""The ``loipro`` document format: LOIPRO IDoc-XML (LOIPRO01 and newer basic types) as raw
records, mapped to ``production_order`` messages with components and taken into a ledger — and
files with DTDs or entities refused unread."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from sqlalchemy import select

from connectors.idoc import read_loipro
from conveyor import formats
from conveyor.config import Project
from conveyor.errors import UnreadableFileError
from conveyor.ledger import Ledger
from conveyor.ledger.db import make_engine
from conveyor.ledger.models import MessageRow
from conveyor.mapping import MappingEngine
from conveyor.mapping.ingest import Ingestion
from conveyor.routing import Router
from simulators.sap import SapSimulator
from tests.support.scripted import Scripted

REPO = Path(__file__).resolve().parents[2]


def component(pos: str, material: str, qty: str, uom: str, long: bool) -> str:
    matnr = f"<MATNR_LONG>{material}</MATNR_LONG>" if long else f"<MATNR>{material}</MATNR>"
    return (
        f"<E1RESBL SEGMENT='1'><RSPOS>{pos}</RSPOS>{matnr}<WERKS>1000</WERKS>"
        f"<LGORT>0001</LGORT><BDMNG>{qty}</BDMNG><MEINS>{uom}</MEINS></E1RESBL>"
    )


def idoc(docnum: str, aufnr: str, *, basic_type: str = "LOIPRO05", long: bool = True) -> str:
    matnr = (
        "<MATNR>000000000050005001</MATNR><MATNR_LONG>50005001</MATNR_LONG>"
        if long
        else "<MATNR>000000000050005001</MATNR>"
    )
    return (
        f"<IDOC BEGIN='1'><EDI_DC40 SEGMENT='1'><TABNAM>EDI_DC40</TABNAM><DOCNUM>{docnum}</DOCNUM>"
        f"<IDOCTYP>{basic_type}</IDOCTYP><MESTYP>LOIPRO</MESTYP><SNDPRN>PRDCLNT100</SNDPRN>"
        "<CREDAT>20261120</CREDAT><CRETIM>101500</CRETIM></EDI_DC40>"
        f"<E1AFKOL SEGMENT='1'><AUFNR>{aufnr}</AUFNR><AUART>PP01</AUART><WERKS>1000</WERKS>"
        f"{matnr}<GAMNG>120.000</GAMNG><GMEIN>ST</GMEIN><GSTRS>20261123</GSTRS>"
        "<GSUZS>060000</GSUZS><GLTRS>20261125</GLTRS><GLUZS>180000</GLUZS>"
        "<E1JSTKL SEGMENT='1'><STAT>I0001</STAT></E1JSTKL>"
        "<E1JSTKL SEGMENT='1'><STAT>I0002</STAT></E1JSTKL>"
        "<E1AFPOL SEGMENT='1'><POSNR>0001</POSNR><LGORT>0020</LGORT></E1AFPOL>"
        "<E1AFFLL SEGMENT='1'><E1AFVOL SEGMENT='1'><VORNR>0010</VORNR><LTXA1>Molding</LTXA1>"
        f"{component('0010', '10001001', '240.000', 'KGM', long)}"
        f"{component('0020', '10002001', '480.000', 'ST', long)}"
        "</E1AFVOL></E1AFFLL></E1AFKOL></IDOC>"
    )


TWO_ORDERS = (
    "<?xml version='1.0' encoding='UTF-8'?><LOIPRO05>"
    + idoc("0000000000456001", "000001000123")
    + idoc("0000000000456002", "000001000124", basic_type="LOIPRO01", long=False)
    + "</LOIPRO05>"
).encode()


def read(data: bytes) -> list[dict[str, object]]:
    return [r.data for r in read_loipro(io.BytesIO(data), name="LOIPRO.xml", settings={})]  # type: ignore[misc]


def test_two_orders_become_two_records_with_components_and_status() -> None:
    first, second = read(TWO_ORDERS)
    assert (first["DOCNUM"], first["AUFNR"], first["MATNR"]) == (
        "0000000000456001",
        "000001000123",
        "50005001",  # MATNR_LONG wins where the basic type has it
    )
    assert (second["IDOCTYP"], second["MATNR"]) == ("LOIPRO01", "000000000050005001")
    assert first["STATUS"] == "REL"
    assert first["LGORT"] == "0020"
    assert [c["MATNR"] for c in first["RESB"]] == ["10001001", "10002001"]  # type: ignore[index]
    assert first["RESB"][0]["BDMNG"] == "240.000"  # type: ignore[index]


def test_the_format_is_registered_and_maps_to_production_orders_in_a_ledger(
    tmp_path: Path,
) -> None:
    reader = formats.reader("loipro")
    records = list(reader(io.BytesIO(TWO_ORDERS), name="LOIPRO.xml", settings={}))
    assert {r.message_type for r in records} == {"production_order"}
    engine = MappingEngine.load(Project.load(REPO))
    db = make_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
    ledger = Ledger(db, Router.from_config([]))
    ledger.upgrade()
    ingestion = Ingestion(ledger, engine, "sap")
    for raw in records:
        ingestion.add(raw, raw.message_type)
    counts = ingestion.finish()
    assert counts["accepted"] == 2, counts
    with db.connect() as conn:
        rows = conn.execute(select(MessageRow.key, MessageRow.payload, MessageRow.type)).all()
    assert sorted(r.key for r in rows) == [
        "0000000000456001/000001000123",
        "0000000000456002/000001000124",
    ]
    payload = json.loads(rows[0].payload)
    assert payload["status"] == "released"
    assert payload["material"] == "FG-5001"
    assert [c["material"] for c in payload["components"]] == ["RM-1001", "RM-2001"]
    assert payload["components"][0]["quantity"] == "240"
    db.dispose()


def test_the_simulator_emits_idocs_the_reader_takes(tmp_path: Path) -> None:
    simulator = SapSimulator(seed_orders=3)
    files = simulator.emit_idocs(tmp_path, per_file=2)
    assert len(files) == 2
    records = [r for f in files for r in read_loipro(f.open("rb"), name=f.name, settings={})]
    assert len(records) == 3
    assert len({(r.data["DOCNUM"], r.data["AUFNR"]) for r in records}) == 3
    assert all(r.data["RESB"] and r.data["STATUS"] == "REL" for r in records)
    simulator.close()


@pytest.fixture
def canary(tmp_path: Path) -> Path:
    path = tmp_path / "secret.txt"
    path.write_text("CANARY-7d41")
    return path


def hostile(kind: str, canary: Path, url: str) -> bytes:
    if kind == "file-entity":
        dtd = f'<!DOCTYPE IDOC [<!ENTITY x SYSTEM "file://{canary}">]>'
        body = "&x;"
    elif kind == "network-entity":
        dtd = f'<!DOCTYPE IDOC [<!ENTITY x SYSTEM "{url}/entity">]>'
        body = "&x;"
    elif kind == "external-dtd":
        dtd = f'<!DOCTYPE IDOC SYSTEM "{url}/loipro.dtd">'
        body = "x"
    else:  # billion laughs
        lol = "".join(f'<!ENTITY l{n} "{("&l" + str(n - 1) + ";") * 10}">' for n in range(1, 10))
        dtd = f'<!DOCTYPE IDOC [<!ENTITY l0 "lol">{lol}]>'
        body = "&l9;"
    return (
        f"<?xml version='1.0'?>{dtd}<IDOC><EDI_DC40><DOCNUM>1</DOCNUM></EDI_DC40>"
        f"<E1AFKOL><AUFNR>{body}</AUFNR></E1AFKOL></IDOC>"
    ).encode()


@pytest.mark.parametrize("kind", ["file-entity", "network-entity", "external-dtd", "laughs"])
def test_hostile_idocs_are_refused_unread(kind: str, canary: Path, server: Scripted) -> None:
    with pytest.raises(UnreadableFileError, match="document type declaration") as caught:
        read(hostile(kind, canary, server.url))
    assert "CANARY" not in str(caught.value)
    assert server.received == []  # no connection was made for an entity or a DTD
