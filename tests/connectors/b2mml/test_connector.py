"""The ``b2mml`` connector: schedules into a folder (temporary name then a link: never an
overwrite, names confined to the folder) or over HTTP, lookups by the hub's key, and the connector
conformance suite over HTTP against the ``http-target`` simulator taking XML."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

import pytest
from lxml import etree

from connectors.b2mml import B2mmlConnector, file_name
from conveyor.connector import SendResult
from conveyor.errors import ConfigError, RejectedError
from conveyor.runtime import registry
from conveyor.testing.conformance import Harness, conformance_tests
from simulators.http_target import HttpTarget

SCHEDULE = {
    "ID": "100046",
    "MaterialDefinitionID": "P-5001",
    "Quantity": "48",
    "UnitOfMeasure": "pcs",
}


def test_registered_with_its_capabilities(tmp_path: Path) -> None:
    assert registry.load("b2mml") is B2mmlConnector
    folder = B2mmlConnector("mesx", {"out_dir": str(tmp_path)})
    assert folder.supports("send")
    assert folder.supports("lookup")
    http = B2mmlConnector("mesx", {"url": "http://mes.example/b2mml"})
    assert not http.supports("lookup")  # no lookup_url: nothing to ask
    assert B2mmlConnector.secret_fields() == ["token"]


def test_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="settings"):
        B2mmlConnector("mesx", {})  # neither url nor out_dir
    with pytest.raises(ConfigError, match="token are secrets"):
        B2mmlConnector("mesx", {"url": "http://mes.example", "token": "x"})


def test_a_schedule_is_written_whole_and_never_overwritten(tmp_path: Path) -> None:
    connector = B2mmlConnector("mesx", {"out_dir": str(tmp_path), "version": "V0701"})
    first = connector.send(SCHEDULE, message_type="production_order", key="erp:100046/1")
    assert first == SendResult(external_ref="erp%3A100046%2F1.xml")
    written = tmp_path / "erp%3A100046%2F1.xml"
    assert etree.QName(etree.parse(str(written)).getroot()).localname == (
        "ProcessOperationsSchedule"
    )
    before = written.read_bytes()
    again = connector.send(
        {**SCHEDULE, "Quantity": "50"}, message_type="production_order", key="erp:100046/1"
    )
    assert again.already_present
    assert written.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [written.name]  # no temporary left behind
    found = connector.lookup(message_type="production_order", key="erp:100046/1")
    assert found == SendResult(external_ref=written.name, already_present=True)
    assert connector.lookup(message_type="production_order", key="erp:100047/1") is None


@pytest.mark.parametrize("key", ["../../etc/passwd", "/etc/passwd", "a/../../b", ".."])
def test_a_key_never_names_a_file_outside_the_folder(tmp_path: Path, key: str) -> None:
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    connector = B2mmlConnector("mesx", {"out_dir": str(outbox)})
    connector.send(SCHEDULE, message_type="production_order", key=key)
    assert [p.parent for p in outbox.iterdir()] == [outbox]
    assert "/" not in file_name(key)
    assert list(tmp_path.iterdir()) == [outbox]


def test_other_message_types_are_refused(tmp_path: Path) -> None:
    connector = B2mmlConnector("mesx", {"out_dir": str(tmp_path)})
    with pytest.raises(RejectedError, match="production orders"):
        connector.send(SCHEDULE, message_type="stock_transfer", key="k")


# ---------------------------------------------------------------------- conformance over HTTP
class XmlTarget(HttpTarget):
    """The ``http-target`` simulator taking B2MML bodies (it records them as text)."""

    def handle(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, Any, dict[str, str]]:
        if method == "POST" and urlsplit(path).path == "/documents":
            etree.fromstring(body, etree.XMLParser(resolve_entities=False, no_network=True))
            return self._posting(headers, body.decode())
        return super().handle(method, path, headers, body)


class ConformanceConnector(B2mmlConnector):
    """The suite sends a generic document (or, through the worker without a mapping, the
    canonical message): named here as the B2MML mapping would name it."""

    def send(
        self,
        document: Mapping[str, Any],
        *,
        message_type: str,
        key: str,
        idempotency_key: str | None = None,
    ) -> SendResult:
        payload = document.get("payload", document)
        schedule = {
            "ID": payload["order_id"],
            "MaterialDefinitionID": payload["material"],
            "Quantity": str(payload["quantity"]),
            "UnitOfMeasure": payload["uom"],
        }
        return super().send(schedule, message_type="production_order", key=key)


class B2mmlHarness(Harness):
    """The connector posting V07 schedules to ``XmlTarget`` with a bearer token."""

    secrets: ClassVar[Mapping[str, str]] = {"TOKEN": "b2mml-token-5be1d07c"}
    rejection_text = "material is blocked"

    def start(self) -> None:
        self.target = XmlTarget().start()

    def stop(self) -> None:
        self.target.stop()

    def connector(self) -> B2mmlConnector:
        url = self.target.url
        return ConformanceConnector(
            self.system,
            {
                "url": f"{url}/documents",
                "lookup_url": f"{url}/documents?key={{key}}",
                "version": "V0701",
                "timeout_s": 2,
            },
        )

    def misbehave(
        self,
        *,
        reject: Collection[str] = (),
        fail_first: int = 0,
        drop_answer: Collection[str] = (),
        echo_secrets: bool = False,
    ) -> None:
        self.target.configure(
            reject=dict.fromkeys(reject, 422),
            fail_first=fail_first,
            drop_keys=list(drop_answer),
            echo_headers=echo_secrets,
        )

    def posts(self, key: str) -> int:
        return self.target.counts().get(key, 0)

    def open_connections(self) -> int:
        return self.target.open_connections()


TestB2mmlConformance = conformance_tests(B2mmlHarness)


def test_the_target_receives_the_xml_under_the_hubs_key() -> None:
    with XmlTarget() as target:
        connector = B2mmlConnector("mesx", {"url": f"{target.url}/documents", "timeout_s": 2})
        result = connector.send(SCHEDULE, message_type="production_order", key="erp:9/1")
        connector.close()
        body = target.document("erp:9/1")
    assert result.external_ref
    assert result.external_ref.startswith("DOC-")
    assert "<ProcessProductionSchedule" in body
    assert "P-5001" in body
