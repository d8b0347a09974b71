"""Reconciliation: snapshots (by sha256), runs, run inputs, differing lines, resolutions, approvals.

Every table is append-only: triggers refuse UPDATE and DELETE (on PostgreSQL one plpgsql function
shared by the triggers, on SQLite a RAISE(ABORT) trigger per table and operation).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

EXACT_DECIMAL = sa.Numeric(38, 12).with_variant(sa.String(64), "sqlite")
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)

TABLES = (
    "reconciliation_snapshots",
    "reconciliation_runs",
    "reconciliation_run_inputs",
    "reconciliation_lines",
    "reconciliation_resolutions",
    "reconciliation_approvals",
)


def upgrade() -> None:
    op.create_table(
        "reconciliation_snapshots",
        sa.Column("id", ID, nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("system", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("as_of", TS, nullable=True),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("stored_path", sa.Text(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reconciliation_snapshots")),
        sa.UniqueConstraint("sha256", "system", name="uq_reconciliation_snapshots_sha256_system"),
    )
    op.create_table(
        "reconciliation_runs",
        sa.Column("id", ID, nullable=False),
        sa.Column("run_id", sa.String(length=36), nullable=False),
        sa.Column("as_of", TS, nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("finished_at", TS, nullable=False),
        sa.Column("runner", sa.String(length=100), nullable=False),
        sa.Column("systems", sa.Text(), nullable=False),
        sa.Column("lot_level", sa.Boolean(), nullable=False),
        sa.Column("parameters", sa.Text(), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("by_location", sa.Text(), nullable=False),
        sa.Column("lines", sa.Integer(), nullable=False),
        sa.Column("matched", sa.Integer(), nullable=False),
        sa.Column("accuracy_pct", EXACT_DECIMAL, nullable=True),
        sa.Column("variance_value", EXACT_DECIMAL, nullable=False),
        sa.Column("out_dir", sa.Text(), nullable=True),
        sa.Column("reports", sa.Text(), nullable=False),
        sa.Column("unmapped", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reconciliation_runs")),
        sa.UniqueConstraint("run_id", name=op.f("uq_reconciliation_runs_run_id")),
    )
    with op.batch_alter_table("reconciliation_runs", schema=None) as batch_op:
        batch_op.create_index("ix_reconciliation_runs_as_of", ["as_of"], unique=False)

    op.create_table(
        "reconciliation_run_inputs",
        sa.Column("id", ID, nullable=False),
        sa.Column("run_pk", ID, nullable=False),
        sa.Column("snapshot_pk", ID, nullable=False),
        sa.Column("system", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("unmapped", sa.Integer(), nullable=False),
        sa.Column("lot_level", sa.Boolean(), nullable=False),
        sa.Column("as_of", TS, nullable=True),
        sa.Column("mapping_version", sa.String(length=80), nullable=True),
        sa.ForeignKeyConstraint(
            ["run_pk"],
            ["reconciliation_runs.id"],
            name=op.f("fk_reconciliation_run_inputs_run_pk_reconciliation_runs"),
        ),
        sa.ForeignKeyConstraint(
            ["snapshot_pk"],
            ["reconciliation_snapshots.id"],
            name=op.f("fk_reconciliation_run_inputs_snapshot_pk_reconciliation_snapshots"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reconciliation_run_inputs")),
    )
    with op.batch_alter_table("reconciliation_run_inputs", schema=None) as batch_op:
        batch_op.create_index("ix_reconciliation_run_inputs_run", ["run_pk"], unique=False)

    op.create_table(
        "reconciliation_lines",
        sa.Column("id", ID, nullable=False),
        sa.Column("run_pk", ID, nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("material", sa.String(length=100), nullable=False),
        sa.Column("location", sa.String(length=100), nullable=False),
        sa.Column("lot", sa.String(length=100), nullable=False),
        sa.Column("uom", sa.String(length=20), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=400), nullable=False),
        sa.Column("quantities", sa.Text(), nullable=False),
        sa.Column("variance", EXACT_DECIMAL, nullable=False),
        sa.Column("variance_value", EXACT_DECIMAL, nullable=True),
        sa.Column("within_tolerance", sa.Boolean(), nullable=False),
        sa.Column("tolerance", sa.String(length=80), nullable=False),
        sa.Column("in_transit", sa.Text(), nullable=False),
        sa.Column("transit_refs", sa.Text(), nullable=False),
        sa.Column("explained_by", sa.String(length=40), nullable=True),
        sa.ForeignKeyConstraint(
            ["run_pk"],
            ["reconciliation_runs.id"],
            name=op.f("fk_reconciliation_lines_run_pk_reconciliation_runs"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reconciliation_lines")),
    )
    with op.batch_alter_table("reconciliation_lines", schema=None) as batch_op:
        batch_op.create_index(
            "ix_reconciliation_lines_key", ["run_pk", "material", "location", "lot"], unique=False
        )

    op.create_table(
        "reconciliation_resolutions",
        sa.Column("id", ID, nullable=False),
        sa.Column("run_pk", ID, nullable=False),
        sa.Column("material", sa.String(length=100), nullable=False),
        sa.Column("location", sa.String(length=100), nullable=False),
        sa.Column("lot", sa.String(length=100), nullable=False),
        sa.Column("resolution", sa.String(length=30), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("resolved_by", sa.String(length=100), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["run_pk"],
            ["reconciliation_runs.id"],
            name=op.f("fk_reconciliation_resolutions_run_pk_reconciliation_runs"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reconciliation_resolutions")),
    )
    with op.batch_alter_table("reconciliation_resolutions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_reconciliation_resolutions_key",
            ["run_pk", "material", "location", "lot"],
            unique=False,
        )

    op.create_table(
        "reconciliation_approvals",
        sa.Column("id", ID, nullable=False),
        sa.Column("run_pk", ID, nullable=False),
        sa.Column("approver", sa.String(length=100), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("open_lines", sa.Integer(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["run_pk"],
            ["reconciliation_runs.id"],
            name=op.f("fk_reconciliation_approvals_run_pk_reconciliation_runs"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reconciliation_approvals")),
    )
    with op.batch_alter_table("reconciliation_approvals", schema=None) as batch_op:
        batch_op.create_index("ix_reconciliation_approvals_run", ["run_pk"], unique=False)

    _append_only_triggers()


def _append_only_triggers() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            """
            CREATE OR REPLACE FUNCTION conveyor_append_only() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
                    USING ERRCODE = 'insufficient_privilege';
            END
            $$
            """
        )
        for table in TABLES:
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION conveyor_append_only()"
            )
        return
    for table in TABLES:
        for operation in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{operation.lower()} BEFORE {operation} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{table} is append-only: {operation} refused'); END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in TABLES:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
        op.execute("DROP FUNCTION IF EXISTS conveyor_append_only()")
    else:
        for table in TABLES:
            for operation in ("update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_no_{operation}")
    for table in reversed(TABLES):
        op.drop_table(table)
