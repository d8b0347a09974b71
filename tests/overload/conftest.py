"""Fixtures for the overload tests: the delivery tests' recording target and setups (a project
whose ``erp`` posts to it over REST, on each transport), shared rather than copied."""

from tests.conveyor.delivery.conftest import rabbit_setup, setup, target

__all__ = ["rabbit_setup", "setup", "target"]
