"""The generic SOAP connector against scripted loopback servers: hostile WSDLs and answers
(external entities, entity expansion, DTDs, external imports) are refused without reading files
or opening connections; answers that are not SOAP are classified; auth reaches the wire."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors.sap import SapConnector
from connectors.soap import SoapConnector, forget_wsdls
from conveyor.errors import AmbiguousDeliveryError, ConfigError, TransientError
from simulators.sap import wsdl
from tests.support.scripted import Answer, Scripted

CANARY = "CANARY-93be"


@pytest.fixture(autouse=True)
def fresh_wsdls() -> Iterator[None]:
    forget_wsdls()
    yield
    forget_wsdls()


@pytest.fixture
def canary(tmp_path: Path) -> Path:
    path = tmp_path / "secret.txt"
    path.write_text(CANARY)
    return path


def wsdl_file(tmp_path: Path, endpoint: str) -> str:
    path = tmp_path / "sap.wsdl"
    path.write_bytes(wsdl("rfc", endpoint))
    return str(path)


def connector(wsdl_path: str, **settings: object) -> SoapConnector:
    return SoapConnector(
        "erp",
        {"wsdl": wsdl_path, "operation": "BAPI_TRANSACTION_COMMIT", "timeout_s": 3, **settings},
    )


def doctype(kind: str, canary: Path, url: str) -> str:
    if kind == "file-entity":
        return f'<!DOCTYPE d [<!ENTITY x SYSTEM "file://{canary}">]>'
    if kind == "network-entity":
        return f'<!DOCTYPE d [<!ENTITY x SYSTEM "{url}/entity">]>'
    lol = "".join(f'<!ENTITY l{n} "{("&l" + str(n - 1) + ";") * 10}">' for n in range(1, 10))
    return f'<!DOCTYPE d [<!ENTITY l0 "lol">{lol}]>'


KINDS = ["file-entity", "network-entity", "laughs"]


@pytest.mark.parametrize("kind", KINDS)
def test_a_hostile_wsdl_is_refused_unread(
    kind: str, canary: Path, server: Scripted, tmp_path: Path
) -> None:
    text = wsdl("rfc", server.url).decode()
    prolog, _, rest = text.partition("?>")
    ref = "&l9;" if kind == "laughs" else "&x;"
    hostile = f"{prolog}?>{doctype(kind, canary, server.url)}{rest}".replace(
        "<wsdl:types>", f"<wsdl:documentation>{ref}</wsdl:documentation><wsdl:types>", 1
    )
    path = tmp_path / "hostile.wsdl"
    path.write_text(hostile)
    with pytest.raises(ConfigError, match=r"WSDL .* refused") as caught:
        connector(str(path)).check()
    assert CANARY not in str(caught.value)
    assert server.received == []


def test_a_wsdl_importing_from_the_network_is_refused(server: Scripted, tmp_path: Path) -> None:
    text = (
        wsdl("rfc", server.url)
        .decode()
        .replace(
            "<wsdl:types>",
            f'<wsdl:import namespace="urn:x" location="{server.url}/more.wsdl"/><wsdl:types>',
            1,
        )
    )
    path = tmp_path / "importing.wsdl"
    path.write_text(text)
    with pytest.raises(ConfigError, match="refused"):
        connector(str(path)).check()
    assert server.received == []


@pytest.mark.parametrize("kind", KINDS)
def test_a_hostile_answer_is_refused_unread(
    kind: str, canary: Path, server: Scripted, tmp_path: Path
) -> None:
    ref = "&l9;" if kind == "laughs" else "&x;"
    body = (
        f"<?xml version='1.0'?>{doctype(kind, canary, server.url)}"
        '<soap-env:Envelope xmlns:soap-env="http://schemas.xmlsoap.org/soap/envelope/">'
        '<soap-env:Body><n0:BAPI_TRANSACTION_COMMIT.Response xmlns:n0="urn:sap-com:document:'
        f'sap:rfc:functions"><RETURN><MESSAGE>{ref}</MESSAGE></RETURN>'
        "</n0:BAPI_TRANSACTION_COMMIT.Response></soap-env:Body></soap-env:Envelope>"
    ).encode()
    server.answer(Answer(body=body, headers={"Content-Type": "text/xml"}))
    with pytest.raises(AmbiguousDeliveryError) as caught:
        connector(wsdl_file(tmp_path, server.url)).send({"WAIT": "X"}, message_type="t", key="k")
    assert CANARY not in str(caught.value)
    assert len(server.received) == 1  # the posting itself, and no fetch for an entity


def test_an_html_login_page_is_classified_not_a_traceback(server: Scripted, tmp_path: Path) -> None:
    page = b"<html><head><title>Logon</title></head><body><form>user<input></form></body></html>"
    server.answer(
        Answer(body=page, headers={"Content-Type": "text/html"}),
        Answer(body=page, headers={"Content-Type": "text/html"}),
    )
    soap = connector(wsdl_file(tmp_path, server.url))
    with pytest.raises(AmbiguousDeliveryError, match="not readable SOAP") as caught:
        soap.send({"WAIT": "X"}, message_type="t", key="k")
    assert "Logon" in caught.value.exchange["response"]  # type: ignore[attr-defined]
    with pytest.raises(TransientError, match="not readable SOAP"):
        soap.call("BAPI_TRANSACTION_COMMIT", {}, sends=False)


def test_an_http_error_page_is_classified_by_status(server: Scripted, tmp_path: Path) -> None:
    server.answer(Answer(status=403, body=b"<html>Forbidden</html>"))
    from conveyor.errors import RejectedError

    with pytest.raises(RejectedError, match="403"):
        connector(wsdl_file(tmp_path, server.url)).send({}, message_type="t", key="k")


def test_an_answer_over_the_limit_is_not_read(server: Scripted, tmp_path: Path) -> None:
    server.answer(Answer(body=b"<x>" + b"a" * 5000 + b"</x>"))
    soap = connector(wsdl_file(tmp_path, server.url), max_answer_bytes=2048)
    with pytest.raises(AmbiguousDeliveryError, match="over 2048 bytes"):
        soap.send({}, message_type="t", key="k")


def test_basic_auth_reaches_the_wire_and_never_the_error(
    server: Scripted, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONVEYOR_ERP_USERNAME", "HUB")
    monkeypatch.setenv("CONVEYOR_ERP_PASSWORD", "pw-basic-8812")
    server.answer(Answer(status=401, body=b"Unauthorized: Basic SFVCOnB3LWJhc2ljLTg4MTI="))
    with pytest.raises(Exception, match="401") as caught:
        connector(wsdl_file(tmp_path, server.url), auth="basic").send({}, message_type="t", key="k")
    assert server.received[0].headers["Authorization"].startswith("Basic ")
    assert "SFVCOnB3LWJhc2ljLTg4MTI" not in str(caught.value)


def test_a_missing_wsdl_file_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="neither a file"):
        SapConnector("sap", {"wsdl": "/nowhere/sap.wsdl"}).check()


def test_the_generic_connector_posts_and_reads_the_reference(tmp_path: Path) -> None:
    from simulators.sap import STYLES, serve

    sim = serve()
    try:
        soap = SoapConnector(
            "erp",
            {
                "wsdl": sim.url + STYLES["mc"]["wsdl"],
                "wsdl_cache": str(tmp_path / "wsdl.db"),
                "operation": "Z_GOODSMVT_CREATE_COMMIT",
                "ref_field": "MATERIALDOCUMENT",
            },
        )
        document = {
            "GOODSMVT_CODE": {"GM_CODE": "03"},
            "GOODSMVT_HEADER": {"REF_DOC_NO": "G1"},
            "GOODSMVT_ITEM": [{"MATERIAL": "000000000010001001", "PLANT": "1000",
                               "STGE_LOC": "0001", "MOVE_TYPE": "551", "ENTRY_QNT": "1",
                               "ENTRY_UOM": "KGM"}],
        }  # fmt: skip
        result = soap.send(document, message_type="stock_adjustment", key="k")
        (committed,) = sim.simulator.committed("G1")
        assert result.external_ref == committed["MBLNR"]
        assert soap.supports("send")
        assert not soap.supports("lookup")
        soap.close()
    finally:
        sim.stop()
