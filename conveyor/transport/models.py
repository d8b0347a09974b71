"""Tables of the transport that are not the ledger's own: the running consumers (delivery workers,
embedded consumers) and their heartbeats."""

from __future__ import annotations

from datetime import datetime
from typing import cast

from sqlalchemy import Integer, String, Table, Text
from sqlalchemy.orm import Mapped, mapped_column

from conveyor.ledger.models import Base, UTCDateTime, utcnow


class DeliveryWorkerRow(Base):
    """A running delivery worker. A claim held by a worker whose heartbeat is stale (or that
    stopped) is taken over by another worker, as an ambiguous attempt."""

    __tablename__ = "delivery_workers"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    host: Mapped[str] = mapped_column(String(200))
    pid: Mapped[int] = mapped_column(Integer)
    transport: Mapped[str] = mapped_column(String(40))
    targets: Mapped[str] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    stopped_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


workers_t = cast(Table, DeliveryWorkerRow.__table__)
