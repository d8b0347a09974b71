"""A message is reversed at most once, and a message's content is hashed for conflicts.

- ``uq_messages_source_reversal_of``: unique ``(source, reversal_of)``. Two processes reversing the
  same original at once cannot both commit: the database keeps exactly one (NULLs, the messages
  that reverse nothing, never collide).
- ``messages.content_hash``: sha256 of type, occurred_at and payload (``conveyor.ledger.core.
  content_hash``). The same business key offered again with another content is a conflict, not a
  duplicate. Rows stored before this revision keep NULL; the ledger hashes them when needed.

A ledger that already holds two reversals of one message cannot take the index: the upgrade stops
and names them, since only an operator can say which one stands.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    twice = (
        op.get_bind()
        .execute(
            sa.text(
                "SELECT source, reversal_of, count(*) AS n FROM messages"
                " WHERE reversal_of IS NOT NULL GROUP BY source, reversal_of HAVING count(*) > 1"
            )
        )
        .all()
    )
    if twice:
        listed = ", ".join(f"{r.source}:{r.reversal_of} ({r.n}×)" for r in twice[:20])
        raise RuntimeError(
            f"messages reversed more than once: {listed}; decide which reversal stands and "
            "book the others back before upgrading"
        )
    op.add_column("messages", sa.Column("content_hash", sa.String(length=64), nullable=True))
    op.create_index(
        "uq_messages_source_reversal_of", "messages", ["source", "reversal_of"], unique=True
    )


def downgrade() -> None:
    op.drop_index("uq_messages_source_reversal_of", table_name="messages")
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_column("content_hash")
