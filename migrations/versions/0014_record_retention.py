"""record retention: room in `counters` for the tallies of purged rows, and an index to find old
idempotency keys

Purging old job rows must not make the job counters of /metrics go down, so the purge adds each
purged row to a counter named by its labels (model, status, error code): up to 170 characters.
Old idempotency keys are found by `created_at`.

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("counters", schema=None) as batch_op:
        batch_op.alter_column(
            "name",
            existing_type=sa.String(length=60),
            type_=sa.String(length=200),
            existing_nullable=False,
            existing_comment="What is counted, e.g. sweeper_requeued.",
        )
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.create_index("ix_idempotency_keys_created_at", ["created_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.drop_index("ix_idempotency_keys_created_at")
    with op.batch_alter_table("counters", schema=None) as batch_op:
        batch_op.alter_column(
            "name",
            existing_type=sa.String(length=200),
            type_=sa.String(length=60),
            existing_nullable=False,
            existing_comment="What is counted, e.g. sweeper_requeued.",
        )
