"""Connector registry: entry points by name, module paths, helpful typos, settings validation."""

from __future__ import annotations

import pytest

from connectors.fake import FakeConnector
from conveyor.config import SystemConfig
from conveyor.errors import ConfigError, RejectedError, TransientError
from conveyor.runtime import registry


def test_load_by_entry_point_and_path() -> None:
    assert registry.load("fake") is FakeConnector
    assert registry.load("connectors.fake:FakeConnector") is FakeConnector


def test_typo_suggests_the_name() -> None:
    with pytest.raises(ConfigError, match="Did you mean 'fake'"):
        registry.load("fak")


def test_not_a_connector() -> None:
    with pytest.raises(ConfigError, match="not a Connector"):
        registry.load("conveyor.errors:ConveyorError")


def test_settings_are_validated() -> None:
    with pytest.raises(ConfigError, match="fail_first"):
        registry.create(SystemConfig(name="sap", connector="fake", settings={"fail_first": -1}))


def test_fake_connector_behaviour(monkeypatch: pytest.MonkeyPatch) -> None:
    connector = registry.create(
        SystemConfig(name="sap", connector="fake", settings={"fail_first": 1})
    )
    assert connector.supports("send")
    assert connector.supports("poll")
    assert not connector.supports("idempotency_key")
    with pytest.raises(TransientError):
        connector.send({"a": 1}, message_type="production_output", key="K/1")
    first = connector.send({"a": 1}, message_type="production_output", key="K/1")
    again = connector.send({"a": 1}, message_type="production_output", key="K/1")
    assert first.external_ref == "SAP-000001"
    assert again.already_present
    assert connector.lookup(message_type="production_output", key="K/1") is not None
    monkeypatch.setenv("CONVEYOR_SAP_PASSWORD", "s3cret")
    assert connector.secret("password") == "s3cret"
    rejecting = registry.create(
        SystemConfig(name="wms", connector="fake", settings={"reject": "no such SKU"})
    )
    with pytest.raises(RejectedError, match="no such SKU"):
        rejecting.send({}, message_type="stock_transfer", key="K/2")
