"""Fixtures of the reconciliation tests: the seeded scenario's plant project and a hub ledger
holding its movements (every delivery done except one still in transit to the WMS)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine

from conveyor.config import Project
from conveyor.ledger import Ledger
from conveyor.reconcile.reference import Reference, load_reference

from .scenario import EXPECTED, make_plant, seed_hub

__all__ = ["EXPECTED"]


@pytest.fixture
def snapshot_time() -> datetime:
    """When the scenario's SAP and WMS snapshots were taken: after everything the hub accepted
    in the test (two days ahead, so the deliveries done now are before it)."""
    return datetime.now(UTC).replace(microsecond=0) + timedelta(days=2)


@pytest.fixture
def plant(tmp_path: Path, snapshot_time: datetime) -> Project:
    """The scenario's project (see ``scenario.make_plant``)."""
    return Project.load(make_plant(tmp_path / "plant", snapshot_time))


@pytest.fixture
def reference(plant: Project) -> Reference:
    """The plant's mappings and master data."""
    return load_reference(plant)


@pytest.fixture
def hub(engine: Engine, plant: Project) -> Ledger:
    """The plant's ledger (SQLite and PostgreSQL) holding the scenario's hub stock."""
    ledger = Ledger(engine, plant.router)
    seed_hub(ledger)
    return ledger
