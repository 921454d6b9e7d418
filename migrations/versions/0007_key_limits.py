"""per-key model list, credits and rate limit; credits charged per job

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("allowed_models", sa.JSON(), nullable=True, comment="Model slugs this key may use; NULL: all.")
        )
        batch_op.add_column(
            sa.Column("credits", sa.Integer(), nullable=True, comment="Images this key may still make; NULL: no limit.")
        )
        batch_op.add_column(
            sa.Column(
                "rate_limit_per_minute",
                sa.Integer(),
                nullable=True,
                comment="Submits per minute; NULL: the configured default; 0: no limit.",
            )
        )
        batch_op.add_column(
            sa.Column("rate_limit_burst", sa.Integer(), nullable=True, comment="Bucket size; NULL: the default.")
        )
        batch_op.add_column(
            sa.Column(
                "bucket_tokens",
                sa.Float(),
                nullable=True,
                comment="Token bucket when it is kept in the database: tokens at bucket_updated_at.",
            )
        )
        batch_op.add_column(sa.Column("bucket_updated_at", sa.Float(), nullable=True, comment="Unix seconds."))
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "credits_charged",
                sa.Integer(),
                server_default="0",
                nullable=False,
                comment="Credits taken at submit; given back if the job FAILS.",
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("credits_charged")
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        for name in (
            "bucket_updated_at",
            "bucket_tokens",
            "rate_limit_burst",
            "rate_limit_per_minute",
            "credits",
            "allowed_models",
        ):
            batch_op.drop_column(name)
