"""TLS is verified by default: every HTTPS-speaking connector and both RabbitMQ clients (the
transport and the ``amqp`` connector) refuse a server whose certificate their CA file does not
vouch for, and connect when it is given (``ca_bundle`` for HTTP, pika's
``ssl_options={'ca_certs': …}`` in the ``amqps://`` URL). The CA and the server certificate are
made here (``tests.support.tls``); the RabbitMQ server is the shared one at 127.0.0.1:5672, behind a
local TLS-terminating proxy."""

from __future__ import annotations

import ssl
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from connectors.amqp import AmqpConnector
from conveyor.connector import Connector
from conveyor.errors import ConveyorError
from conveyor.runtime import registry
from conveyor.runtime.secrets import env_name
from tests.support.broker import BROKER, broker_available
from tests.support.scripted import Scripted
from tests.support.tls import Pki, TlsProxy, https_server, make_pki

SECRETS = {
    "kingdee": {"USERNAME": "u", "PASSWORD": "tls-pass-1"},
    "yonbip": {"APP_KEY": "k", "APP_SECRET": "tls-secret-2"},
    "yonyou_u8": {"APP_KEY": "k", "APP_SECRET": "tls-secret-3"},
    "rest": {"TOKEN": "tls-token-4"},
    "sap": {"USERNAME": "u", "PASSWORD": "tls-pass-5"},
    "soap": {},
    "b2mml": {},
}
"""Every connector kind that speaks HTTP, with the secrets it needs to make a request."""


def settings_for(kind: str, url: str) -> dict[str, Any]:
    """Settings pointing connector ``kind`` at ``url`` (HTTPS)."""
    return {
        "kingdee": {"url": url, "acct_id": "A1"},
        "yonbip": {"url": url},
        "yonyou_u8": {"url": url, "from_account": "hub", "to_account": "001"},
        "rest": {"url": f"{url}/documents", "auth": "bearer"},
        "sap": {"wsdl": f"{url}/sap/bc/soap/wsdl11"},
        "soap": {"wsdl": f"{url}/service?wsdl", "operation": "Post"},
        "b2mml": {"url": f"{url}/schedules", "lookup_url": f"{url}/lookup?key={{key}}"},
    }[kind]


def _call(connector: Connector) -> Callable[[], object]:
    """One request the connector makes: its health check, else a look-up or a send."""
    if connector.supports("health"):
        return connector.check
    if connector.supports("lookup"):
        return lambda: connector.lookup(message_type="production_output", key="mes:T-1/1")
    return lambda: connector.send({"a": "1"}, message_type="production_output", key="mes:T-1/1")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def server(pki: Pki, monkeypatch: pytest.MonkeyPatch) -> Iterator[Scripted]:
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    with https_server(pki) as scripted:
        yield scripted


@pytest.mark.parametrize("kind", sorted(SECRETS))
def test_https_needs_the_ca_and_works_with_it(
    kind: str, server: Scripted, pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in SECRETS[kind].items():
        monkeypatch.setenv(env_name(kind, name), value)
    url = server.url.replace("http://", "https://")
    cache = {"wsdl_cache": str(tmp_path / "wsdl.db")} if kind in ("sap", "soap") else {}
    cls = registry.load(kind)
    plain = cls(kind, {**settings_for(kind, url), "timeout_s": 10, **cache})
    with pytest.raises(ConveyorError) as refused:
        _call(plain)()
    assert "certificate" in str(refused.value).lower() or "ssl" in str(refused.value).lower()
    assert server.received == []  # refused in the handshake: not one request was read
    trusting = cls(
        kind, {**settings_for(kind, url), "timeout_s": 10, "ca_bundle": str(pki.ca_file), **cache}
    )
    problem = ""
    try:
        _call(trusting)()
    except ConveyorError as exc:  # the scripted answer is no real ERP's: only TLS is tested
        problem = str(exc).lower()
    assert "certificate" not in problem
    assert len(server.received) >= 1


def test_verify_tls_false_is_the_only_way_to_skip_verification(server: Scripted) -> None:
    """Turning verification off is explicit (``verify_tls: false``), never the default."""
    url = server.url.replace("http://", "https://")
    rest = registry.load("rest")("rest", {"url": f"{url}/documents", "verify_tls": False})
    rest.send({"a": "1"}, message_type="production_output", key="mes:T-2/1")
    assert len(server.received) == 1


# ---------------------------------------------------------------------- RabbitMQ over TLS
@pytest.fixture
def proxy(pki: Pki) -> Iterator[TlsProxy]:
    if not broker_available():
        pytest.skip("RabbitMQ not reachable")
    upstream = BROKER.split("@", 1)[1].split("/", 1)[0]
    host, _, port = upstream.partition(":")
    tls = TlsProxy(pki, (host, int(port or 5672)))
    yield tls
    tls.close()


def amqps_url(proxy: TlsProxy, ca_file: Path | None, **query: str) -> str:
    """``amqps://`` to the proxy with the broker's credentials; pika's ``ssl_options`` name the
    CA file when one is given."""
    credentials = BROKER.split("://", 1)[1].split("@", 1)[0]
    options = dict(query)
    if ca_file is not None:
        options["ssl_options"] = str({"ca_certs": str(ca_file), "server_hostname": "127.0.0.1"})
    joined = "&".join(f"{k}={quote(v)}" for k, v in options.items())
    return f"amqps://{credentials}@127.0.0.1:{proxy.port}/%2F" + (f"?{joined}" if joined else "")


@pytest.mark.rabbitmq
def test_the_rabbitmq_transport_verifies_the_broker_certificate(proxy: TlsProxy, pki: Pki) -> None:
    import pika.exceptions

    from conveyor.transport.rabbitmq import RabbitMQTransport

    prefix = f"conveyor.test.tls{uuid.uuid4().hex[:8]}"
    refused = RabbitMQTransport(amqps_url(proxy, None, prefix=prefix))
    with pytest.raises((pika.exceptions.AMQPConnectionError, ssl.SSLError)) as error:
        refused.declare(["erp"])
    assert "CERTIFICATE_VERIFY_FAILED" in str(error.value) or proxy.refused >= 1
    assert proxy.handshakes == 0
    assert proxy.refused >= 1
    trusting = RabbitMQTransport(amqps_url(proxy, pki.ca_file, prefix=prefix))
    trusting.declare(["erp"])
    try:
        assert trusting.depths(["erp"])["erp"].ready == 0
    finally:
        trusting.delete(["erp"])
    assert proxy.handshakes >= 1


@pytest.mark.rabbitmq
def test_the_amqp_connector_verifies_the_broker_certificate(
    proxy: TlsProxy, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue = f"tls-{uuid.uuid4().hex[:8]}"
    settings = {"queue": queue, "queue_type": "classic", "idle_s": 0.2}
    monkeypatch.setenv(env_name("mes", "url"), amqps_url(proxy, None))
    with pytest.raises(ConveyorError):
        list(AmqpConnector("mes", settings).receive())
    assert proxy.handshakes == 0
    monkeypatch.setenv(env_name("mes", "url"), amqps_url(proxy, pki.ca_file))
    connector = AmqpConnector("mes", settings)
    try:
        assert list(connector.receive()) == []  # connected, declared the queue, found it empty
    finally:
        connector.close()
    assert proxy.handshakes >= 1
