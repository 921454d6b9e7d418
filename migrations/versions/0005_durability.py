"""durability: heartbeats and the publish outbox

Revision ID: 0005
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "heartbeat_at",
                sa.DateTime(timezone=True),
                nullable=True,
                comment="Last sign of life of the attempt running it.",
            )
        )
        batch_op.add_column(
            sa.Column(
                "published_at",
                sa.DateTime(timezone=True),
                nullable=True,
                comment="When its task was last sent to the broker; None: the send failed.",
            )
        )
        batch_op.alter_column(
            "attempts",
            existing_type=sa.Integer(),
            existing_nullable=False,
            comment="Claims so far; the current one's token.",
        )


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.alter_column("attempts", existing_type=sa.Integer(), existing_nullable=False, comment=None)
        batch_op.drop_column("published_at")
        batch_op.drop_column("heartbeat_at")
