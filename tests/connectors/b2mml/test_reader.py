"""The ``b2mml`` format: V0600 and V07 performance documents give the same canonical messages,
streamed record by record; hostile documents (XXE, entity expansion, oversize, invalid) are
refused whole."""

from __future__ import annotations

import io
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from connectors.b2mml import reader as reader_module
from connectors.b2mml.reader import read
from conveyor.connector import RawRecord
from conveyor.errors import ConfigError, UnreadableFileError, UnreadableRecordError
from conveyor.formats import reader
from conveyor.mapping import MappingEngine

from .conftest import DATA

V0600_DOC = DATA / "production_performance_v0600.xml"


@pytest.fixture(autouse=True, params=["whole", "streamed"])
def way(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test runs on both ways of reading: parsed whole, and streamed (large documents)."""
    if request.param == "streamed":
        monkeypatch.setattr(reader_module, "STREAM_ABOVE", 0)
    return str(request.param)


V07_DOC = DATA / "operations_performance_v07.xml"


def records(body: bytes, **settings: Any) -> list[RawRecord]:
    return list(read(io.BytesIO(body), name="doc.xml", settings=settings))


def canonical(engine: MappingEngine, path: Path, xsd_dir: Path) -> list[dict[str, Any]]:
    """The canonical messages of a document, without the per-message id."""
    out = []
    with path.open("rb") as stream:
        for raw in read(stream, name=path.name, settings={"xsd_dir": str(xsd_dir)}):
            assert raw.message_type is not None
            message = engine.map_inbound("mesx", raw.message_type, raw.data, line=raw.line)
            message.pop("message_id")
            out.append(message)
    return out


def test_the_format_is_registered() -> None:
    assert reader("b2mml") is read


def test_v0600_and_v07_of_the_same_content_give_the_same_messages(
    b2mml_engine: MappingEngine, xsd_dir: Path
) -> None:
    old = canonical(b2mml_engine, V0600_DOC, xsd_dir)
    new = canonical(b2mml_engine, V07_DOC, xsd_dir)
    assert old == new
    assert [(m["type"], m["key"]) for m in old] == [
        ("material_consumption", "PERF-20261121-07/1"),
        ("material_consumption", "PERF-20261121-07/2"),
        ("production_output", "PERF-20261121-07/3"),
    ]
    screws, granulate, gearboxes = (m["payload"] for m in old)
    assert screws == {
        "order_id": "100045",
        "material": "RM-2001",
        "location": "1000/WIP-ASSY",
        "lot": "L2611-11",
        "quantity": screws["quantity"],
        "uom": "PCS",
        "attributes": {"segment": "ASSY-10", "sublot": "BOX-3"},
    }
    assert str(screws["quantity"]) == "384"
    assert str(granulate["quantity"]) == "0.125"  # exact: a Decimal, never a float
    assert (granulate["material"], granulate["location"]) == ("RM-1001", "1000/WIP-MOLD")
    assert (gearboxes["material"], gearboxes["location"], gearboxes["lot"]) == (
        "FG-5001",
        "1000/FG",
        "FG2611-21",
    )
    assert old[0]["occurred_at"].startswith("2026-11-21T19:55:00")


def test_bare_documents_and_by_products_are_read() -> None:
    body = V07_DOC.read_bytes().replace(
        b"<MaterialUse>Produced</MaterialUse>", b"<MaterialUse>By-product Produced</MaterialUse>"
    )
    start = body.index(b"<OperationsPerformance>")
    end = body.index(b"</OperationsPerformance>") + len(b"</OperationsPerformance>")
    bare = body[start:end].replace(
        b"<OperationsPerformance>",
        b'<OperationsPerformance xmlns="http://www.mesa.org/xml/B2MML">',
        1,
    )
    got = records(bare)
    assert [r.message_type for r in got] == [
        "material_consumption",
        "material_consumption",
        "production_output",
    ]
    assert got[0].data["b2mml"] == {
        "version": "V0701",
        "document": "OperationsPerformance",
        "verb": None,
    }


def test_a_material_use_without_a_message_type_is_parked_not_dropped() -> None:
    body = V0600_DOC.read_bytes().replace(b">Produced<", b">Sample<")
    got = records(body)
    assert len(got) == 3
    assert isinstance(got[2].data, UnreadableRecordError)
    assert "Sample" in str(got[2].data)
    assert got[2].line == 3


def test_material_uses_follow_the_systems_setting() -> None:
    got = records(V0600_DOC.read_bytes(), material_uses={"Produced": "production_output"})
    assert isinstance(got[0].data, UnreadableRecordError)
    assert got[2].message_type == "production_output"


def test_a_non_production_v07_response_is_parked() -> None:
    body = V07_DOC.read_bytes().replace(
        b"<OperationsType>Production</OperationsType>\n        <OperationsRequestID>",
        b"<OperationsType>Maintenance</OperationsType>\n        <OperationsRequestID>",
    )
    got = records(body)
    assert all(isinstance(r.data, UnreadableRecordError) for r in got)
    assert "Maintenance" in str(got[0].data)


def test_a_schema_invalid_document_is_refused_before_any_record(xsd_dir: Path) -> None:
    body = V0600_DOC.read_bytes().replace(b"<ID>ASSY-10</ID>", b"<Shift>B</Shift>")
    stream = read(io.BytesIO(body), name="bad.xml", settings={"xsd_dir": str(xsd_dir)})
    with pytest.raises(UnreadableFileError, match="invalid against the B2MML schema"):
        next(stream)


def test_a_missing_schema_folder_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no B2MML-V0600-ProductionPerformance\.xsd"):
        records(V0600_DOC.read_bytes(), xsd_dir=str(tmp_path))


def test_other_documents_and_namespaces_are_refused() -> None:
    with pytest.raises(UnreadableFileError, match="not B2MML"):
        records(b"<ProductionPerformance xmlns='urn:other'/>")
    with pytest.raises(UnreadableFileError, match="not a performance document"):
        records(b"<ProductionSchedule xmlns='http://www.mesa.org/xml/B2MML-V0600'/>")
    with pytest.raises(UnreadableFileError, match="not well-formed"):
        records(b"<ProductionPerformance xmlns='http://www.mesa.org/xml/B2MML-V0600'>")


# ---------------------------------------------------------------------- hostile documents
def test_an_external_entity_is_refused_and_no_file_is_read(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-CONTENT", encoding="utf-8")
    body = (
        f'<?xml version="1.0"?>\n<!DOCTYPE p [<!ENTITY xxe SYSTEM "file://{secret}">]>\n'
        '<ProductionPerformance xmlns="http://www.mesa.org/xml/B2MML-V0600"><ID>&xxe;</ID>'
        "</ProductionPerformance>"
    ).encode()
    with pytest.raises(UnreadableFileError, match="DOCTYPE is not allowed") as caught:
        records(body)
    assert "TOP-SECRET" not in str(caught.value)


def test_entity_expansion_is_refused_unexpanded() -> None:
    entities = '<!ENTITY a0 "lol">' + "".join(
        f'<!ENTITY a{i} "{f"&a{i - 1};" * 10}">' for i in range(1, 10)
    )
    body = (
        f'<?xml version="1.0"?>\n<!DOCTYPE p [{entities}]>\n'
        '<ProductionPerformance xmlns="http://www.mesa.org/xml/B2MML-V0600"><ID>&a9;</ID>'
        "</ProductionPerformance>"
    ).encode()
    with pytest.raises(UnreadableFileError, match="DOCTYPE is not allowed") as caught:
        records(body)
    assert "lollol" not in str(caught.value)


def test_an_external_dtd_is_never_fetched(tmp_path: Path) -> None:
    body = (
        b'<?xml version="1.0"?>\n<!DOCTYPE p SYSTEM "http://127.0.0.1:9/evil.dtd">\n'
        b'<ProductionPerformance xmlns="http://www.mesa.org/xml/B2MML-V0600"/>'
    )
    with pytest.raises(UnreadableFileError, match="DOCTYPE is not allowed"):
        records(body)


def test_a_document_over_the_size_limit_is_refused() -> None:
    body = V0600_DOC.read_bytes()
    with pytest.raises(UnreadableFileError, match="max_document_bytes"):
        records(body, max_document_bytes=len(body) // 2)
    assert len(records(body, max_document_bytes=len(body))) == 3


def test_a_large_document_streams_in_bounded_memory(tmp_path: Path, xsd_dir: Path) -> None:
    from connectors.b2mml.samples import chunks

    path = tmp_path / "big.xml"
    with path.open("wb") as out:
        for chunk in chunks(1, 20_000, "V0701"):
            out.write(chunk)
    tracemalloc.start()
    with path.open("rb") as stream:
        count = sum(1 for _ in read(stream, name="big", settings={"xsd_dir": str(xsd_dir)}))
    _current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert count == 20_000
    size = path.stat().st_size
    if reader_module.STREAM_ABOVE == 0:
        assert peak < size / 4, (peak, size)  # records are handed on, never gathered


def test_a_stream_that_cannot_seek_is_read_too(xsd_dir: Path) -> None:
    class OneWay(io.RawIOBase):
        def __init__(self, data: bytes) -> None:
            self.inner = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def seekable(self) -> bool:
            return False

        def readinto(self, buffer: Any) -> int:
            chunk = self.inner.read(len(buffer))
            buffer[: len(chunk)] = chunk
            return len(chunk)

    stream = OneWay(V07_DOC.read_bytes())
    got = list(read(stream, name="pipe", settings={"xsd_dir": str(xsd_dir)}))  # type: ignore[arg-type]
    assert [r.line for r in got] == [1, 2, 3]
