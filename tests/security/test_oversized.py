"""Oversized inputs are refused early, at every door, with the project's typed error or a refused
record, and without being read whole: an HTTP answer (every connector on the shared HTTP stack),
a B2MML or IDoc document from a stream, a JSON line, a CSV cell, a YAML file; an AMQP message
body (handed over whole by the broker) before it is parsed. The API's body limit (413 before the
body is read) is tested in tests/conveyor/api/test_security.py; SOAP answers in
tests/connectors/test_soap.py."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors.amqp import AmqpConnector
from connectors.b2mml import reader as b2mml
from connectors.idoc import read_loipro
from conveyor.errors import (
    AmbiguousDeliveryError,
    ConfigError,
    TransientError,
    UnreadableFileError,
    UnreadableRecordError,
)
from conveyor.limits import Limits
from conveyor.mapping.readers import read_csv
from conveyor.messages import parse_json
from conveyor.runtime.http import HttpClient
from conveyor.yamlfile import load_yaml
from tests.support.scripted import Answer, Scripted, serving

MIB = 1 << 20


class Counting(io.RawIOBase):
    """An endless, unseekable stream of ``fill`` that counts what was read from it."""

    def __init__(self, head: bytes, fill: bytes = b" ") -> None:
        self.head = head
        self.fill = fill
        self.read_bytes = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        size = len(buffer)
        data = (self.head + self.fill * size)[:size]
        self.head = self.head[size:]
        buffer[:size] = data
        self.read_bytes += size
        return size


@pytest.fixture
def big_answer() -> Iterator[Scripted]:
    with serving() as server:
        body = b"[" + b" " * (8 * MIB) + b"]"
        server.answer(Answer(200, body, {"Content-Type": "application/json"}))
        yield server


@pytest.mark.parametrize(
    ("sends", "error"), [(False, TransientError), (True, AmbiguousDeliveryError)]
)
def test_an_http_answer_over_the_limit_is_refused(
    big_answer: Scripted, sends: bool, error: type[Exception]
) -> None:
    client = HttpClient("erp", {"timeout_s": 5, "max_answer_bytes": MIB})
    with pytest.raises(error, match="max_answer_bytes"):
        client.request("POST" if sends else "GET", big_answer.url, sends=sends, what="x")
    client.close()


def test_an_http_answer_within_the_limit_is_read(big_answer: Scripted) -> None:
    client = HttpClient("erp", {"timeout_s": 5})
    response = client.request("GET", big_answer.url, sends=False, what="x")
    assert len(response.content) == 8 * MIB + 2
    client.close()


def test_a_b2mml_document_over_the_limit_is_refused_part_way() -> None:
    stream = Counting(b"<ProductionPerformance xmlns='http://www.mesa.org/xml/B2MML-V0600'>")
    with pytest.raises(UnreadableFileError, match="max_document_bytes"):
        list(b2mml.read(stream, name="big.xml", settings={"max_document_bytes": MIB}))
    assert stream.read_bytes <= MIB + 256 * 1024


def test_an_idoc_over_the_limit_is_refused_part_way() -> None:
    stream = Counting(b"<LOIPRO05>")
    with pytest.raises(UnreadableFileError, match="over"):
        list(read_loipro(stream, name="big.xml", settings={"max_bytes": MIB}))
    assert stream.read_bytes <= MIB + 256 * 1024


def test_a_json_record_over_the_limit_is_refused_unparsed() -> None:
    refused = parse_json('{"note": "' + "x" * (2 * MIB) + '"}', Limits(max_record_chars=MIB))
    assert isinstance(refused, UnreadableRecordError)
    assert refused.problems[0].rule == "max_record_chars"
    assert len(refused.text or "") < 2 * MIB  # kept clipped


def test_a_csv_cell_over_the_limit_refuses_its_row_alone(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    path.write_text(f"a,b\n1,{'y' * (2 * MIB)}\n2,ok\n", encoding="utf-8")
    rows = list(read_csv(path, limits=Limits(max_csv_field=MIB)))
    assert isinstance(rows[0].data, UnreadableRecordError)
    assert rows[0].data.problems[0].rule == "max_csv_field"
    assert rows[-1].data == {"a": "2", "b": "ok"}


def test_a_yaml_file_over_the_limit_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "conveyor.yaml"
    path.write_text("systems: {}\n" + "#" * (2 * MIB), encoding="utf-8")
    with pytest.raises(ConfigError, match="max_yaml_bytes"):
        load_yaml(path, Limits(max_yaml_bytes=MIB))


def test_an_amqp_message_over_the_limit_is_refused_unparsed() -> None:
    """The broker hands the body over whole (RabbitMQ has its own limit); it is refused before
    any of it is parsed."""
    import pika

    connector = AmqpConnector("mes", {"queue": "q", "max_message_bytes": 1024})
    properties = pika.BasicProperties(content_type="application/json")
    with pytest.raises(UnreadableFileError, match="max_message_bytes"):
        list(connector._records(properties, b"[" + b" " * 2048 + b"]", "amqp:1"))
