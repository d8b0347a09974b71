"""Reconciliation tables: runs, their inputs, snapshots (by content hash), the lines that differed,
resolutions and approvals. All append-only: nothing here has an update path, and migration 0003
adds database triggers that refuse UPDATE and DELETE on every one of these tables."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from conveyor.ledger.models import Base, ExactDecimal, UTCDateTime, utcnow

_ID = BigInteger().with_variant(Integer, "sqlite")

APPEND_ONLY_TABLES = (
    "reconciliation_snapshots",
    "reconciliation_runs",
    "reconciliation_run_inputs",
    "reconciliation_lines",
    "reconciliation_resolutions",
    "reconciliation_approvals",
)


class ReconciliationSnapshotRow(Base):
    """A snapshot as read once: which system, where from, its sha256 and where a copy is kept."""

    __tablename__ = "reconciliation_snapshots"
    __table_args__ = (
        UniqueConstraint("sha256", "system", name="uq_reconciliation_snapshots_sha256_system"),
    )

    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64))
    system: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(20))
    """``file`` · ``connector`` · ``hub``"""
    source: Mapped[str] = mapped_column(Text)
    as_of: Mapped[datetime | None] = mapped_column(UTCDateTime())
    rows: Mapped[int] = mapped_column(Integer)
    stored_path: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ReconciliationRunRow(Base):
    """One reconciliation run: parameters, summary, and the hashes of the report files."""

    __tablename__ = "reconciliation_runs"
    __table_args__ = (Index("ix_reconciliation_runs_as_of", "as_of"),)

    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    run_id: Mapped[str] = mapped_column(String(36), unique=True)
    as_of: Mapped[datetime] = mapped_column(UTCDateTime())
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime] = mapped_column(UTCDateTime())
    runner: Mapped[str] = mapped_column(String(100))
    systems: Mapped[str] = mapped_column(Text)
    """JSON list; the first is the reference."""
    lot_level: Mapped[bool] = mapped_column(Boolean)
    parameters: Mapped[str] = mapped_column(Text)
    """JSON: tolerance and options."""
    summary: Mapped[str] = mapped_column(Text)
    """JSON: the report's summary."""
    by_location: Mapped[str] = mapped_column(Text)
    lines: Mapped[int] = mapped_column(Integer)
    matched: Mapped[int] = mapped_column(Integer)
    accuracy_pct: Mapped[Decimal | None] = mapped_column(ExactDecimal())
    variance_value: Mapped[Decimal] = mapped_column(ExactDecimal())
    out_dir: Mapped[str | None] = mapped_column(Text)
    reports: Mapped[str] = mapped_column(Text)
    """JSON: report file name → sha256."""
    unmapped: Mapped[str] = mapped_column(Text)
    """JSON list of the rows that could not be compared, with reasons."""


class ReconciliationInputRow(Base):
    """One system's input to one run."""

    __tablename__ = "reconciliation_run_inputs"
    __table_args__ = (Index("ix_reconciliation_run_inputs_run", "run_pk"),)

    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    run_pk: Mapped[int] = mapped_column(ForeignKey("reconciliation_runs.id"))
    snapshot_pk: Mapped[int] = mapped_column(ForeignKey("reconciliation_snapshots.id"))
    system: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(20))
    source: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    rows: Mapped[int] = mapped_column(Integer)
    unmapped: Mapped[int] = mapped_column(Integer)
    lot_level: Mapped[bool] = mapped_column(Boolean)
    as_of: Mapped[datetime | None] = mapped_column(UTCDateTime())
    mapping_version: Mapped[str | None] = mapped_column(String(80))


class ReconciliationLineRow(Base):
    """A line of a run that did not match exactly (exact matches are counted, not stored)."""

    __tablename__ = "reconciliation_lines"
    __table_args__ = (
        Index("ix_reconciliation_lines_key", "run_pk", "material", "location", "lot"),
    )

    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    run_pk: Mapped[int] = mapped_column(ForeignKey("reconciliation_runs.id"))
    position: Mapped[int] = mapped_column(Integer)
    """Rank in the report (by variance value)."""
    material: Mapped[str] = mapped_column(String(100))
    location: Mapped[str] = mapped_column(String(100))
    lot: Mapped[str] = mapped_column(String(100), default="")
    uom: Mapped[str] = mapped_column(String(20))
    description: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(400))
    quantities: Mapped[str] = mapped_column(Text)
    variance: Mapped[Decimal] = mapped_column(ExactDecimal())
    variance_value: Mapped[Decimal | None] = mapped_column(ExactDecimal())
    within_tolerance: Mapped[bool] = mapped_column(Boolean)
    tolerance: Mapped[str] = mapped_column(String(80))
    in_transit: Mapped[str] = mapped_column(Text, default="{}")
    transit_refs: Mapped[str] = mapped_column(Text, default="[]")
    explained_by: Mapped[str | None] = mapped_column(String(40))


class ReconciliationResolutionRow(Base):
    """Why a line differed, as someone classified it. The latest per line counts; none is
    ever changed."""

    __tablename__ = "reconciliation_resolutions"
    __table_args__ = (
        Index("ix_reconciliation_resolutions_key", "run_pk", "material", "location", "lot"),
    )

    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    run_pk: Mapped[int] = mapped_column(ForeignKey("reconciliation_runs.id"))
    material: Mapped[str] = mapped_column(String(100))
    location: Mapped[str] = mapped_column(String(100))
    lot: Mapped[str] = mapped_column(String(100), default="")
    resolution: Mapped[str] = mapped_column(String(30))
    note: Mapped[str] = mapped_column(Text)
    resolved_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ReconciliationApprovalRow(Base):
    """A run signed off by a named approver who is not its runner."""

    __tablename__ = "reconciliation_approvals"
    __table_args__ = (Index("ix_reconciliation_approvals_run", "run_pk"),)

    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    run_pk: Mapped[int] = mapped_column(ForeignKey("reconciliation_runs.id"))
    approver: Mapped[str] = mapped_column(String(100))
    note: Mapped[str] = mapped_column(Text)
    open_lines: Mapped[int] = mapped_column(Integer)
    """Differences without a closing resolution when approved (0 unless approved anyway)."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
