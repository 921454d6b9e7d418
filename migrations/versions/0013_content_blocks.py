"""content blocks: what an image the safety checker flags does, per API key

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "nsfw_action",
                sa.String(length=16),
                nullable=True,
                comment="What an image the safety checker flags does: block (the job fails) or replace; "
                "NULL: the route's API's semantics.",
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_column("nsfw_action")
