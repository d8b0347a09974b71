"""Delivery: claims, ambiguity and holds on deliveries; the outbox as a queue; worker heartbeats.

- ``deliveries``: ``claimed_by`` (the worker holding an in-flight delivery), ``needs_lookup`` (the
  last attempt may have reached the target: look up before posting again), ``blocked_by`` (parked
  behind an earlier parked delivery of the same ordering key), and a partial index over the
  deliveries not yet delivered, which is what the ordering check reads.
- ``outbox``: ``available_at`` (not before: retry backoff of the embedded transport) and
  ``claimed_by`` (the consumer holding the row), with a partial index over unsettled rows.
- ``delivery_workers``: one row per running worker, with its heartbeat, so that a claim held by a
  worker that died is taken over.
- PostgreSQL only: a statement-level trigger that ``NOTIFY``s ``conveyor_outbox`` after inserts
  into ``outbox``, so relays and embedded consumers wake at once instead of polling.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

NOTIFY_FUNCTION = """
CREATE OR REPLACE FUNCTION conveyor_outbox_notify() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('conveyor_outbox', '');
    RETURN NULL;
END;
$$ LANGUAGE plpgsql
"""
NOTIFY_TRIGGER = """
CREATE TRIGGER conveyor_outbox_notify AFTER INSERT ON outbox
FOR EACH STATEMENT EXECUTE FUNCTION conveyor_outbox_notify()
"""


def upgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("claimed_by", sa.String(length=64), nullable=True))
        batch_op.add_column(
            sa.Column("needs_lookup", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(
            sa.Column(
                "blocked_by", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
            )
        )
        batch_op.create_index(
            "ix_deliveries_open",
            ["target", "ordering_key", "id"],
            unique=False,
            postgresql_where=sa.text("status <> 'delivered'"),
            sqlite_where=sa.text("status <> 'delivered'"),
        )
        batch_op.create_index("ix_deliveries_blocked_by", ["blocked_by"], unique=False)
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("available_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("claimed_by", sa.String(length=64), nullable=True))
        batch_op.create_index(
            "ix_outbox_queue",
            ["target", "id"],
            unique=False,
            postgresql_where=sa.text("published_at IS NULL"),
            sqlite_where=sa.text("published_at IS NULL"),
        )
    op.create_table(
        "delivery_workers",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("host", sa.String(length=200), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("transport", sa.String(length=40), nullable=False),
        sa.Column("targets", sa.Text(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stopped_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delivery_workers")),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(NOTIFY_FUNCTION)
        op.execute(NOTIFY_TRIGGER)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS conveyor_outbox_notify ON outbox")
        op.execute("DROP FUNCTION IF EXISTS conveyor_outbox_notify()")
    op.drop_table("delivery_workers")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_queue")
        batch_op.drop_column("claimed_by")
        batch_op.drop_column("available_at")
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_deliveries_blocked_by")
        batch_op.drop_index("ix_deliveries_open")
        batch_op.drop_column("blocked_by")
        batch_op.drop_column("needs_lookup")
        batch_op.drop_column("claimed_by")
