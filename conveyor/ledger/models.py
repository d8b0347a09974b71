"""Ledger tables (SQLAlchemy 2 declarative). Migrations in ``migrations/versions`` create them.

References between tables (``message_pk``, ``delivery_id``) carry no FOREIGN KEY constraint on
purpose: child rows are written only inside the accept transaction, with ids the same transaction
returned, and messages are never deleted; per-row FK triggers cost close to half of the accept
path on PostgreSQL (measured with EXPLAIN ANALYZE on a 1,000-message batch).

Quantities are ``ExactDecimal``: ``NUMERIC(38, 12)`` on PostgreSQL, text on SQLite (whose NUMERIC
is a binary float), so no quantity ever passes through a float. A value that does not fit
NUMERIC(38, 12) is refused on both dialects before it reaches the database (``check_range``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator, TypeEngine

from conveyor.quantity import check_range, format_quantity

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """Now, timezone-aware UTC (the ledger stores aware timestamps)."""
    return datetime.now(UTC)


class ExactDecimal(TypeDecorator[Decimal]):
    """An exact decimal column: NUMERIC(38, 12) on PostgreSQL, canonical text on SQLite."""

    impl = Numeric(38, 12)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(64))
        return dialect.type_descriptor(Numeric(38, 12, asdecimal=True))

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        value = check_range(Decimal(value))  # never let the database round or overflow
        if dialect.name == "sqlite":
            return format_quantity(value)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        # canonical text, never exponent form: Decimal("400.000000000000") → Decimal("400")
        return Decimal(format_quantity(Decimal(value))) if value else Decimal(0)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware timestamps on both dialects (SQLite drops the offset; we store and restore UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the ledger")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value if value.tzinfo else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    """Declarative base with constraint naming, so migrations name things the same on both
    dialects."""

    metadata = MetaData(naming_convention=NAMING)


class MessageRow(Base):
    """One accepted canonical message. ``(source, key)`` is unique: the database deduplicates;
    ``(source, reversal_of)`` is unique: a message is reversed at most once."""

    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("source", "key", name="uq_messages_source_key"),
        Index("uq_messages_source_reversal_of", "source", "reversal_of", unique=True),
        Index("ix_messages_order_id", "order_id"),
        Index("ix_messages_type_accepted_at", "type", "accepted_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    message_id: Mapped[str] = mapped_column(String(36), unique=True)
    type: Mapped[str] = mapped_column(String(40))
    source: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(200))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    accepted_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    schema_version: Mapped[str] = mapped_column(String(16))
    mapping_version: Mapped[str | None] = mapped_column(String(80))
    correlation_id: Mapped[str | None] = mapped_column(String(100))
    order_id: Mapped[str | None] = mapped_column(String(100))
    reversal_of: Mapped[str | None] = mapped_column(String(200))
    routes: Mapped[int] = mapped_column(Integer, default=0)
    """How many targets the message was routed to; 0 means no route matched (visible, not
    silent)."""
    payload: Mapped[str] = mapped_column(Text)
    """The payload as JSON text, quantities as exact strings."""
    content_hash: Mapped[str | None] = mapped_column(String(64))
    """sha256 of type, occurred_at and payload: the same key with another hash is a conflict.
    NULL for messages stored before revision 0004 (hashed from the row when needed)."""


class StockMovementRow(Base):
    """One signed change to one stock position, caused by one message (what a message changed)."""

    __tablename__ = "stock_movements"
    __table_args__ = (
        Index("ix_stock_movements_position", "material", "location", "lot"),
        Index("ix_stock_movements_lot", "lot"),
        Index("ix_stock_movements_message", "message_pk"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    message_pk: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    material: Mapped[str] = mapped_column(String(100))
    location: Mapped[str] = mapped_column(String(100))
    lot: Mapped[str] = mapped_column(String(100), default="")
    quantity: Mapped[Decimal] = mapped_column(ExactDecimal())
    uom: Mapped[str] = mapped_column(String(20))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())


class StockPositionRow(Base):
    """Real-time on-hand stock per material × location × lot (``""`` = no lot), in base unit."""

    __tablename__ = "stock_positions"

    material: Mapped[str] = mapped_column(String(100), primary_key=True)
    location: Mapped[str] = mapped_column(String(100), primary_key=True)
    lot: Mapped[str] = mapped_column(String(100), primary_key=True, default="")
    quantity: Mapped[Decimal] = mapped_column(ExactDecimal())
    uom: Mapped[str] = mapped_column(String(20))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class DeliveryRow(Base):
    """The state of one message towards one target. At most one ``delivered`` per pair."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("message_pk", "target", name="uq_deliveries_message_target"),
        Index("ix_deliveries_target_status", "target", "status"),
        Index(
            "ix_deliveries_open",
            "target",
            "ordering_key",
            "id",
            postgresql_where=text("status <> 'delivered'"),
            sqlite_where=text("status <> 'delivered'"),
        ),
        Index("ix_deliveries_blocked_by", "blocked_by"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    message_pk: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    target: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(20), default="pending")
    """pending · in_flight · retrying · delivered · parked · needs_check"""
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    external_ref: Mapped[str | None] = mapped_column(String(200))
    ordering_key: Mapped[str] = mapped_column(String(200), default="")
    """Messages with the same ordering key reach a target in acceptance order."""
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    """The worker holding the delivery while ``in_flight``."""
    needs_lookup: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    """The last attempt may have reached the target: look the document up before posting again."""
    blocked_by: Mapped[int | None] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    """Parked behind this earlier (parked) delivery of the same ordering key."""
    notes: Mapped[str | None] = mapped_column(Text)
    """What the target said alongside the posting (a JSON list of lines, ``conveyor.delivery.
    notes``); NULL when it said nothing."""


class OutboxRow(Base):
    """Deliveries waiting to be handed to the transport (written in the accept transaction)."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index(
            "ix_outbox_queue",
            "target",
            "id",
            postgresql_where=text("published_at IS NULL"),
            sqlite_where=text("published_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    delivery_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), unique=True
    )
    target: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    available_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    """Not before (embedded transport: retry backoff); NULL means at once."""
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    """The consumer holding the row (embedded transport)."""


class CheckpointRow(Base):
    """A connector's cursor (last poll time, last document number), per system and stream."""

    __tablename__ = "checkpoints"

    system: Mapped[str] = mapped_column(String(64), primary_key=True)
    stream: Mapped[str] = mapped_column(String(100), primary_key=True)
    cursor: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ParkedRecordRow(Base):
    """An input record that could not be accepted, kept with the exact reason; replayable."""

    __tablename__ = "parked_records"
    __table_args__ = (
        Index("ix_parked_records_status", "status", "stage"),
        Index("ix_parked_records_fingerprint", "fingerprint"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    stage: Mapped[str] = mapped_column(String(20))
    """Where it stopped: ``parse`` · ``validate`` · ``map`` · ``accept``."""
    system: Mapped[str | None] = mapped_column(String(64))
    message_type: Mapped[str | None] = mapped_column(String(40))
    file: Mapped[str | None] = mapped_column(String(500))
    line: Mapped[int | None] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text)
    problems: Mapped[str] = mapped_column(Text, default="[]")
    """JSON list of problems: field, value, rule, message (and system, mapping file, …)."""
    record: Mapped[str] = mapped_column(Text)
    """The record as received (JSON text, or the raw line)."""
    fingerprint: Mapped[str] = mapped_column(String(64))
    """sha256 of stage, system, file, line and record: the same bad record offered twice is
    parked once."""
    status: Mapped[str] = mapped_column(String(20), default="parked")
    """parked · replayed · discarded"""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    resolved_message_id: Mapped[str | None] = mapped_column(String(36))
