"""Choosing a transport by URL scheme."""

from __future__ import annotations

import pytest

from conveyor.errors import ConfigError
from conveyor.transport import resolve, scheme_of
from conveyor.transport.embedded import EmbeddedTransport
from conveyor.transport.rabbitmq import RabbitMQTransport, parse_url, safe_url


def test_no_url_is_the_embedded_transport() -> None:
    assert scheme_of(None) == "embedded"
    assert resolve(None) is EmbeddedTransport
    assert resolve("embedded://") is EmbeddedTransport


@pytest.mark.parametrize("url", ["amqp://guest:guest@127.0.0.1/%2F", "amqps://u:p@broker/prod"])
def test_amqp_and_amqps_are_rabbitmq(url: str) -> None:
    assert resolve(url) is RabbitMQTransport


def test_a_typo_gets_a_suggestion() -> None:
    with pytest.raises(ConfigError, match=r"No such transport: amqpp\. Did you mean amqp"):
        resolve("amqpp://host")


def test_broker_url_options_are_split_and_defaults_applied() -> None:
    params, own = parse_url("amqp://u:secret@host:5673/vh?prefix=plant1&prefetch=50&heartbeat=10")
    assert own == {"prefix": "plant1", "prefetch": "50"}
    assert (params.host, params.port, params.virtual_host) == ("host", 5673, "vh")
    assert params.heartbeat == 10
    assert params.blocked_connection_timeout == 60
    assert safe_url("amqp://u:secret@host:5673/vh?x=1") == "amqp://u:***@host:5673/vh"
