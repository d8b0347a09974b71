"""Notes on a delivery: ``deliveries.notes``, a JSON list of what the target said alongside a
successful posting (SAP BAPIRET2 ``W``/``S``/``I`` rows, …), written with ``external_ref``.
Nullable: deliveries stored before this revision, and those without notes, keep NULL.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("deliveries", sa.Column("notes", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_column("notes")
