"""The SAP simulator over loopback HTTP: WSDLs zeep reads in both styles, sessions and commits,
RFC_READ_TABLE paging, faults, hostile requests, and ``conveyor simulate sap``."""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
import requests
import zeep

from connectors.soap import safe_settings
from simulators import Options, load
from simulators.sap import STYLES, SapServer, SapSimulator, serve

ITEM = {
    "MATERIAL": "000000000010001001",
    "PLANT": "1000",
    "STGE_LOC": "0001",
    "MOVE_TYPE": "261",
    "ENTRY_QNT": Decimal("2"),
    "ENTRY_UOM": "KGM",
}


@pytest.fixture
def sim() -> Iterator[SapServer]:
    server = serve()
    yield server
    server.stop()


def client(sim: SapServer, style: str = "rfc") -> zeep.Client:
    return zeep.Client(sim.url + STYLES[style]["wsdl"], settings=safe_settings())


def test_both_wsdls_offer_the_same_functions_in_their_spelling(sim: SapServer) -> None:
    rfc = set(client(sim).service._binding._operations)
    mc = set(client(sim, "mc").service._binding._operations)
    assert "BAPI_GOODSMVT_CREATE" in rfc
    assert "RFC_READ_TABLE" in rfc
    assert {"BapiGoodsmvtCreate", "BapiTransactionCommit", "RfcReadTable"} <= mc


def test_a_document_is_invisible_until_its_session_commits(sim: SapServer) -> None:
    c = client(sim)
    answer = c.service.BAPI_GOODSMVT_CREATE(
        GOODSMVT_CODE={"GM_CODE": "03"},
        GOODSMVT_HEADER={"REF_DOC_NO": "R1"},
        GOODSMVT_ITEM={"item": [ITEM]},
    )
    assert answer.MATERIALDOCUMENT == "4900000001"
    assert sim.simulator.committed() == []
    assert len(sim.simulator.uncommitted()) == 1
    other = client(sim)  # another session's commit does not commit this one
    other.service.BAPI_TRANSACTION_COMMIT(WAIT="X")
    assert sim.simulator.committed() == []
    c.service.BAPI_TRANSACTION_COMMIT(WAIT="X")
    assert [d["XBLNR"] for d in sim.simulator.committed()] == ["R1"]
    stock = sim.simulator.stock.get(("1000", "0001", "000000000010001001", ""))
    assert stock == Decimal("-2")


def test_read_table_pages_and_filters(sim: SapServer) -> None:
    sim.simulator.set_stock_rows(
        [("000000000010001001", "1000", f"{n:04d}", "", Decimal(n)) for n in range(1, 6)]
    )
    c = client(sim, "mc")
    page = c.service.RfcReadTable(
        QueryTable="MARD", Delimiter="|", Rowskips=2, Rowcount=2,
        Fields={"item": [{"Fieldname": "LGORT"}, {"Fieldname": "LABST"}]},
    )  # fmt: skip
    rows = [r.Wa.split("|") for r in page.Data.item]
    assert [(loc.strip(), qty.strip()) for loc, qty in rows] == [
        ("0003", "3.000"),
        ("0004", "4.000"),
    ]
    one = c.service.RfcReadTable(
        QueryTable="MARD", Delimiter="|", Options={"item": [{"Text": "LGORT = '0005'"}]}
    )
    assert len(one.Data.item) == 1


def test_faults_and_unknown_tables(sim: SapServer) -> None:
    c = client(sim)
    sim.simulator.configure(fault_next=1)
    with pytest.raises(zeep.exceptions.Fault, match="busy"):
        c.service.BAPI_TRANSACTION_COMMIT(WAIT="X")
    with pytest.raises(zeep.exceptions.Fault, match="TABLE_NOT_AVAILABLE"):
        c.service.RFC_READ_TABLE(QUERY_TABLE="BSEG")


def test_a_request_with_a_dtd_is_refused(sim: SapServer, tmp_path: Path) -> None:
    secret = tmp_path / "s.txt"
    secret.write_text("CANARY-5150")
    body = (
        f'<?xml version="1.0"?><!DOCTYPE e [<!ENTITY x SYSTEM "file://{secret}">]>'
        '<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/"><e:Body>'
        '<f:RFC_READ_TABLE xmlns:f="urn:sap-com:document:sap:rfc:functions">'
        "<QUERY_TABLE>&x;</QUERY_TABLE></f:RFC_READ_TABLE></e:Body></e:Envelope>"
    )
    answer = requests.post(sim.url + STYLES["rfc"]["endpoint"], data=body, timeout=5)
    assert answer.status_code == 500
    assert "document type declaration" in answer.text
    assert "CANARY" not in answer.text
    assert sim.simulator.calls == []


def test_it_registers_and_starts_from_the_shared_options(tmp_path: Path) -> None:
    factory = load("sap")
    assert factory is SapSimulator
    server = factory.from_options(
        Options(latency_ms=0, extra={"seed_orders": 2, "idoc_out": str(tmp_path / "out")})
    )
    assert len(list((tmp_path / "out").glob("LOIPRO_*.xml"))) == 2
    server.start()
    with urllib.request.urlopen(server.url + STYLES["rfc"]["wsdl"], timeout=5) as answer:  # noqa: S310
        assert b"BAPI_GOODSMVT_CREATE" in answer.read()
    server.stop()


def test_conveyor_simulate_sap_prints_its_url() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "conveyor", "simulate", "sap"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        with urllib.request.urlopen(url + STYLES["mc"]["wsdl"], timeout=10) as answer:  # noqa: S310
            assert b"BapiGoodsmvtCreate" in answer.read()
    finally:
        process.terminate()
        process.wait(10)
