"""servable models: each worker reports its queues and which registered weights it can load

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("workers", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("queues", sa.JSON(), nullable=False, server_default="[]", comment="The queues it consumes.")
        )
        batch_op.add_column(
            sa.Column(
                "weights",
                sa.JSON(),
                nullable=False,
                server_default="{}",
                comment="Whether it can load each registered source: {source: {state, reason?}}.",
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("workers", schema=None) as batch_op:
        batch_op.drop_column("weights")
        batch_op.drop_column("queues")
